"""The DNS half of a deploy: the records of every host, planned and applied once per zone.

Story: settings of all hosts -> desired records by zone (mailhost.zones.desired) -> read what the
provider holds at the owned keys -> plan (mailhost.zones.plan) -> print -> apply.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from mailhost.dns import mta_sts
from mailhost.dns.records import RecordSet, zone_of
from mailhost.keys.dane import (
    TLSA_PENDING,
    Rollover,
    certificate_key_path,
    tlsa_name,
    tlsa_of_public_key,
    tlsa_values,
)
from mailhost.keys.dkim import (
    DkimPublicKeys,
    HostKeyReader,
    kinds_for,
    public_half,
    rotation_state,
    save_local_key,
)
from mailhost.keys.rotation import Step
from mailhost.keys.steps import KeySteps
from mailhost.paths import NEXT_KEY
from mailhost.settings import Settings
from mailhost.zones.desired import MailHost, ZoneRecords, desired_by_zone
from mailhost.zones.notices import left_domain_notices, mta_sts_left_notices, raised_policy_notices
from mailhost.zones.plan import (
    Ownership,
    PlanError,
    ZonePlan,
    changed_since,
    check_conflicts,
    check_safety,
    compute_plan,
)
from mailhost.zones.providers import Provider, ProviderError

# (a host's name, a key path on that host) -> its base64 DER public key, or None
HostsKeyReader = Callable[[str, str], str | None]


def public_keys(settings: Settings, domain: str, read_host_key: HostKeyReader,
                step: Step | None = None) -> DkimPublicKeys:
    """The DKIM public halves of a domain (dkim.public_half: the local key, else the host's,
    else pending): with a rotation, of every published RSA selector, and the selectors this
    run's ``step`` removes (None: no step computed in this run)."""
    values = {kind: public_half(settings, domain, kind, read_host_key)[0]
              for kind in kinds_for(settings)}
    state = rotation_state(settings, domain, step)
    if state is None:
        return DkimPublicKeys(values["rsa"], values.get("ed25519"))
    published = tuple((selector, public_half(settings, domain, "rsa", read_host_key,
                                             selector)[0]) for selector in state.published)
    return DkimPublicKeys(dict(published)[state.signing], values.get("ed25519"), published,
                          step.remove if step is not None else ())


def host_tlsa(name: str, settings: Settings, read_host_key: HostsKeyReader,
              after_switch: bool = False, step: Rollover | None = None) -> tuple[str, ...]:
    """The TLSA values of a host with ``dane = "auto"``: its certificate key's, and during a
    key rollover (this run's ``step``) the next key's (dane.tlsa_values)."""
    if settings.dane != "auto":
        return ()
    current = tlsa_of_public_key(read_host_key(name, certificate_key_path(settings.mail_hostname)))
    upcoming = tlsa_of_public_key(read_host_key(name, NEXT_KEY))
    return tlsa_values(current, upcoming, step, after_switch)


def mail_hosts(hosts: dict[str, Settings], read_host_key: HostsKeyReader,
               after_switch: bool = False, steps: KeySteps | None = None,
               in_run: frozenset[str] | None = None) -> list[MailHost]:
    """Each host (by name) with its domains' public keys and its TLSA values.

    + steps: this run's key steps (None: none computed: the state saved on the controller)
    + in_run: the hosts this run deploys (None: all); the others' unknown keys are left alone"""
    steps = steps or KeySteps()
    return [
        MailHost(s, {d: public_keys(s, d, partial(read_host_key, name), steps.dkim_step(s, d))
                     for d in s.mail_domains},
                 host_tlsa(name, s, read_host_key, after_switch, steps.tls_step(s)),
                 in_run=in_run is None or name in in_run)
        for name, s in hosts.items()
    ]


