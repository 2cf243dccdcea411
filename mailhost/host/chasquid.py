"""chasquid: the ``mta = "chasquid"`` mail host, with the same users, aliases, keys and
certificate as the Postfix one.

install -> configure -> activate. Debian's package listens through systemd sockets (25, 587,
465 on IPv4 and IPv6). DKIM: chasquid signs by itself from 1.14 (a ``dkim:SELECTOR.pem`` in the
domain directory); older versions (Debian 12 ships 1.11) sign in the post-data hook with dkimpy.
The hook also refuses a sender address the authenticated user does not own.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand
from pyinfra.facts.files import Sha256File
from pyinfra.operations import files, server

from mailhost.dkim import host_key_path, kinds_for, selector_for
from mailhost.facts import DebianPackageVersion
from mailhost.host import units, write_template
from mailhost.host.users import aliases, host_chasquid_users, mailbox_root, sender_owners
from mailhost.operations.secret_file import secret_file
from mailhost.secrets import Secret, Secrets
from mailhost.settings import Settings

PACKAGES = ["chasquid", "python3-dkim"]
UNITS = ["chasquid-smtp.socket", "chasquid-submission.socket",
         "chasquid-submission_tls.socket", "chasquid.service"]
NATIVE_DKIM = (1, 14)
CONFIG = "/etc/chasquid"
DELIVER = "/usr/local/lib/mailhost/chasquid-deliver"
ALGORITHMS = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}


def native_dkim() -> bool:
    """Whether the chasquid found on the host (installed, else apt's candidate) signs itself."""
    version = host.get_fact(DebianPackageVersion, package="chasquid")
    return version is not None and version >= NATIVE_DKIM


def configure(settings: Settings, secrets: Secrets) -> bool:
    """Write every configuration file; returns whether chasquid must restart."""
    mailbox_root()
    server.user(name="chasquid may deliver into the mailboxes (group vmail)", user="chasquid",
                groups=["vmail"], append=True)
    native = native_dkim()
    changed = [
        write_template("chasquid/chasquid.conf.j2", f"{CONFIG}/chasquid.conf", settings,
                       deliver=DELIVER),
        write_template("chasquid/deliver.py.j2", DELIVER, settings, mode="755"),
        write_template("chasquid/post-data.py.j2", f"{CONFIG}/hooks/post-data", settings,
                       mode="755", owners=sender_owners(settings),
                       signing={} if native else _hook_signing(settings)),
    ]
    all_aliases = aliases(settings)
    for domain in settings.mail_domains:
        domain_dir = f"{CONFIG}/domains/{domain}"
        files.directory(name=f"{domain_dir}", path=domain_dir, mode="755")
        changed.append(secret_file(
            name=f"chasquid users of {domain} (password hashes)",
            content=Secret(host_chasquid_users(settings, secrets, domain)),
            path=f"{domain_dir}/users", group="chasquid", mode="640").will_change)
        domain_aliases = [(a, t) for a, t in all_aliases.items() if a.endswith("@" + domain)]
        changed.append(write_template("chasquid/aliases.j2", f"{domain_dir}/aliases", settings,
                                      domain=domain, aliases=domain_aliases))
        for address in settings.mail_users:
            if address.endswith("@" + domain):
                _maildir(domain, address.split("@")[0])
        for kind in kinds_for(settings):
            link = f"{domain_dir}/dkim:{selector_for(settings, kind)}.pem"
            if native:
                changed.append(files.link(name=f"chasquid signs with {link}", path=link,
                                          target=host_key_path(settings, domain, kind)
                                          ).will_change)
            else:
                changed.append(files.link(name=f"No {link} (signed in the hook)", path=link,
                                          present=False).will_change)
    changed.append(_certificate(settings))
    return any(changed)


def activate(restart: bool) -> None:
    """Sockets and service running and enabled; chasquid restarted if its files changed."""
    for unit in UNITS:
        units.running(unit, restart=restart and unit == "chasquid.service")


def deactivate() -> None:
    """Stop and disable chasquid and its sockets (the host now runs Postfix): ports released."""
    for unit in reversed(UNITS):
        units.stopped(unit)


def _hook_signing(settings: Settings) -> dict[str, list[tuple[str, str, str]]]:
    """Per domain: (selector, algorithm, key path) for the post-data hook to sign with."""
    return {
        domain: [(selector_for(settings, kind), ALGORITHMS[kind],
                  host_key_path(settings, domain, kind)) for kind in kinds_for(settings)]
        for domain in settings.mail_domains
    }


def _certificate(settings: Settings) -> bool:
    """chasquid reads certs/NAME/{fullchain,privkey}.pem as its own user: copies of the
    host's current certificate (the deploy hook copies renewals)."""
    changed = False
    directory = f"{CONFIG}/certs/{settings.mail_hostname}"
    files.directory(name=directory, path=directory, user="chasquid", group="chasquid",
                    mode="700")
    for name, mode in [("fullchain.pem", "644"), ("privkey.pem", "600")]:
        source, copy = f"/etc/mailhost/tls/{name}", f"{directory}/{name}"
        source_sha = host.get_fact(Sha256File, path=source)
        # no source yet: a fresh host, whose links tls.configure makes earlier in this run
        if source_sha is None or source_sha != host.get_fact(Sha256File, path=copy):
            server.shell(name=f"chasquid's copy of {source}", commands=[StringCommand(
                "install -o chasquid -g chasquid -m", mode, source, QuoteString(copy))])
            changed = True
    return changed


def _maildir(domain: str, user: str) -> None:
    for path in [f"/var/mail/vhosts/{domain}", f"/var/mail/vhosts/{domain}/{user}",
                 *[f"/var/mail/vhosts/{domain}/{user}/{sub}" for sub in ("tmp", "new", "cur")]]:
        files.directory(name=f"Maildir {path}", path=path, user="chasquid", group="vmail",
                        mode="2770")

