"""Postfix: the ``mta = "postfix"`` mail host's SMTP server (25, and submission on 587 and 465
for the users Dovecot authenticates), with OpenDKIM, Dovecot (users, IMAP, delivery by LMTP)
and postsrsd as its other components (mailhost.host.mtas). Restarted only when a file it
reads changed, so a converged host shows no change.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pyinfra.operations import server

from mailhost import paths
from mailhost.host import CertificateReader, QueueReader, base, move
from mailhost.host.users import alias_map, mailbox_map, mailbox_root, sender_login_map
from mailhost.keys.steps import KeySteps
from mailhost.operations.files import put_text, render, write_template
from mailhost.operations.secret_file import secret_file
from mailhost.paths import POSTFIX_QUEUES
from mailhost.secrets import Secret, Secrets
from mailhost.settings import Settings
from mailhost.settings.fleet import ALONE, FleetView
from mailhost.warmup import PROVIDERS, SCHEDULE, pace_on, transport_map

PACKAGES = ("postfix",)
# the SASL client's PLAIN and LOGIN mechanisms: without them Postfix cannot log in to
# relay_host ("No worthy mechs found", seen in the lab); installed only with a relay (and left
# installed when the relay goes, as Redis is after greylisting)
SASL_CLIENT_PACKAGE = "libsasl2-modules"
UNITS = ("postfix",)
# a mail host with backup MX hosts asks them for held mail when Postfix starts (ETRN)
ETRN_SCRIPT = paths.ETRN_SCRIPT
ETRN_UNIT = "/etc/systemd/system/mailhost-etrn.service"
ROOTS = ("/etc/postfix", ETRN_SCRIPT, ETRN_UNIT)
CERTIFICATE_READERS = (CertificateReader("postfix", after_renewal="reload"),)
OLD_TLS_ADVICE = ("the MTA must accept TLS 1.2 or newer only (Postfix: smtpd_tls_protocols and "
                  "smtpd_tls_mandatory_protocols = >=TLSv1.2)")
CBC_ADVICE = ("submission must use only AEAD ciphers with forward secrecy (Postfix: "
              "-o smtpd_tls_mandatory_ciphers=high in master.cf and tls_high_cipherlist from "
              "Mozilla's intermediate profile)")


def configure(settings: Settings, secrets: Secrets, steps: KeySteps | None = None,
              fleet: FleetView = ALONE) -> set[str]:
    """main.cf, master.cf and the maps (mailboxes, aliases, who may send as whom); what to
    restart."""
    mailbox_root()
    if settings.relay_host:
        base.install_packages([SASL_CLIENT_PACKAGE])
    data = template_data(settings, today(), fleet)
    maps = {"vmailbox": mailbox_map(settings), "virtual": alias_map(settings),
            "sender_login": sender_login_map(settings),
            "transport": transport_map(data["pace"]) + held_transport_map(fleet),
            "relay_recipients": relay_recipient_map(fleet), "tls_policy": tls_policy_map(fleet)}
    receiving, sending = move.receiving(fleet), move.sending(fleet)
    first = maps_before_main_cf(fleet)
    changed = False
    if receiving:  # the new host of a moving domain: it takes the domain first...
        changed = _maps_and_main_cf(settings, data, maps, first)
    if receiving or sending:
        # ...one step of both hosts (pyinfra runs it on both before either goes on): the new
        # host reloaded, the old one not yet
        server.shell(name="Postfix: a domain moving between hosts switches (the new host "
                          "first)",
                     commands=["systemctl try-reload-or-restart postfix" if receiving
                               else "true"])
    if not receiving:  # ...then the old host relays it there
        changed = _maps_and_main_cf(settings, data, maps, first)
        if sending:
            server.shell(name=f"Postfix relays {', '.join(sending)} to its new host now "
                              "(reloaded before its mailbox maps drop the domain)",
                         commands=["systemctl try-reload-or-restart postfix"])
    changed |= any([
        *[_postmap(name, content) for name, content in maps.items() if name not in first],
        put_text(ETRN_CLIENTS, etrn_clients(fleet)),
        _relay_password(settings, secrets),
    ])
    changed |= _etrn_on_start(fleet)
    return set(UNITS) if changed else set()


def maps_before_main_cf(fleet: FleetView) -> list[str]:
    """The maps written before main.cf: those main.cf may start to read. While a domain moves
    (move_from), the new host's mailbox maps too (its Postfix takes the domain as soon as it
    reloads), while the old host keeps its own until it relays the domain (postmapped after its
    reload: a user dropped from them before it would be refused, 550, in between)."""
    local = ["vmailbox", "virtual", "sender_login"] if fleet.moves_in else []
    return [*local, "transport", "relay_recipients", "tls_policy"]


def _maps_and_main_cf(settings: Settings, data: dict, maps: dict[str, str],
                      first: list[str]) -> bool:
    """The maps main.cf may start to read (FIRST), then main.cf and master.cf; whether any
    changes."""
    return any([
        *[_postmap(name, maps[name]) for name in first],
        write_template("postfix/main.cf.j2", "/etc/postfix/main.cf", settings, **data),
        write_template("postfix/master.cf.j2", "/etc/postfix/master.cf", settings, **data),
    ])


def template_data(settings: Settings, day, fleet: FleetView = ALONE) -> dict:
    """What main.cf and master.cf are rendered with besides the settings, on ``day``."""
    return {"smtp_address_preference": "any", "pace": pace_on(settings.warmup_start, day),
            "transports": list(PROVIDERS), "schedule": SCHEDULE, "fleet": fleet}


def rendered(name: str, settings: Settings, day=None, fleet: FleetView = ALONE) -> str:
    """/etc/postfix/NAME (main.cf, master.cf) as the deploy writes it on ``day`` (today)."""
    return render(f"postfix/{name}.j2", settings,
                  **template_data(settings, day or today(), fleet))


# The backup MX (backup_mx_for): the addresses it accepts, how it hands mail over, who may ask
# it to (ETRN); every map is empty on a host that holds no other host's mail
ETRN_CLIENTS = "/etc/postfix/etrn_clients"


def relay_recipient_map(fleet: FleetView) -> str:
    """relay_recipient_maps: every address the held domains' mail hosts accept (the others are
    refused at RCPT: nothing is accepted that would bounce later)."""
    return "".join(f"{a} OK\n" for held in fleet.held for a in held.recipients)


def tls_policy_map(fleet: FleetView) -> str:
    """smtp_tls_policy_maps: held mail goes to its mail host only over TLS whose certificate
    verifies for that host's name (never in clear, never to another name); keyed by the
    domain and by each next hop held_transport_map names."""
    lines = []
    for held in fleet.held:
        names = [h.hostname for h in held.mail_hosts]
        for key in (held.domain, *(f"[{n}]" for n in names)):
            lines.append(f"{key} secure match={':'.join(names)}\n")
    return "".join(lines)


def held_transport_map(fleet: FleetView) -> str:
    """transport_maps entries: held mail goes to the domain's mail hosts by their names, not by
    the domain's MX (which, while a domain moves here from this host, still names this host:
    the mail would loop back to it and bounce)."""
    return "".join(f"{held.domain} relay:{','.join(f'[{h.hostname}]' for h in held.mail_hosts)}\n"
                   for held in fleet.held)


def etrn_clients(fleet: FleetView) -> str:
    """The addresses that may ask for held mail now (ETRN): the held domains' mail hosts."""
    addresses = dict.fromkeys(a for held in fleet.held for h in held.mail_hosts
                              for a in h.addresses)
    return "".join(f"{a} OK\n" for a in addresses)


