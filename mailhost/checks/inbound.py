"""Checks of inbound mail: rspamd answers on the host (a GTUBE message scanned over SSH is
judged "reject"), and, from your machine, a message forging a mail domain's From (that domain
publishing DMARC p=reject) is refused at SMTP time, so it is neither stored nor forwarded."""

from __future__ import annotations

import re
import smtplib
import time

from pyinfra.api import QuoteString

from mailhost.checks import WARNING, CheckResult, guarded, result
from mailhost.checks.host import run
from mailhost.checks.smtp import PROBE_HELO, TIMEOUT
from mailhost.paths import RSPAMD_SCANNER
from mailhost.settings import Settings

# GTUBE, the standard test string every spam filter refuses (built here, so no file of this
# repository is itself "spam" to a scanner reading it)
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-" + "EMAIL*C.34X"
SPOOF_SENDER = f"spoof-probe@{PROBE_HELO}"


def rspamd_check(host) -> CheckResult:
    """rspamd scans a GTUBE message on the host (rspamc to its HTTP worker) and says reject."""
    name = "host: rspamd answers and refuses GTUBE"
    expected = f"Action: reject from rspamd on {RSPAMD_SCANNER}"
    advice = ("inbound mail is not being checked: `systemctl status rspamd`, `journalctl -u "
              "rspamd`; rspamd must listen on " + RSPAMD_SCANNER + " (the deploy configures it)")

    def check():
        message = f"Subject: mailhost check\n\n{GTUBE}\n"
        output = run(host, "printf '%s'", QuoteString(message), "| timeout 30 rspamc -h",
                     RSPAMD_SCANNER, "symbols 2>&1 || true")
        action = re.search(r"^Action: (.+)$", output, re.MULTILINE)
        found = f"Action: {action[1].strip()}" if action else (output.strip()[:200] or "no answer")
        return result(name, action is not None and action[1].strip() == "reject",
                      expected, found, advice)
    return guarded(name, expected, advice, check)


def offer(address: str, helo: str, sender: str, recipient: str, message: str,
          timeout: float = TIMEOUT) -> tuple[int, str]:
    """One message to port 25 as an outside server sends it: (the final reply code, its text).
    The final reply is RCPT's when it refuses, else DATA's."""
    with smtplib.SMTP(timeout=timeout) as client:
        client.connect(address, 25)
        client.ehlo(helo)
        client.mail(sender)
        code, reply = client.rcpt(recipient)
        if code < 400:
            try:
                code, reply = client.data(message.encode())
            except smtplib.SMTPDataError as refused:
                code, reply = refused.smtp_code, refused.smtp_error
    return code, reply.decode(errors="replace")


def spoof_check(settings: Settings, address: str) -> CheckResult:
    """From your machine to port 25: a message to postmaster@DOMAIN with From: postmaster@DOMAIN
    and no signature, from an outside sender, must get a 5xx (DMARC p=reject). Sent only when
    the domain asks receivers to reject such mail (else it would be delivered)."""
    domain = settings.first_domain
    target = f"postmaster@{domain}"
    name = f"smtp: forged From of {domain} refused on {address}:25"
    expected = "a 5xx reply to the message (DMARC p=reject), nothing delivered"
    advice = ("mail forging your domain's From is accepted: rspamd must run as Postfix's milter "
              "(smtpd_milters) or in chasquid's post-data hook, with the dmarc module's reject "
              "action; `journalctl -u rspamd`")
    if settings.dmarc_policy != "reject" or settings.dmarc_pct != 100:
        return CheckResult(name, WARNING, expected,
                           f"not probed: dmarc_policy = {settings.dmarc_policy}, dmarc_pct = "
                           f"{settings.dmarc_pct} (a forged From is only marked)",
                           "set dmarc_policy = 'reject' once your own mail passes DMARC",
                           required=False)

    def check():
        message_id = f"<spoof-probe-{time.time_ns()}@{PROBE_HELO}>"
        body = (f"From: {target}\r\nTo: {target}\r\nSubject: mailhost spoof probe\r\n"
                f"Message-ID: {message_id}\r\n\r\nA forged From: this must be refused.\r\n")
        code, text = offer(address, PROBE_HELO, SPOOF_SENDER, target, body)
        text = text[:150]
        return result(name, 500 <= code < 600, expected, f"{code} {text}", advice)
    return guarded(name, expected, advice, check)
