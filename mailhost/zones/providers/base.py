"""What every DNS provider does: read the owned records of a zone, apply a plan.

The diff logic lives in mailhost.zones.plan and is shared; a provider only talks to its API.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable

from mailhost.dns.records import RecordSet


class ProviderError(Exception):
    """A provider call failed; the message is one line for the user and holds no secret."""


class Provider(ABC):
    """Reads and writes one kind of DNS service.

    ``calls`` counts the calls made to the service, by kind ("read", "write"), so the benchmark
    and the tests can assert that a no-change run writes nothing.
    """

    kind: str = "?"

    def __init__(self):
        self.calls: Counter[str] = Counter()

    @abstractmethod
    def check_zone(self, zone: str) -> None:
        """Raise ProviderError with a clear line when the provider does not serve ``zone``."""

    @abstractmethod
    def read(self, zone: str, owned: Iterable[tuple[str, str]]) -> list[RecordSet]:
        """Return the whole RecordSets found at the owned (name, type) keys of ``zone``.

        Every value at an owned key is returned, ours or not: the plan decides which are ours.
        Keys with no records are simply absent.
        """

    @abstractmethod
    def apply(self, plan) -> None:
        """Write a ZonePlan (mailhost.zones.plan.ZonePlan). Raise ProviderError on failure."""

    def unsupported_types(self) -> frozenset[str]:
        """Record types this provider's API cannot hold: the plan leaves them out and says so."""
        return frozenset()

    def dnssec_signed(self, zone: str) -> bool:
        """Whether the zone is DNSSEC-signed (DANE's TLSA is published only then); a provider
        that cannot tell says no."""
        return False

    def dnssec_advice(self, zone: str) -> str:
        """What the plan's notice says after dnssec_signed said no: why, and what to do."""
        return "DANE needs a signed zone"

    def count_records(self, zone: str) -> int:
        """Number of records (RRs) in the zone; only called when the safety check needs it."""
        raise NotImplementedError
