"""A backup MX's own checks (backup_mx_for), from the controller on each of its addresses: it
takes mail for an address its mail host takes, and refuses an unknown one at RCPT (a backup
that accepted everything would bounce the rest later, to forged senders: backscatter). Nothing
is sent: RSET after RCPT."""

from __future__ import annotations

from mailhost.checks import CheckResult, guarded, result
from mailhost.checks.smtp import rcpt_reply
from mailhost.settings import Settings
from mailhost.settings.fleet import FleetView

UNKNOWN_LOCAL_PART = "no-such-user-mailhost-check"


def checks(settings: Settings, fleet: FleetView, address: str) -> list[CheckResult]:
    """For each domain the host holds mail for: a known address taken, an unknown refused."""
    found = []
    for held in fleet.held:
        found.append(rcpt_check(settings, address, held.recipients[0], accepted=True))
        found.append(rcpt_check(settings, address, f"{UNKNOWN_LOCAL_PART}@{held.domain}",
                                accepted=False))
    return found


def rcpt_check(settings: Settings, address: str, recipient: str, accepted: bool) -> CheckResult:
    domain = recipient.rpartition("@")[2]
    if accepted:
        name = f"backup mx: {address} port 25 takes mail for {recipient}"
        expected = f"RCPT TO:<{recipient}> accepted (2xx): held for the mail host of {domain}"
        advice = ("the backup MX refuses mail its mail host takes: check relay_domains and "
                  "relay_recipient_maps in /etc/postfix/main.cf (`postconf relay_domains`)")
    else:
        name = f"backup mx: {address} port 25 refuses unknown {domain} recipients"
        expected = f"RCPT TO:<{recipient}> refused (5xx): never accepted, never bounced later"
        advice = ("the backup MX accepts any address of the domain and would send bounces to "
                  "forged senders: relay_recipient_maps must list the mail host's addresses")

    def check():
        code, found = rcpt_reply(settings, address, recipient)
        return result(name, 200 <= code < 300 if accepted else code >= 500, expected, found,
                      advice)
    return guarded(name, expected, advice, check)
