"""Mail users and aliases: password hashes, mailbox and alias maps. Passwords never printed."""

from __future__ import annotations

from types import MappingProxyType

from passlib.hash import sha512_crypt
from pyinfra import host
from pyinfra.facts.files import FileContents
from pyinfra.operations import server

from mailhost.facts import Accounts, known_lines
from mailhost.operations.files import directory
from mailhost.paths import (
    DOVECOT_USERS,
    MAILBOX_ROOT,
    VMAIL_GID,
    VMAIL_UID,
    dovecot_home,
)
from mailhost.secrets import Secrets
from mailhost.settings import Settings

ROOTS = (MAILBOX_ROOT,)  # read with facts.read_paths
NOLOGIN = "/usr/sbin/nologin"
VMAIL_ACCOUNT = MappingProxyType({"uid": VMAIL_UID, "gid": VMAIL_GID, "home": MAILBOX_ROOT,
                                  "shell": NOLOGIN})
# SHA512-crypt rounds: OWASP's figure for PBKDF2-HMAC-SHA512 (210,000), about 0.15 s a hash
# here. libpass's default (656,000) costs the VPS about 0.4 s of CPU at every IMAP/SMTP login
# (a cheap way to exhaust a 1-vCPU VPS with wrong passwords) and the controller as much per
# user on every run, where the kept hash is verified. Older hashes keep their own rounds.
HASH_ROUNDS = 210_000


def dovecot_users(settings: Settings, secrets: Secrets, existing: dict[str, str]) -> str:
    """Dovecot's passwd-file (passdb and userdb: the mail user's uid, gid and home, a
    directory of the Maildir, paths.dovecot_home): SHA512-CRYPT with a random salt per user.
    A hash already on the host (``existing``) is kept when the password still verifies
    against it, so a re-run writes nothing and a password change rewrites only that user's
    line."""
    lines = []
    for address in settings.mail_users:
        password = secrets.passwords[address].reveal()
        current = existing.get(address, "")
        if not (current.startswith("$6$") and sha512_crypt.verify(password, current)):
            current = sha512_crypt.using(rounds=HASH_ROUNDS).hash(password)
        user, domain = address.split("@")
        lines.append(f"{address}:{{SHA512-CRYPT}}{current}:{VMAIL_UID}:{VMAIL_GID}::"
                     f"{dovecot_home(domain, user)}::\n")
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
    """The file of password hashes on the host (Dovecot's, which both MTAs ask): read with
    facts.read_paths (its ``contents``), so keeping its hashes costs no round trip."""
    return [DOVECOT_USERS]


def host_lines(path: str) -> list[str] | None:
    """A file's lines on the host: as read_paths read them, else read now (FileContents)."""
    known, lines = known_lines(path)
    return lines if known else host.get_fact(FileContents, path=path)


def host_dovecot_users(settings: Settings, secrets: Secrets, keep: tuple[str, ...] = ()) -> str:
    """dovecot_users, keeping the hashes the host has that still verify; with KEEP (the
    domains moving away whose mail this host still delivers until its Postfix relays them),
    the host's lines of those domains' users too."""
    lines = host_lines(DOVECOT_USERS) or []
    kept = "".join(line.strip() + "\n" for line in lines
                   if line.partition(":")[0].rpartition("@")[2] in keep)
    return dovecot_users(settings, secrets, parse_dovecot_users(lines)) + kept


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


# chasquid: the internal name of a mailbox's kept copy, alice=mailbox@example.test (no address
# of ours has '=', and chasquid refuses it at RCPT: neither user nor alias)
KEPT_COPY = "=mailbox"


def chasquid_aliases(settings: Settings) -> dict[str, list[str]]:
    """aliases() as chasquid's files hold them. "Keep a copy and forward" (alice -> [alice,
    ...]): chasquid would resolve alice again, until its recursion limit, and refuse the
    message; the copy goes to alice's internal name instead, which its delivery agent hands to
    Dovecot as alice (kept_copies). Postfix takes the self-reference as it is."""
    return {address: [_kept_copy_name(t) if t == address and t in settings.mail_users else t
                      for t in targets]
            for address, targets in aliases(settings).items()}


def kept_copies(settings: Settings) -> dict[str, str]:
    """chasquid's delivery agent: each internal name of a kept copy, as chasquid hands it over
    (its drop characters, '.', removed), and the mailbox it goes to."""
    return {_as_chasquid_delivers(_kept_copy_name(address)): address
            for address, targets in settings.mail_aliases.items()
            if address in targets and address in settings.mail_users}


def _kept_copy_name(address: str) -> str:
    user, domain = address.split("@")
    return f"{user}{KEPT_COPY}@{domain}"


def _as_chasquid_delivers(address: str) -> str:
    user, domain = address.split("@")
    return f"{user.replace('.', '')}@{domain}"


def alias_map(settings: Settings) -> str:
    """Postfix virtual_alias_maps (a mailbox's own address among its alias's targets keeps a
    copy there: Postfix does not expand an address found in its own expansion)."""
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


