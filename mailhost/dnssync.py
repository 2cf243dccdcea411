"""The DNS half of a deploy: the records of every host, planned and applied once per zone.

Story: settings of all hosts -> desired records by zone (mailhost.desired) -> read what the
provider holds at the owned keys -> plan (mailhost.dnsplan) -> print -> apply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from mailhost.desired import MailHost, ZoneRecords, desired_by_zone
from mailhost.dkim import DkimPublicKeys, HostKeyReader, kinds_for, public_half
from mailhost.dnsplan import ZonePlan, check_safety, compute_plan
from mailhost.providers import Provider
from mailhost.settings import Settings

# (a host's name, a key path on that host) -> its base64 DER public key, or None
HostsKeyReader = Callable[[str, str], str | None]


def public_keys(settings: Settings, domain: str, read_host_key: HostKeyReader) -> DkimPublicKeys:
    """The DKIM public halves of a domain (dkim.public_half: the local key, else the host's,
    else pending)."""
    values = {kind: public_half(settings, domain, kind, read_host_key)[0]
              for kind in kinds_for(settings)}
    return DkimPublicKeys(values["rsa"], values.get("ed25519"))


def mail_hosts(hosts: dict[str, Settings], read_host_key: HostsKeyReader) -> list[MailHost]:
    """Each host (by name) with its domains' public keys."""
    return [
        MailHost(s, {d: public_keys(s, d, partial(read_host_key, name)) for d in s.mail_domains})
        for name, s in hosts.items()
    ]


def zone_records(hosts: dict[str, Settings], read_host_key: HostsKeyReader) -> list[ZoneRecords]:
    return desired_by_zone(mail_hosts(hosts, read_host_key))


@dataclass
class ZoneSync:
    """One zone: where its records live and what they should be."""

    records: ZoneRecords
    provider: Provider
    force: bool = False

    @property
    def zone(self) -> str:
        return self.records.zone

    def plan(self) -> ZonePlan:
        """Read the owned keys and compare; raises PlanError/ProviderError with one line."""
        self.provider.check_zone(self.zone)
        found = self.provider.read(self.zone, self.records.ownership.keys)
        plan = compute_plan(self.zone, self.records.desired, found, self.records.ownership)
        check_safety(plan, lambda: self.provider.count_records(self.zone), self.force)
        return plan

    def apply(self, plan: ZonePlan) -> None:
        if not plan.empty:
            self.provider.apply(plan)
