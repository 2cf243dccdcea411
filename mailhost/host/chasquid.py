"""chasquid: the ``mta = "chasquid"`` mail host, with the same users, aliases, keys and
certificate as the Postfix one.

With Dovecot (mailhost.host.dovecot), its components (mailhost.host.mtas): chasquid asks
Dovecot's auth sockets for users and passwords (``dovecot_auth``: one user database for SMTP
AUTH and IMAP) and delivers through a small agent that hands each message to Dovecot's LMTP
socket. Debian's package listens through systemd sockets (25, 587,
465 on IPv4 and IPv6). DKIM: chasquid signs by itself from 1.14 (a ``dkim:SELECTOR.pem`` in the
domain directory); older versions (Debian 12 ships 1.11) sign in the post-data hook with dkimpy.
The hook also refuses a sender address the authenticated user does not own. TLS: a drop-in
sets GODEBUG so that a chasquid built with Go 1.22 or newer refuses TLS 1.0/1.1.
"""

from __future__ import annotations

from types import MappingProxyType

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand
from pyinfra.facts.files import Sha256File
from pyinfra.operations import files, server

from mailhost.facts import DebianPackageVersion, known_state
from mailhost.host import CertificateReader, QueueReader
from mailhost.host.dovecot import CHASQUID_AUTH_CLIENT, CHASQUID_AUTH_USERDB, CHASQUID_LMTP
from mailhost.host.users import chasquid_aliases, kept_copies, mailbox_root, sender_owners
from mailhost.keys.dkim import (
    host_key_path,
    kinds_for,
    rotation_state,
    selector_for,
    signing_selector,
)
from mailhost.keys.rotation import Step
from mailhost.keys.steps import KeySteps
from mailhost.operations.files import directory, put_text, write_template
from mailhost.paths import CHASQUID_CONFIG, CHASQUID_DELIVER, CHASQUID_QUEUE, TLS_CERT, TLS_KEY
from mailhost.secrets import Secrets
from mailhost.settings import Settings
from mailhost.settings.fleet import ALONE, FleetView

PACKAGES = ("chasquid", "python3-dkim")
UNITS = ("chasquid-smtp.socket", "chasquid-submission.socket",
         "chasquid-submission_tls.socket", "chasquid.service")
# chasquid exits 1 when systemd stops it (SIGTERM; seen with 1.13), so every stop or restart
# counted as a failure toward systemd's start limit: this drop-in makes 1 a clean exit
STOP_DROP_IN = "/etc/systemd/system/chasquid.service.d/mailhost-stop.conf"
STOP_DROP_IN_TEXT = ("# Managed by mailhost (mailhost/host/chasquid.py): chasquid exits 1 on "
                     "SIGTERM\n[Service]\nSuccessExitStatus=1\n")
# chasquid has no TLS settings: its Go decides. Go 1.22 and newer read GODEBUG at start:
# tls10server=0 refuses TLS 1.0/1.1, tlsrsakex=0 the key exchanges without forward secrecy
# (Go keeps CBC suites either way). Older Go ignores it (Ubuntu 22.04's chasquid 1.8: Go 1.18).
TLS_DROP_IN = "/etc/systemd/system/chasquid.service.d/mailhost-tls.conf"
TLS_DROP_IN_TEXT = ("# Managed by mailhost (mailhost/host/chasquid.py): TLS 1.2 or newer, with "
                    "forward secrecy (Go >= 1.22)\n[Service]\n"
                    "Environment=GODEBUG=tls10server=0,tlsrsakex=0\n")
ROOTS = (CHASQUID_CONFIG, CHASQUID_DELIVER, STOP_DROP_IN, TLS_DROP_IN)
USER = "chasquid"  # signs DKIM itself (or in its hook) and owns the keys
NATIVE_DKIM = (1, 14)
ALGORITHMS = MappingProxyType({"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"})
# chasquid reads its own copies of the certificate, as its own user, and has no reload
CERTIFICATE_READERS = (CertificateReader("chasquid", after_renewal="restart",
                                         copy_to=f"{CHASQUID_CONFIG}/certs", copy_owner=USER),)
