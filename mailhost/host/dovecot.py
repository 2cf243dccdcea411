"""Dovecot: the users' mailboxes over IMAP (993, TLS; 143 with STARTTLS when
``imap_starttls``), delivery into them by LMTP (Sieve files marked spam into Junk, then runs
the user's own script), ManageSieve on 4190 (Pigeonhole; STARTTLS before any login) where users
keep their filters and vacation replies, an optional quota, and the one user database both MTAs
authenticate SMTP AUTH against (Postfix's SASL socket, chasquid's ``dovecot_auth``). A
component of both MTAs (mailhost.host.mtas).

Vacation replies (RFC 5230) leave through Postfix's sendmail, signed by OpenDKIM like any mail
made on the host; chasquid has no sendmail and lets no unauthenticated client relay, so with
chasquid the vacation extension is off (a script that asks for it is refused when uploaded).

The Maildirs stay where both MTAs have always delivered (paths.MAILBOX_ROOT/DOMAIN/USER);
Dovecot's home of each user is a directory of it (paths.dovecot_home), so the backups keep the
users' Sieve scripts with their mail.
Dovecot 2.4 (Debian 13) reads another configuration syntax than 2.3: the template follows the
version apt has on the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from pyinfra import host
from pyinfra.operations import server

from mailhost.facts import DebianPackageVersion
from mailhost.host import CertificateReader, move
from mailhost.host.users import host_dovecot_users
from mailhost.keys.steps import KeySteps
from mailhost.operations.files import directory, write_template
from mailhost.operations.secret_file import secret_file
from mailhost.paths import DOVECOT_USERS
from mailhost.secrets import Secret, Secrets
from mailhost.settings import Settings
from mailhost.settings.fleet import ALONE, FleetView

PACKAGES = ("dovecot-core", "dovecot-imapd", "dovecot-lmtpd", "dovecot-sieve",
            "dovecot-managesieved")
UNITS = ("dovecot",)
POSTFIX_PRIVATE = "/var/spool/postfix/private"  # Postfix's sockets (auth, LMTP) are made here
ROOTS = ("/etc/dovecot", POSTFIX_PRIVATE)
CERTIFICATE_READERS = (CertificateReader("dovecot", after_renewal="reload"),)
IMAPS_PORT, IMAP_PORT = 993, 143
MANAGESIEVE_PORT = 4190  # RFC 5804
SIEVE_DIR = "/etc/dovecot/sieve"
JUNK_SIEVE = f"{SIEVE_DIR}/junk.sieve"
# special-use folders (RFC 6154), created and subscribed at a user's first login or delivery
FOLDERS = (("Drafts", "Drafts"), ("Junk", "Junk"), ("Sent", "Sent"), ("Trash", "Trash"))
# Mozilla's "intermediate" profile: AEAD ciphers with forward secrecy (TLS 1.2; 1.3 has its own)
CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
           "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
           "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
           "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305")
# the LMTP socket each MTA delivers to, and the auth sockets it asks (chasquid's are the names
# its dovecot_auth looks for)
BASE_DIR = "/run/dovecot"
POSTFIX_LMTP = f"{POSTFIX_PRIVATE}/dovecot-lmtp"
CHASQUID_LMTP = f"{BASE_DIR}/lmtp-chasquid"
CHASQUID_AUTH_USERDB = f"{BASE_DIR}/auth-chasquid-userdb"
CHASQUID_AUTH_CLIENT = f"{BASE_DIR}/auth-chasquid-client"


@dataclass(frozen=True)
class Listener:
    """A unix socket of a Dovecot service, for one user."""

    path: str
    user: str
    group: str


# vacation replies: at most one per sender per period; a script's :days may not go below or
# above these (Pigeonhole's sieve_vacation_*_period), 7 days when it names none (RFC 5230 4.1)
VACATION_PERIODS = MappingProxyType({"min": "1d", "default": "7d", "max": "30d"})


def ports(settings: Settings) -> tuple[int, ...]:
    """The ports Dovecot listens on: 993, 143 when ``imap_starttls``, and ManageSieve's 4190."""
    imap = (IMAPS_PORT, IMAP_PORT) if settings.imap_starttls else (IMAPS_PORT,)
    return (*imap, MANAGESIEVE_PORT)


def vacation(settings: Settings) -> bool:
    """Whether users may send vacation replies: with Postfix, whose sendmail sends them signed
    (chasquid has no sendmail, and relays only for authenticated clients)."""
    return settings.mta == "postfix"


def listeners(settings: Settings) -> tuple[list[Listener], list[Listener]]:
    """The LMTP and auth sockets the host's MTA uses (those in Dovecot's base_dir by name)."""
    if settings.mta == "chasquid":
        def own(path):
            return Listener(path.removeprefix(f"{BASE_DIR}/"), "chasquid", "chasquid")
        return ([own(CHASQUID_LMTP)], [own(CHASQUID_AUTH_USERDB), own(CHASQUID_AUTH_CLIENT)])
    return ([Listener(POSTFIX_LMTP, "postfix", "postfix")],
            [Listener(f"{POSTFIX_PRIVATE}/auth", "postfix", "postfix")])


def template_for(version: tuple[int, int] | None) -> str:
    """The configuration template of a Dovecot version (2.4 changed the syntax)."""
    return "dovecot/dovecot-2.4.conf.j2" if version and version >= (2, 4) else \
        "dovecot/dovecot.conf.j2"


def render_data(settings: Settings) -> dict:
    """What the configuration templates get besides ``s`` and ``p``."""
    lmtp, auth = listeners(settings)
    return {"ciphers": CIPHERS, "folders": FOLDERS, "sieve_before": JUNK_SIEVE,
            "lmtp_listeners": lmtp, "auth_listeners": auth,
            "managesieve_port": MANAGESIEVE_PORT, "vacation": vacation(settings),
            "vacation_periods": VACATION_PERIODS}


def configure(settings: Settings, secrets: Secrets, steps: KeySteps | None = None,
              fleet: FleetView = ALONE) -> set[str]:
    """Its configuration (the syntax of the Dovecot version apt has), the global Sieve script
    (compiled: the mail user cannot write next to it) and the users' password hashes; what to
    restart."""
    version = host.get_fact(DebianPackageVersion, package="dovecot-core")
    changed = [
        write_template(template_for(version), "/etc/dovecot/dovecot.conf", settings,
                       **render_data(settings)),
        secret_file(name="Dovecot users (password hashes)",
                    # a domain moving away: its users stay until the move's snapshot
                    content=Secret(host_dovecot_users(settings, secrets,
                                                      tuple(move.sending(fleet)))),
                    path=DOVECOT_USERS, group="dovecot", mode="640").will_change,
    ]
    if settings.mta == "postfix":
        # Debian 13's package makes it only when Postfix first starts, after Dovecot
        directory(POSTFIX_PRIVATE, user="postfix", group="root", mode="700")
    directory(SIEVE_DIR, mode="755")
    if write_template("dovecot/junk.sieve.j2", JUNK_SIEVE, settings):
        server.shell(name=f"Compile {JUNK_SIEVE}", commands=[f"sievec {JUNK_SIEVE}"])
        changed.append(True)
    return set(UNITS) if any(changed) else set()