def etrn_script(fleet: FleetView, domains: list[str]) -> str:
    """Ask each backup MX for the mail it holds for DOMAINS (SMTP ETRN, RFC 1985)."""
    hosts = [b.hostname for b in fleet.backups]
    return (
        "#!/usr/bin/python3\n"
        "# Managed by mailhost (mailhost/host/postfix.py): run when Postfix starts, so that the\n"
        "# mail the backup MX hosts held while this host was away comes now, not at their next\n"
        "# retry. A backup that does not answer is skipped (it retries on its own).\n"
        "import smtplib\n"
        f"for host in {hosts!r}:\n"
        "    try:\n"
        "        with smtplib.SMTP(host, 25, timeout=20) as client:\n"
        "            client.ehlo()\n"
        f"            for domain in {domains!r}:\n"
        "                print(host, domain, *client.docmd('ETRN', domain))\n"
        "    except (OSError, smtplib.SMTPException) as error:\n"
        "        print(host, 'not reached:', error)\n")


ETRN_UNIT_TEXT = (
    "# Managed by mailhost (mailhost/host/postfix.py)\n"
    "[Unit]\n"
    "Description=Ask the backup MX hosts for the mail they hold (ETRN)\n"
    "After=postfix.service network-online.target\n"
    "PartOf=postfix.service\n"
    "\n"
    "[Service]\n"
    "Type=oneshot\n"
    f"ExecStart={ETRN_SCRIPT}\n"
    "\n"
    "[Install]\n"
    "WantedBy=postfix.service\n")