def tlsa_records(hosts: dict[str, Settings], read_host_key: HostsKeyReader, zone: str,
                 pending: bool = False, steps: KeySteps | None = None,
                 in_run: frozenset[str] | None = None) -> ZoneRecords | None:
    """The zone's TLSA records alone (owned: only their keys), for the DNS operation after the
    certificate; with ``pending`` (the plan shown before certbot runs), hosts whose certificate
    key does not exist yet get dane.TLSA_PENDING, and a key rollover's switch is taken as done.
    None: no host wants a TLSA here. A host not in this run (``in_run``) has its TLSA left as
    it is (its certificate's key is known only to it)."""
    records, keys = [], set()
    for host in mail_hosts(hosts, read_host_key, after_switch=pending, steps=steps,
                           in_run=in_run):
        name = tlsa_name(host.settings.mail_hostname)
        if host.settings.dane != "auto" or zone_of(name, [zone]) is None or not host.in_run:
            continue
        keys.add((name, "TLSA"))
        values = host.tlsa or ((TLSA_PENDING,) if pending else ())
        if values:
            records.append(RecordSet(name, "TLSA", host.settings.dns_ttl, values))
    if not keys:
        return None
    return ZoneRecords(zone, records, Ownership(frozenset(keys)))


def records_by_zone(hosts: dict[str, Settings], read_host_key: HostsKeyReader,
                    steps: KeySteps | None = None,
                    in_run: frozenset[str] | None = None) -> list[ZoneRecords]:
    """The desired records by zone, each with the notices of its domains that left the
    settings and of a DMARC policy raised over unaligned mail (scripts/reports' summary)."""
    notices = left_domain_notices(hosts)
    zones = {z for s in hosts.values() for z in s.zones}
    for settings in hosts.values():
        for domain, line in raised_policy_notices(settings).items():
            notices.setdefault(zone_of(domain, zones), []).append(line)
    off = mta_sts_off_domains(hosts)
    return [replace(zone, notices=tuple(notices.get(zone.zone, ())),
                    mta_sts_off=tuple(off.get(zone.zone, {}).items()))
            for zone in desired_by_zone(mail_hosts(hosts, read_host_key, steps=steps,
                                                   in_run=in_run))]


def mta_sts_off_domains(hosts: dict[str, Settings]) -> dict[str, dict[str, tuple[str, ...]]]:
    """By zone: each mail domain whose (first) host has mta_sts_mode "off", with that host's
    addresses (where its policy host pointed while it served one)."""
    zones = {z for s in hosts.values() for z in s.zones}
    found: dict[str, dict[str, tuple[str, ...]]] = {}
    seen: set[str] = set()
    for settings in hosts.values():
        for domain in settings.mail_domains:
            zone = zone_of(domain, zones)
            if domain in seen or zone is None:
                continue
            seen.add(domain)
            if settings.mta_sts_mode == "off":
                addresses = tuple(str(a) for a in (settings.ipv4, settings.ipv6) if a)
                found.setdefault(zone, {})[domain] = addresses
    return found