OLD_TLS_ADVICE = ("chasquid has no setting for its TLS versions: its Go decides. The deploy "
                  "sets Environment=GODEBUG=tls10server=0 for chasquid.service (a drop-in), "
                  "which Go 1.22 or newer obeys (Ubuntu 24.04's chasquid 1.13: Go 1.22; Debian "
                  "13's 1.15: Go 1.24): if this still fails there, restart chasquid.service. "
                  "Ubuntu 22.04's chasquid 1.8 is built with Go 1.18, which cannot refuse TLS "
                  "1.0/1.1: nothing on the host changes that but a chasquid built with a newer "
                  "Go (or mta = \"postfix\")")
CBC_ADVICE = ("chasquid takes its ciphers from Go and has no setting for them, and no GODEBUG "
              "switch removes Go's CBC suites: this stays a warning with chasquid (mta = "
              "\"postfix\" refuses them)")


def native_dkim() -> bool:
    """Whether the chasquid found on the host (installed, else apt's candidate) signs itself."""
    version = host.get_fact(DebianPackageVersion, package="chasquid")
    return version is not None and version >= NATIVE_DKIM


def configure(settings: Settings, secrets: Secrets, steps: KeySteps | None = None,
              fleet: FleetView = ALONE) -> set[str]:
    """Write every configuration file; what to restart (chasquid.service, not its sockets)."""
    mailbox_root()
    drop_ins = [put_text(path, text) for path, text in [(STOP_DROP_IN, STOP_DROP_IN_TEXT),
                                                        (TLS_DROP_IN, TLS_DROP_IN_TEXT)]]
    if any(drop_ins):
        server.shell(name="systemd reads chasquid's drop-ins", commands=["systemctl daemon-reload"])
    native = native_dkim()
    changed = [
        write_template("chasquid/chasquid.conf.j2", f"{CHASQUID_CONFIG}/chasquid.conf", settings,
                       deliver=CHASQUID_DELIVER, auth_userdb=CHASQUID_AUTH_USERDB,
                       auth_client=CHASQUID_AUTH_CLIENT),
        write_template("chasquid/deliver.py.j2", CHASQUID_DELIVER, settings, mode="755",
                       lmtp=CHASQUID_LMTP, copies=kept_copies(settings)),
    ]
    # chasquid runs its hook afresh for every message: a new hook (the From rule) needs no restart
    write_template("chasquid/post-data.py.j2", f"{CHASQUID_CONFIG}/hooks/post-data", settings,
                   mode="755", owners=sender_owners(settings),
                   signing={} if native else _hook_signing(settings, steps))
    all_aliases = chasquid_aliases(settings)
    for domain in settings.mail_domains:
        domain_dir = f"{CHASQUID_CONFIG}/domains/{domain}"
        directory(domain_dir, mode="755")
        changed.append(_no_own_users(f"{domain_dir}/users"))
        domain_aliases = [(a, t) for a, t in all_aliases.items() if a.endswith("@" + domain)]
        changed.append(write_template("chasquid/aliases.j2", f"{domain_dir}/aliases", settings,
                                      domain=domain, aliases=domain_aliases))
        for kind, selector, signs in _dkim_links(settings, domain, steps):
            link = f"{domain_dir}/dkim:{selector}.pem"
            target = host_key_path(settings, domain, kind, selector) if native and signs else None
            if _link_in_place(link, target):
                continue
            if target is not None:
                changed.append(files.link(name=f"chasquid signs with {link}", path=link,
                                          target=target).will_change)
            else:
                why = "signed in the hook" if signs else "not the signing key"
                changed.append(files.link(name=f"No {link} ({why})", path=link,
                                          present=False).will_change)
    changed.extend([_certificate(settings), drop_ins[1]])  # GODEBUG is read at start
    return {"chasquid.service"} if any(changed) else set()


