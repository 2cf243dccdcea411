"""OpenDKIM: signs the mail Postfix sends (milter on 127.0.0.1:8891) with each domain's RSA key.
A component of the Postfix MTA (see mailhost.host)."""

from __future__ import annotations

from mailhost.keys.dkim import host_key_path, record_name, signing_selector
from mailhost.keys.steps import KeySteps
from mailhost.operations.files import write_template
from mailhost.secrets import Secrets
from mailhost.settings import Settings
from mailhost.settings.fleet import ALONE, FleetView

PACKAGES = ("opendkim", "dns-root-data")
UNITS = ("opendkim",)
ROOTS = ("/etc/opendkim.conf", "/etc/opendkim")
USER = "opendkim"  # owns the DKIM private keys


def signing_keys(settings: Settings,
                 steps: KeySteps | None = None) -> dict[str, tuple[str, str, str]]:
    """Per domain: the DKIM record name, selector and host path of the key OpenDKIM signs
    with (the rotation's signing key: mailhost.keys.dkim.signing_selector, by this run's steps)."""
    steps = steps or KeySteps()
    keys = {}
    for domain in settings.mail_domains:
        selector = signing_selector(settings, domain, steps.dkim_step(settings, domain))
        keys[domain] = (record_name(selector, domain), selector,
                        host_key_path(settings, domain, "rsa", selector))
    return keys


def configure(settings: Settings, secrets: Secrets, steps: KeySteps | None = None,
              fleet: FleetView = ALONE) -> set[str]:
    """The daemon's configuration, its key and signing tables; what to restart."""
    keys = signing_keys(settings, steps)
    changed = any([
        write_template("opendkim/opendkim.conf.j2", "/etc/opendkim.conf", settings),
        write_template("opendkim/KeyTable.j2", "/etc/opendkim/KeyTable", settings, keys=keys),
        write_template("opendkim/SigningTable.j2", "/etc/opendkim/SigningTable", settings,
                       keys=keys),
        write_template("opendkim/TrustedHosts.j2", "/etc/opendkim/TrustedHosts", settings),
    ])
    return set(UNITS) if changed else set()