@dataclass
class ZoneSync:
    """One zone: where its records live and what they should be.

    + memory: a directory on the controller where the values written in this zone are kept
      (written_records); None: no memory (every record found unlike ours is another's)
    + moving: a domain of the zone moves between hosts of the inventory (move_from): its many
      changed records are expected, so the share of the zone changed does not stop the plan
      (conflicts still do)
    """

    records: ZoneRecords
    provider: Provider
    force: bool = False
    memory: Path | None = None
    moving: bool = False

    @property
    def zone(self) -> str:
        return self.records.zone

    def plan(self) -> ZonePlan:
        """Read the owned keys and compare; raises PlanError/ProviderError with one line."""
        self.provider.check_zone(self.zone)
        owned = self.records.ownership.keys
        watched = {k for domain, _ in self.records.mta_sts_off for k in mta_sts.record_keys(domain)}
        read = self.provider.read(self.zone, owned | watched if watched else owned)
        # the MTA-STS records left behind are read at once, looked at, and kept out of the plan
        # (what the provider reads beside an owned key, a CNAME there, stays in)
        looked_at = {name for name, _ in watched} - {name for name, _ in owned}
        found = [r for r in read if r.name not in looked_at]
        desired, notices = self.records.desired, list(self.records.notices)
        notices += mta_sts_left_notices(self.records.mta_sts_off, read)
        tlsa = [r for r in desired if r.rtype == "TLSA"]
        if tlsa and not self.provider.dnssec_signed(self.zone):
            desired = [r for r in desired if r.rtype != "TLSA"]
            notices += [f"no TLSA for {r.name}: zone {self.zone} is not DNSSEC-signed "
                        f"({self.provider.kind}); {self.provider.dnssec_advice(self.zone)}"
                        for r in tlsa]
        cannot = self.provider.unsupported_types()
        dropped = [r for r in desired if r.rtype in cannot]
        if dropped:
            desired = [r for r in desired if r.rtype not in cannot]
            notices.append(
                f"{self.provider.kind} cannot hold {', '.join(sorted({r.rtype for r in dropped}))}"
                f": not written: {', '.join(f'{r.rtype} {r.name}' for r in dropped)} (add them "
                "by hand at the provider, or use a provider that holds them)")
        ownership = replace(self.records.ownership, written=frozenset(
            (name, rtype, tuple(sorted(values)))
            for (name, rtype), values in written_records(self.memory).items()))
        if cannot:
            ownership = replace(ownership, keys=frozenset(
                k for k in ownership.keys if k[1] not in cannot))
        plan = compute_plan(self.zone, desired, found, ownership)
        plan.notices = notices
        check_conflicts(plan, self.force)
        check_safety(plan, lambda: self.provider.count_records(self.zone),
                     self.force or self.moving)
        return plan

    def apply(self, plan: ZonePlan, seen: ZonePlan | None = None) -> None:
        """Write ``plan``, then read back what was written.

        + seen: the plan the user was shown (the preview); when the zone read for ``plan``
          differs from the one read for ``seen``, nothing is written.
        """
        if seen is not None:
            changed = changed_since(seen, plan)
            if changed:
                raise PlanError(
                    f"zone {self.zone} changed since the plan you saw: {', '.join(changed)}; "
                    "nothing was written: check the new plan (--dry) and run again"
                )
        if not plan.empty:
            self.provider.apply(plan)
            self.verify(plan)
        save_written(self.memory, plan)

    def verify(self, plan: ZonePlan) -> None:
        """Fail, naming the record, when the server did not keep what was written."""
        keys = {(c.name, c.rtype) for c in plan.changes}
        after = {rr.key: rr for rr in self.provider.read(self.zone, keys)}
        for change in plan.changes:
            key = (change.name, change.rtype)
            have = frozenset(after[key].values) if key in after else frozenset()
            want = change.expected_values()
            if have != want:
                shown = ", ".join(sorted(have)) or "nothing"
                raise ProviderError(
                    f"zone {self.zone}: the server did not keep {change.rtype} {change.name} "
                    f"as written: it holds {shown}, expected {', '.join(sorted(want)) or 'nothing'}"
                )


# --- what this controller wrote in a zone: our values at each owned key ---

MEMORY = "written.json"
SPF_MEMORY = "spf.json"  # before written.json: the SPF values alone, {name: value}


def written_records(memory: Path | None) -> dict[tuple[str, str], tuple[str, ...]]:
    """Our values at each key of the zone as this controller last left them ({} if none)."""
    if memory is None:
        return {}
    try:
        if (memory / MEMORY).exists():
            data = json.loads((memory / MEMORY).read_text())
            return {tuple(k.split(" ", 1)): tuple(map(str, v)) for k, v in data.items()
                    if " " in k and isinstance(v, list)}
        if (memory / SPF_MEMORY).exists():
            data = json.loads((memory / SPF_MEMORY).read_text())
            return {(str(k), "TXT"): (str(v),) for k, v in data.items()}
    except (ValueError, AttributeError):
        pass  # unreadable: no memory, the plan asks as it would on a new controller
    return {}


def save_written(memory: Path | None, plan: ZonePlan) -> None:
    """Keep our values at the plan's keys once it is applied, or found with nothing to change
    (keys no longer ours go; keys another sync of the zone owns, such as the TLSA after
    certbot, stay)."""
    if memory is None:
        return
    before = written_records(memory)
    after = {k: v for k, v in before.items() if k not in plan.owned}
    after.update({k: tuple(v) for k, v in plan.ours.items() if k in plan.owned})
    if after != before or not (memory / MEMORY).exists():
        data = {f"{name} {rtype}": list(values) for (name, rtype), values in sorted(after.items())}
        save_local_key(memory / MEMORY, (json.dumps(data, indent=1) + "\n").encode())
        (memory / SPF_MEMORY).unlink(missing_ok=True)