def _etrn_on_start(fleet: FleetView) -> bool:
    """On a mail host that has backup MX hosts: the ETRN unit, started with Postfix."""
    domains = sorted({d for d, mx in fleet.mx.items() if any(
        b.hostname in mx for b in fleet.backups)})
    if not fleet.backups:
        return False
    changed = put_text(ETRN_SCRIPT, etrn_script(fleet, domains), mode="755")
    if put_text(ETRN_UNIT, ETRN_UNIT_TEXT):
        server.shell(name="systemctl enable mailhost-etrn",
                     commands=["systemctl daemon-reload", "systemctl enable mailhost-etrn"])
        changed = True
    return changed


def today():
    """The day the warm-up's pace is read for (UTC; a test may replace it)."""
    return datetime.now(UTC).date()


def queue_ages(output: str) -> list[int]:
    """`date +%s; postqueue -j` -> each queued message's age in seconds."""
    now, *lines = output.splitlines()
    return [int(now) - json.loads(line)["arrival_time"] for line in lines if line.strip()]


QUEUE = QueueReader("date +%s; postqueue -j", queue_ages, where="`postqueue -p`",
                    spool=POSTFIX_QUEUES,
                    drain="let Postfix deliver them (`postqueue -f`, then `postqueue -p` until "
                          "empty) or delete them yourself (`postsuper -d ALL`)")


SASL_PASSWORDS = "/etc/postfix/sasl_passwd"


def relay_passwords(settings: Settings, secrets: Secrets) -> str:
    """Postfix's password table for relay_host (empty without one)."""
    if not settings.relay_host:
        return ""
    return f"{settings.relay_host} {settings.relay_user}:{secrets.relay_password.reveal()}\n"


def _relay_password(settings: Settings, secrets: Secrets) -> bool:
    """The relay's password table, 0600, and its lookup table made from it (also 0600)."""
    changed = secret_file(name="Postfix relay password table", path=SASL_PASSWORDS,
                          content=Secret(relay_passwords(settings, secrets)),
                          mode="600").will_change
    if changed:
        server.shell(name=f"postmap {SASL_PASSWORDS}",
                     commands=[f"postmap {SASL_PASSWORDS}", f"chmod 600 {SASL_PASSWORDS}.db"])
    return changed


def _postmap(name: str, content: str):
    path = f"/etc/postfix/{name}"
    changed = put_text(path, content)
    if changed:
        server.shell(name=f"postmap {path}", commands=[f"postmap {path}"])
    return changed