def queue_ages(output: str) -> list[int]:
    """`date +%s` then each queue file's mtime -> each queued message's age in seconds."""
    now, *lines = output.splitlines()
    return [int(now) - int(float(line)) for line in lines if line.strip()]


QUEUE = QueueReader(f"date +%s; find {CHASQUID_QUEUE} -type f -printf '%T@\\n' 2>/dev/null || true",
                    queue_ages, where=CHASQUID_QUEUE, spool=(CHASQUID_QUEUE,),
                    drain=f"let chasquid deliver them (it retries on its own; the files in "
                          f"{CHASQUID_QUEUE}) or delete them yourself")


def _signing_selector(settings: Settings, domain: str, kind: str, step: Step | None) -> str:
    """RSA: the rotation's signing key (by this run's step); ed25519: its fixed selector."""
    if kind == "rsa":
        return signing_selector(settings, domain, step)
    return selector_for(settings, kind)


def _dkim_links(settings: Settings, domain: str,
                steps: KeySteps | None = None) -> list[tuple[str, str, bool]]:
    """(kind, selector, signs) of every key a domain's dkim:SELECTOR.pem link could name:
    chasquid signs with every such link, so only signing keys have one (a rotation's next
    and retiring keys none)."""
    step = (steps or KeySteps()).dkim_step(settings, domain)
    links = [(kind, _signing_selector(settings, domain, kind, step), True)
             for kind in kinds_for(settings)]
    state = rotation_state(settings, domain, step)
    others = [s for s in (state.published if state else []) if s != links[0][1]]
    return links + [("rsa", selector, False) for selector in others]


def _hook_signing(settings: Settings,
                  steps: KeySteps | None = None) -> dict[str, list[tuple[str, str, str]]]:
    """Per domain: (selector, algorithm, key path) for the post-data hook to sign with."""
    steps = steps or KeySteps()
    signing = {}
    for domain in settings.mail_domains:
        step = steps.dkim_step(settings, domain)
        selectors = [(kind, _signing_selector(settings, domain, kind, step))
                     for kind in kinds_for(settings)]
        signing[domain] = [(selector, ALGORITHMS[kind],
                            host_key_path(settings, domain, kind, selector))
                           for kind, selector in selectors]
    return signing


def _certificate(settings: Settings) -> bool:
    """chasquid reads certs/NAME/{fullchain,privkey}.pem as its own user: copies of the
    host's current certificate (the deploy hook copies renewals)."""
    changed = False
    (reader,) = CERTIFICATE_READERS
    copies = f"{reader.copy_to}/{settings.mail_hostname}"
    directory(copies, user=USER, group=USER, mode="700")
    for source, mode in [(TLS_CERT, "644"), (TLS_KEY, "600")]:
        copy = f"{copies}/{source.rsplit('/', 1)[1]}"
        source_sha = _sha256(source)
        # no source yet: a fresh host, whose links tls.configure makes earlier in this run
        if source_sha is None or source_sha != _sha256(copy):
            server.shell(name=f"chasquid's copy of {source}", commands=[StringCommand(
                "install -o", USER, "-g", USER, "-m", mode, source, QuoteString(copy))])
            changed = True
    return changed


def _no_own_users(path: str) -> bool:
    """No users database of chasquid's own (an older deploy wrote one): chasquid would check
    it before Dovecot's, and a password would live in two places."""
    known, state = known_state(path)
    if known and state is None:
        return False
    return files.file(name=f"No {path} (users are Dovecot's)", path=path,
                      present=False).will_change


def _link_in_place(link: str, target: str | None) -> bool:
    """Whether read_paths saw LINK pointing at TARGET (None: saw no LINK at all)."""
    known, state = known_state(link)
    if not known:
        return False
    if target is None:
        return state is None
    return state is not None and state["type"] == "l" and state["target"] == target


def _sha256(path: str) -> str | None:
    """A file's hash (through a link: the TLS links point at the certificate)."""
    known, state = known_state(path)
    if known and state is not None and state["sha256"]:
        return state["sha256"]
    return host.get_fact(Sha256File, path=path)
