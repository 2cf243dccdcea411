"""Postfix: the ``mta = "postfix"`` mail host's SMTP server (25, and submission on 587 and 465
for the users Dovecot authenticates), with OpenDKIM, Dovecot (users, IMAP, delivery by LMTP)
and postsrsd as its other components (mailhost.host.mtas). Restarted only when a file it
reads changed, so a converged host shows no change.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pyinfra.operations import server

from mailhost.host import CertificateReader, QueueReader, base
from mailhost.host.users import alias_map, mailbox_map, mailbox_root, sender_login_map
from mailhost.keys.steps import KeySteps
from mailhost.operations.files import put_text, render, write_template
from mailhost.operations.secret_file import secret_file
from mailhost.paths import POSTFIX_QUEUES
from mailhost.secrets import Secret, Secrets
from mailhost.settings import Settings
from mailhost.warmup import PROVIDERS, SCHEDULE, pace_on, transport_map

PACKAGES = ("postfix",)
# the SASL client's PLAIN and LOGIN mechanisms: without them Postfix cannot log in to
# relay_host ("No worthy mechs found", seen in the lab); installed only with a relay (and left
# installed when the relay goes, as Redis is after greylisting)
SASL_CLIENT_PACKAGE = "libsasl2-modules"
UNITS = ("postfix",)
ROOTS = ("/etc/postfix",)
CERTIFICATE_READERS = (CertificateReader("postfix", after_renewal="reload"),)
OLD_TLS_ADVICE = ("the MTA must accept TLS 1.2 or newer only (Postfix: smtpd_tls_protocols and "
                  "smtpd_tls_mandatory_protocols = >=TLSv1.2)")
CBC_ADVICE = ("submission must use only AEAD ciphers with forward secrecy (Postfix: "
              "-o smtpd_tls_mandatory_ciphers=high in master.cf and tls_high_cipherlist from "
              "Mozilla's intermediate profile)")


def configure(settings: Settings, secrets: Secrets, steps: KeySteps | None = None) -> set[str]:
    """main.cf, master.cf and the maps (mailboxes, aliases, who may send as whom); what to
    restart."""
    mailbox_root()
    if settings.relay_host:
        base.install_packages([SASL_CLIENT_PACKAGE])
    data = template_data(settings, today())
    changed = any([
        write_template("postfix/main.cf.j2", "/etc/postfix/main.cf", settings, **data),
        write_template("postfix/master.cf.j2", "/etc/postfix/master.cf", settings, **data),
        *[_postmap(name, content) for name, content in [
            ("vmailbox", mailbox_map(settings)),
            ("virtual", alias_map(settings)),
            ("sender_login", sender_login_map(settings)),
            ("transport", transport_map(data["pace"])),
        ]],
        _relay_password(settings, secrets),
    ])
    return set(UNITS) if changed else set()


def template_data(settings: Settings, day) -> dict:
    """What main.cf and master.cf are rendered with besides the settings, on ``day``."""
    return {"smtp_address_preference": "any", "pace": pace_on(settings.warmup_start, day),
            "transports": list(PROVIDERS), "schedule": SCHEDULE}


def rendered(name: str, settings: Settings, day=None) -> str:
    """/etc/postfix/NAME (main.cf, master.cf) as the deploy writes it on ``day`` (today)."""
    return render(f"postfix/{name}.j2", settings, **template_data(settings, day or today()))


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
