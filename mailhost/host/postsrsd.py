"""postsrsd: rewrites the sender of forwarded mail (SRS) so that SPF passes at the receiver.
A component of the Postfix MTA (see mailhost.host)."""

from __future__ import annotations

from mailhost.keys.steps import KeySteps
from mailhost.operations.files import write_template
from mailhost.secrets import Secrets
from mailhost.settings import Settings
from mailhost.settings.fleet import ALONE, FleetView

PACKAGES = ("postsrsd",)
UNITS = ("postsrsd",)
ROOTS = ("/etc/default/postsrsd",)


def wanted(settings: Settings) -> bool:
    """A host that is only a backup MX forwards nothing: no SRS (main.cf has no canonical maps
    then)."""
    return bool(settings.mail_domains)


def configure(settings: Settings, secrets: Secrets, steps: KeySteps | None = None,
              fleet: FleetView = ALONE) -> set[str]:
    """Its settings (the domains, the ports Postfix asks); what to restart."""
    changed = write_template("postfix/postsrsd.j2", "/etc/default/postsrsd", settings)
    return set(UNITS) if changed else set()
