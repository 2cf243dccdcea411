"""Mail users and aliases: password hashes, mailbox and alias maps. Passwords never printed."""

from __future__ import annotations

import hashlib
import hmac
import subprocess

from mailhost.secrets import Secrets
from mailhost.settings import Settings

SALT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def password_hash(address: str, password: str) -> str:
    """SHA512-CRYPT of the password, with a salt derived from it: the same on every run,
    so a converged host shows no change, and different whenever the password changes."""
    digest = hmac.new(password.encode(), address.encode(), hashlib.sha256).digest()
    salt = "".join(SALT_ALPHABET[b % 64] for b in digest[:16])
    result = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
                            input=password, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def dovecot_users(settings: Settings, secrets: Secrets) -> str:
    return "".join(
        f"{address}:{{SHA512-CRYPT}}{password_hash(address, secrets.passwords[address].reveal())}\n"
        for address in settings.mail_users
    )


def mailbox_map(settings: Settings) -> str:
    """Postfix virtual_mailbox_maps: each user's Maildir under /var/mail/vhosts."""
    return "".join(
        f"{address} {address.split('@')[1]}/{address.split('@')[0]}/\n"
        for address in settings.mail_users
    )


def alias_map(settings: Settings) -> str:
    """Postfix virtual_alias_maps: aliases and forwarding (postmaster@ of each domain included)."""
    aliases = dict(settings.mail_aliases)
    for domain in settings.mail_domains:
        postmaster = f"postmaster@{domain}"
        if postmaster not in aliases and settings.mail_users:
            aliases[postmaster] = [settings.mail_users[0]]
    return "".join(f"{a} {', '.join(t)}\n" for a, t in sorted(aliases.items()))


def sender_login_map(settings: Settings) -> str:
    """Who may send as which address: each user as itself and as the aliases that reach it."""
    owners: dict[str, list[str]] = {u: [u] for u in settings.mail_users}
    for alias, targets in settings.mail_aliases.items():
        local = [t for t in targets if t in settings.mail_users]
        if local:
            owners.setdefault(alias, []).extend(local)
    return "".join(f"{a} {', '.join(sorted(set(o)))}\n" for a, o in sorted(owners.items()))


