"""Dovecot, for SASL only: checks the passwords of Postfix's submissions (no IMAP/POP3).
A component of the Postfix MTA (see mailhost.host)."""

from __future__ import annotations

from mailhost.host import write_template
from mailhost.host.users import host_dovecot_users
from mailhost.operations.secret_file import secret_file
from mailhost.paths import DOVECOT_USERS
from mailhost.secrets import Secret, Secrets
from mailhost.settings import Settings

PACKAGES = ["dovecot-core"]
UNITS = ["dovecot"]
ROOTS = ["/etc/dovecot"]


def configure(settings: Settings, secrets: Secrets) -> set[str]:
    """Its configuration and the users' password hashes; what to restart."""
    changed = any([
        write_template("dovecot/dovecot.conf.j2", "/etc/dovecot/dovecot.conf", settings),
        secret_file(name="Dovecot users (password hashes)",
                    content=Secret(host_dovecot_users(settings, secrets)),
                    path=DOVECOT_USERS, group="dovecot", mode="640").will_change,
    ])
    return set(UNITS) if changed else set()
