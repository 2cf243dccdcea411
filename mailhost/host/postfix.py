"""Postfix + OpenDKIM + Dovecot (SASL only) + postsrsd: the ``mta = "postfix"`` mail host.

install -> configure -> activate, like every component. Services are restarted only when a
file they read changed, so a converged host shows no change.
"""

from __future__ import annotations

from io import StringIO

from pyinfra.operations import files, server, systemd

from mailhost.dkim import host_key_path
from mailhost.host import units, write_template
from mailhost.host.users import (
    alias_map,
    host_dovecot_users,
    mailbox_map,
    mailbox_root,
    sender_login_map,
)
from mailhost.operations.secret_file import secret_file
from mailhost.secrets import Secret, Secrets
from mailhost.settings import Settings

PACKAGES = ["postfix", "opendkim", "dovecot-core", "postsrsd", "dns-root-data"]
SERVICES = ["postsrsd", "opendkim", "dovecot", "postfix"]


def configure(settings: Settings, secrets: Secrets) -> dict[str, bool]:
    """Write every configuration file; returns, per service, whether it must restart."""
    mailbox_root()

    postfix_changed = any([
        write_template("postfix/main.cf.j2", "/etc/postfix/main.cf", settings,
                       smtp_address_preference="any"),
        write_template("postfix/master.cf.j2", "/etc/postfix/master.cf", settings),
        *[_postmap(name, content) for name, content in [
            ("vmailbox", mailbox_map(settings)),
            ("virtual", alias_map(settings)),
            ("sender_login", sender_login_map(settings)),
        ]],
    ])

    key_paths = {d: host_key_path(settings, d, "rsa") for d in settings.mail_domains}
    opendkim_changed = any([
        write_template("opendkim/opendkim.conf.j2", "/etc/opendkim.conf", settings),
        write_template("opendkim/KeyTable.j2", "/etc/opendkim/KeyTable", settings,
                       key_paths=key_paths),
        write_template("opendkim/SigningTable.j2", "/etc/opendkim/SigningTable", settings),
        write_template("opendkim/TrustedHosts.j2", "/etc/opendkim/TrustedHosts", settings),
    ])

    dovecot_changed = any([
        write_template("dovecot/dovecot.conf.j2", "/etc/dovecot/dovecot.conf", settings),
        secret_file(name="Dovecot users (password hashes)",
                    content=Secret(host_dovecot_users(settings, secrets)),
                    path="/etc/dovecot/mailhost-users", group="dovecot", mode="640").will_change,
    ])
    srs_changed = write_template("postfix/postsrsd.j2", "/etc/default/postsrsd", settings)
    return {"postfix": postfix_changed, "opendkim": opendkim_changed,
            "dovecot": dovecot_changed, "postsrsd": srs_changed}


def activate(restart: dict[str, bool]) -> None:
    """Start and enable every service; restart those whose configuration changed."""
    for service in SERVICES:
        systemd.service(name=f"{service} running and enabled", service=service, running=True,
                        enabled=True, restarted=restart[service])


def deactivate() -> None:
    """Stop and disable every service (the host now runs another MTA): port 25 is released."""
    for service in reversed(SERVICES):
        units.stopped(service)



def _postmap(name: str, content: str):
    path = f"/etc/postfix/{name}"
    changed = files.put(name=path, src=StringIO(content), dest=path, mode="644").will_change
    if changed:
        server.shell(name=f"postmap {path}", commands=[f"postmap {path}"])
    return changed
