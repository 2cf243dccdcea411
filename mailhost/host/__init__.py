"""The host half of a deploy: an MTA is a list of components, each install -> configure ->
activate.

A component is a module with
- ``PACKAGES``: the Debian packages it needs (install: every component's packages go into one
  apt transaction, services held back until configured);
- ``UNITS``: its systemd units, in start order;
- ``ROOTS``: the files and directories it writes under (read in one command first, so that
  what is already in place costs no round trip: facts.read_paths);
- ``configure(settings, secrets, steps=None, fleet=ALONE) -> set[str]``: writes its files; the
  units that must restart because a file they read changed (``steps``: this run's key steps,
  steps.KeySteps, read by the DKIM signers; None: the state saved on the controller;
  ``fleet``: the host's part of the inventory, settings.fleet.FleetView, read by the MTA-STS
  policy and the backup MX);
- optionally ``wanted(settings) -> bool``: whether the host needs it at all (mtas.mta_of leaves
  it out otherwise: nginx only with MTA-STS);
and activate is the same for all (``units.converge``: running and enabled, restarted when
``configure`` said so, the other MTA's units stopped first). An MTA (``Mta``) names its
components and what the rest of the deploy, the checks and the certbot hook need to know about
it: the user that signs DKIM, who reads the certificate and how each takes a renewal, how to
read the queue, the TLS advice, its ports. A component that listens declares
``ports(settings)``; one that reads the certificate, ``CERTIFICATE_READERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from mailhost.settings.fleet import ALONE


@dataclass(frozen=True)
class CertificateReader:
    """A unit that reads the host's certificate (paths.TLS_CERT, TLS_KEY), and what it needs
    after a renewal: ``reload`` or ``restart``. ``copy_to``: a directory where it reads its
    own copies (COPY_TO/HOSTNAME/fullchain.pem, privkey.pem), owned by ``copy_owner``
    (chasquid reads them as its own user)."""

    unit: str
    after_renewal: str = "reload"
    copy_to: str | None = None
    copy_owner: str = "root"


@dataclass(frozen=True)
class QueueReader:
    """How to read the mail queue: a command printing the host's time (epoch seconds) on its
    first line then one line per message, and how to turn that into each message's age."""

    command: str
    ages: Callable[[str], list[int]]
    where: str  # where a person looks (named in the check's advice)
    spool: tuple[str, ...] = ()  # the directories whose files are the queued messages
    drain: str = ""  # how a person empties the queue without losing mail


@dataclass(frozen=True)
class Mta:
    """One MTA: its components and the facts about it that the deploy and the checks read."""

    name: str
    components: tuple[ModuleType, ...]
    dkim_signer: str  # the user that owns the DKIM private keys
    certificate_readers: tuple[CertificateReader, ...]
    queue: QueueReader
    old_tls_advice: str  # what to do when TLS 1.0/1.1 is accepted
    cbc_advice: str  # what to do when submission accepts CBC ciphers
    tls_configurable: bool  # False: TLS versions/ciphers are no setting (a warning, not failure)
    ports: tuple[int, ...] = (25, 465, 587)  # SMTP; the components add theirs (open_ports)

    @property
    def packages(self) -> list[str]:
        return [p for component in self.components for p in component.PACKAGES]

    @property
    def roots(self) -> list[str]:
        return [r for component in self.components for r in component.ROOTS]

    @property
    def units(self) -> list[str]:
        return [u for component in self.components for u in component.UNITS]

    def open_ports(self, settings) -> list[int]:
        """Every port the host serves: SMTP's, and each component's ``ports(settings)`` (IMAP)."""
        extra = [p for c in self.components if hasattr(c, "ports") for p in c.ports(settings)]
        return [*self.ports, *extra]

    def configure(self, settings, secrets, steps=None, fleet=None) -> set[str]:
        """Every component's files; the units to restart (those whose files changed; a component
        may name another's unit, e.g. the resolver Postfix, kept only if this MTA runs it).

        + steps: this run's key steps (steps.KeySteps; None: the state saved on the controller)
        + fleet: the host's part of the inventory (settings.fleet.FleetView; None: the host alone)
        """
        restart: set[str] = set()
        for component in self.components:
            restart |= component.configure(settings, secrets, steps, fleet or ALONE)
        return restart & set(self.units)
