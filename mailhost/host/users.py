"""Mail users and aliases: password hashes, mailbox and alias maps. Passwords never printed."""

from __future__ import annotations

import hashlib
import hmac
import os
import re

from passlib.hash import sha512_crypt
from pyinfra import host
from pyinfra.facts.files import FileContents
from pyinfra.operations import server

from mailhost.facts import Accounts, known_lines
from mailhost.host import directory
from mailhost.paths import CHASQUID_CONFIG, DOVECOT_USERS, MAILBOX_ROOT, VMAIL_GID, VMAIL_UID
from mailhost.secrets import Secrets
from mailhost.settings import Settings

ROOTS = [MAILBOX_ROOT]  # read with facts.read_paths
NOLOGIN = "/usr/sbin/nologin"
VMAIL_ACCOUNT = {"uid": VMAIL_UID, "gid": VMAIL_GID, "home": MAILBOX_ROOT, "shell": NOLOGIN}
SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}  # as chasquid-util makes them
# SHA512-crypt rounds: OWASP's figure for PBKDF2-HMAC-SHA512 (210,000), about 0.15 s a hash
# here. libpass's default (656,000) costs the VPS about 0.4 s of CPU at every IMAP/SMTP login
# (a cheap way to exhaust a 1-vCPU VPS with wrong passwords) and the controller as much per
# user on every run, where the kept hash is verified. Older hashes keep their own rounds.
HASH_ROUNDS = 210_000


def dovecot_users(settings: Settings, secrets: Secrets, existing: dict[str, str]) -> str:
    """Dovecot's passwd-file: SHA512-CRYPT with a random salt per user. A hash already on the
    host (``existing``) is kept when the password still verifies against it, so a re-run
    writes nothing and a password change rewrites only that user's line."""
    lines = []
    for address in settings.mail_users:
        password = secrets.passwords[address].reveal()
        current = existing.get(address, "")
        if not (current.startswith("$6$") and sha512_crypt.verify(password, current)):
            current = sha512_crypt.using(rounds=HASH_ROUNDS).hash(password)
        lines.append(f"{address}:{{SHA512-CRYPT}}{current}\n")
    return "".join(lines)


def parse_dovecot_users(lines: list[str] | None) -> dict[str, str]:
    """The hashes in a passwd-file written by dovecot_users, by address."""
    result = {}
    for line in lines or []:
        address, _, rest = line.strip().partition(":")
        if rest.startswith("{SHA512-CRYPT}"):
            result[address] = rest.removeprefix("{SHA512-CRYPT}").split(":")[0]
    return result


def hash_files(settings: Settings) -> list[str]:
    """The files of password hashes on the host, of both MTAs: read with facts.read_paths
    (its ``contents``), so keeping their hashes costs no round trip."""
    return [DOVECOT_USERS, *[chasquid_users_path(domain) for domain in settings.mail_domains]]


def host_lines(path: str) -> list[str] | None:
    """A file's lines on the host: as read_paths read them, else read now (FileContents)."""
    known, lines = known_lines(path)
    return lines if known else host.get_fact(FileContents, path=path)


def host_dovecot_users(settings: Settings, secrets: Secrets) -> str:
    """dovecot_users, keeping the hashes the host has that still verify."""
    existing = parse_dovecot_users(host_lines(DOVECOT_USERS))
    return dovecot_users(settings, secrets, existing)


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


def chasquid_users(settings: Settings, secrets: Secrets, domain: str,
                   existing: dict[str, tuple[bytes, bytes]] | None = None) -> str:
    """chasquid's users database of one domain (domains/DOMAIN/users, text protobuf), with
    scrypt hashes in chasquid-util's format and a random salt. A user's entry on the host
    (``existing``: user -> (salt, encrypted)) is kept when the password still verifies."""
    existing = existing or {}
    entries = []
    for address in settings.mail_users:
        user, user_domain = address.split("@")
        if user_domain != domain:
            continue
        password = secrets.passwords[address].reveal().encode()
        salt, encrypted = existing.get(user, (b"", b""))
        if not (salt and hmac.compare_digest(_scrypt(password, salt), encrypted)):
            salt = os.urandom(16)
            encrypted = _scrypt(password, salt)
        entries.append(
            f'users: {{\n  key: "{user}"\n  value: {{\n    scrypt: {{\n'
            f"      logN: 14\n      r: 8\n      p: 1\n      keyLen: 32\n"
            f'      salt: "{_octal(salt)}"\n      encrypted: "{_octal(encrypted)}"\n'
            f"    }}\n  }}\n}}\n"
        )
    return "".join(entries)


_CHASQUID_ENTRY = re.compile(
    r'key: "([^"]+)"\s*value: \{\s*scrypt: \{\s*logN: 14\s*r: 8\s*p: 1\s*keyLen: 32\s*'
    r'salt: "((?:\\[0-7]{3})+)"\s*encrypted: "((?:\\[0-7]{3})+)"')


def parse_chasquid_users(lines: list[str] | None) -> dict[str, tuple[bytes, bytes]]:
    """The (salt, encrypted) of each user in a database written by chasquid_users (other
    parameters or formats are not read: those users get a new hash)."""
    return {user: (_unoctal(salt), _unoctal(encrypted))
            for user, salt, encrypted in _CHASQUID_ENTRY.findall("\n".join(lines or []))}


def chasquid_users_path(domain: str) -> str:
    """chasquid's users database of a domain."""
    return f"{CHASQUID_CONFIG}/domains/{domain}/users"


def host_chasquid_users(settings: Settings, secrets: Secrets, domain: str) -> str:
    """chasquid_users, keeping the entries the host has that still verify."""
    existing = parse_chasquid_users(host_lines(chasquid_users_path(domain)))
    return chasquid_users(settings, secrets, domain, existing)


def _scrypt(password: bytes, salt: bytes) -> bytes:
    return hashlib.scrypt(password, salt=salt, maxmem=64 * 1024 * 1024, **SCRYPT)


def _octal(data: bytes) -> str:
    """Bytes as a protobuf text-format string, every byte escaped."""
    return "".join(f"\\{byte:03o}" for byte in data)


def _unoctal(text: str) -> bytes:
    return bytes(int(octal, 8) for octal in re.findall(r"\\([0-7]{3})", text))


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


