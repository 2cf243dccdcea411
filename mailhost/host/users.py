"""Mail users and aliases: password hashes, mailbox and alias maps. Passwords never printed."""

from __future__ import annotations

import hashlib
import hmac
import subprocess

from pyinfra import host
from pyinfra.operations import server

from mailhost.facts import Accounts
from mailhost.host import directory
from mailhost.paths import MAILBOX_ROOT, VMAIL_GID, VMAIL_UID
from mailhost.secrets import Secrets
from mailhost.settings import Settings

ROOTS = [MAILBOX_ROOT]  # read with facts.read_paths
NOLOGIN = "/usr/sbin/nologin"
VMAIL_ACCOUNT = {"uid": VMAIL_UID, "gid": VMAIL_GID, "home": MAILBOX_ROOT, "shell": NOLOGIN}
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
    """Postfix virtual_mailbox_maps: each user's Maildir under paths.MAILBOX_ROOT."""
    return "".join(
        f"{address} {address.split('@')[1]}/{address.split('@')[0]}/\n"
        for address in settings.mail_users
    )


def aliases(settings: Settings) -> dict[str, list[str]]:
    """Aliases and forwarding, postmaster@ of each domain included (to the first user)."""
    result = dict(settings.mail_aliases)
    for domain in settings.mail_domains:
        postmaster = f"postmaster@{domain}"
        if postmaster not in result and settings.mail_users:
            result[postmaster] = [settings.mail_users[0]]
    return dict(sorted(result.items()))


def alias_map(settings: Settings) -> str:
    """Postfix virtual_alias_maps."""
    return "".join(f"{a} {', '.join(t)}\n" for a, t in aliases(settings).items())


def sender_owners(settings: Settings) -> dict[str, list[str]]:
    """Who may send as which address: each user as itself and as the aliases that reach it."""
    owners: dict[str, list[str]] = {u: [u] for u in settings.mail_users}
    for alias, targets in settings.mail_aliases.items():
        local = [t for t in targets if t in settings.mail_users]
        if local:
            owners.setdefault(alias, []).extend(local)
    return {address: sorted(set(users)) for address, users in sorted(owners.items())}


def sender_login_map(settings: Settings) -> str:
    """Postfix smtpd_sender_login_maps."""
    return "".join(f"{a} {', '.join(o)}\n" for a, o in sender_owners(settings).items())


def chasquid_users(settings: Settings, secrets: Secrets, domain: str) -> str:
    """chasquid's users database of one domain (domains/DOMAIN/users, text protobuf), with
    scrypt hashes as chasquid-util makes them (N=2^14, r=8, p=1, 32 bytes) but a salt derived
    from the password, so that a converged host shows no change."""
    entries = []
    for address in settings.mail_users:
        user, user_domain = address.split("@")
        if user_domain != domain:
            continue
        password = secrets.passwords[address].reveal().encode()
        salt = hmac.new(password, b"chasquid:" + address.encode(), hashlib.sha256).digest()[:16]
        encrypted = hashlib.scrypt(password, salt=salt, n=2**14, r=8, p=1, dklen=32,
                                   maxmem=64 * 1024 * 1024)
        entries.append(
            f'users: {{\n  key: "{user}"\n  value: {{\n    scrypt: {{\n'
            f"      logN: 14\n      r: 8\n      p: 1\n      keyLen: 32\n"
            f'      salt: "{_octal(salt)}"\n      encrypted: "{_octal(encrypted)}"\n'
            f"    }}\n  }}\n}}\n"
        )
    return "".join(entries)


def _octal(data: bytes) -> str:
    """Bytes as a protobuf text-format string, every byte escaped."""
    return "".join(f"\\{byte:03o}" for byte in data)


def mailbox_root(delivering_user: str | None = None) -> None:
    """The vmail user and group, and the mailbox root (setgid, as /var/mail is: mailbox
    directories inherit the group). Both MTAs deliver there; ``delivering_user`` (chasquid)
    joins the group. The accounts are read in one command: when they are as wanted, no
    operation is added."""
    found = host.get_fact(Accounts, users=["vmail"], groups=["vmail"])
    group = found["groups"].get("vmail")
    if group is None or group["gid"] != VMAIL_GID:
        server.group(name="vmail group", group="vmail", gid=VMAIL_GID, system=True)
    if found["users"].get("vmail") != VMAIL_ACCOUNT:
        server.user(name="vmail user", user="vmail", uid=VMAIL_UID, group="vmail",
                    home=MAILBOX_ROOT, shell=NOLOGIN, system=True)
    if delivering_user and delivering_user not in (group or {}).get("members", []):
        server.user(name=f"{delivering_user} may deliver into the mailboxes (group vmail)",
                    user=delivering_user, groups=["vmail"], append=True)
    directory(MAILBOX_ROOT, user="vmail", group="vmail", mode="2750", name="Mailboxes")


