"""One pyinfra run: every host's settings validated once, and which host applies which zone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from pyinfra import logger
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.inventory import Inventory

from mailhost.keys.dane import TLSA_PENDING
from mailhost.keys.dkim import local_state_path
from mailhost.keys.steps import KeySteps
from mailhost.secrets import Secrets, load_secrets
from mailhost.settings import Settings, SettingsError, load_settings
from mailhost.settings.fleet import FleetView, check_fleet, fleet_view
from mailhost.zones.plan import PlanError, ZonePlan
from mailhost.zones.providers import ProviderError, make_provider
from mailhost.zones.sync import HostsKeyReader, ZoneSync, records_by_zone, tlsa_records

T = TypeVar("T")


@dataclass
class MailRun:
    """The validated settings and secrets of every host of the inventory, by host name, in
    inventory order; what the run has computed so far: the zones' previews, the key steps."""

    settings: dict[str, Settings]
    secrets: dict[str, Secrets]
    # each host's part of the inventory as one mail system (its domains' MX, what it holds)
    fleet: dict[str, FleetView] = field(default_factory=dict)
    # the hosts this run deploys (pyinfra's --limit, less those it could not reach); None: all.
    # A zone is applied by its first serving host among them; the others' records still count
    # (from their settings), and what only they can tell (their TLSA, a DKIM key the controller
    # does not have) is left as it is
    in_run: frozenset[str] | None = None
    previews: dict[str, ZonePlan] = field(default_factory=dict)
    steps: KeySteps = field(default_factory=KeySteps)

    @classmethod
    def load(cls, inventory: Inventory) -> MailRun:
        loaded = per_host(inventory, lambda data: _with_secrets(load_settings(data)))
        settings = {name: pair[0] for name, pair in loaded.items()}
        secrets = {name: pair[1] for name, pair in loaded.items()}
        refuse_shared_identity(settings)
        refuse_mta_sts_on_shared_domains(settings)
        try:
            check_fleet(settings)
        except SettingsError as error:
            raise PyinfraError(str(error)) from None
        refuse_a_move_without_its_key(settings)
        return cls(settings, secrets, {name: fleet_view(settings, name) for name in settings})

    def zones_applied_by(self, host_name: str) -> list[str]:
        """The zones this host applies: those whose first serving host (inventory order) in
        this run it is."""
        claimed: dict[str, str] = {}
        for name, settings in self.settings.items():
            if self.in_run is None or name in self.in_run:
                for zone in settings.zones:
                    claimed.setdefault(zone, name)
        return [zone for zone, name in claimed.items() if name == host_name]

    def zone_sync(self, zone: str, read_host_key: HostsKeyReader) -> ZoneSync:
        records = {r.zone: r for r in records_by_zone(self.settings, self._reader(read_host_key),
                                                      self.steps, self.in_run)}
        said = [line for line in (self.counted_hosts(zone), self.moving_into(zone)) if line]
        if said:
            records[zone] = replace(records[zone], notices=(*records[zone].notices, *said))
        return self._sync(zone, records[zone])

    def moving_into(self, zone: str) -> str:
        """When a domain of ZONE moves between hosts (move_from): the line saying so ('' else);
        its changed records are expected (ZoneSync.moving)."""
        moves = [f"{domain} from {old} to {name}" for name, s in self.settings.items()
                 for domain, old in s.move_from.items()
                 if domain == zone or domain.endswith(f".{zone}")]
        return (f"moving: {', '.join(moves)} (its records change with it; the limit on the "
                "share of the zone one run changes does not apply)") if moves else ""

    def counted_hosts(self, zone: str) -> str:
        """When some hosts serving ZONE are not in this run: the line saying whose records the
        plan counts ('' when every host is in the run)."""
        serving = [n for n, s in self.settings.items() if zone in s.zones]
        away = [n for n in serving if self.in_run is not None and n not in self.in_run]
        if not away:
            return ""
        here = [n for n in serving if n not in away]
        return (f"hosts counted: {', '.join(here)} (in this run), {', '.join(away)} (not in this "
                "run: their records as their settings say; their TLSA, and a DKIM key this "
                "controller does not hold, left as they are)")

    def _reader(self, read_host_key: HostsKeyReader) -> HostsKeyReader:
        """Keys are read only from the hosts in this run (None from the others: not known)."""
        if self.in_run is None:
            return read_host_key
        in_run = self.in_run
        return lambda name, path: read_host_key(name, path) if name in in_run else None

    def tlsa_sync(self, zone: str, read_host_key: HostsKeyReader,
                  pending: bool = False) -> ZoneSync | None:
        """The zone's TLSA records alone (zones.sync.tlsa_records), through its provider."""
        records = tlsa_records(self.settings, self._reader(read_host_key), zone, pending,
                               self.steps, self.in_run)
        return None if records is None else self._sync(zone, records)

    def memory(self, zone: str) -> Path:
        """Where this controller keeps what it wrote in the zone (zones.sync.save_written):
        beside the keys, in the secrets_dir of the zone's first serving host."""
        return Path(self.settings[self._first(zone)].secrets_dir) / "dns" / zone

    def _first(self, zone: str) -> str:
        """The zone's first serving host (inventory order): its provider and settings apply."""
        return next(n for n, s in self.settings.items() if zone in s.zones)

    def _sync(self, zone: str, records) -> ZoneSync:
        first = self._first(zone)
        provider = make_provider(self.settings[first], self.secrets[first])
        return ZoneSync(records, provider, force=self.settings[first].dns_force,
                        memory=self.memory(zone), moving=bool(self.moving_into(zone)))

    def tlsa_preview(self, zone: str, read_host_key: HostsKeyReader) -> ZonePlan | None:
        """When a host's certificate key does not exist yet (a first deploy), or a key
        rollover switches keys in this run: the plan of the TLSA written after certbot, printed
        (a new key's value shown as dane.TLSA_PENDING); else None (the zone's own operation has
        the TLSA)."""
        sync = self.tlsa_sync(zone, read_host_key, pending=True)
        if sync is None or not (self.steps.switching_now() or
                                any(TLSA_PENDING in r.values for r in sync.records.desired)):
            return None
        try:
            plan = sync.plan()
        except (PlanError, ProviderError) as error:
            raise PyinfraError(f"DNS zone {zone}: {error}") from None
        for line in plan.lines():
            logger.info(line)
        return None if plan.empty else plan  # empty: an unsigned zone (its notice says so)

    def preview(self, zone: str, read_host_key: HostsKeyReader) -> ZonePlan:
        """Plan a zone while operations are prepared and print it (this is what --dry shows)."""
        if zone not in self.previews:
            try:
                self.previews[zone] = self.zone_sync(zone, read_host_key).plan()
            except (PlanError, ProviderError) as error:
                if getattr(error, "plan", None) is not None:
                    for line in error.plan.lines():
                        logger.warning(line)
                raise PyinfraError(f"DNS zone {zone}: {error}") from None
            for line in self.previews[zone].lines():
                logger.info(line)
        return self.previews[zone]


def per_host(inventory: Inventory, load: Callable[[dict], T]) -> dict[str, T]:
    """``load`` of every host's data, by host name, in inventory order: the one loop over the
    inventory's hosts (the run, the command lines); a wrong value stops it with one line
    naming the host."""
    loaded = {}
    for host in inventory:
        try:
            loaded[host.name] = load(host.data.dict())
        except SettingsError as error:
            raise PyinfraError(f"{host.name}: {error}") from None
    return loaded


def _with_secrets(settings: Settings) -> tuple[Settings, Secrets]:
    return settings, load_secrets(settings)


def refuse_shared_identity(settings: dict[str, Settings]):
    """Two hosts of one inventory with the same mail_hostname or address would publish one
    name for two machines (mail and certificates split between them): refused in one line."""
    seen: dict[tuple[str, str], str] = {}
    for name, host_settings in settings.items():
        for key in ("mail_hostname", "ipv4", "ipv6"):
            value = getattr(host_settings, key)
            if value is None:
                continue
            other = seen.setdefault((key, str(value)), name)
            if other != name:
                raise PyinfraError(f"{name}: settings: {key} = {str(value)!r}: expected one of "
                                   f"its own; host {other} of the inventory has it too")


def refuse_mta_sts_on_shared_domains(settings: dict[str, Settings]):
    """MTA-STS for a domain served by several hosts is not supported yet: each host would serve
    a policy naming itself only, and a sender enforcing the first host's policy would refuse
    the others (a backup MX). Refused in one line until the policy names them all."""
    serving: dict[str, list[str]] = {}
    for name, host_settings in settings.items():
        for domain in host_settings.mail_domains:
            serving.setdefault(domain, []).append(name)
    for domain, names in serving.items():
        on = [n for n in names if settings[n].mta_sts_mode in ("testing", "enforce")]
        if len(names) > 1 and on:
            raise PyinfraError(
                f"{on[0]}: settings: mta_sts_mode = {settings[on[0]].mta_sts_mode!r}: expected "
                f"'off' or 'none' while {domain} is served by several hosts "
                f"({', '.join(names)}): MTA-STS with several MX hosts is not supported yet")


def refuse_a_move_without_its_key(settings: dict[str, Settings]):
    """A domain moving to a host whose secrets_dir lacks the DKIM key the old host's has would
    get a new key (its DKIM record changing while mail signed with the old one is in flight):
    refused in one line, naming the directory to copy (on this controller; nothing is shown)."""
    for name, host_settings in settings.items():
        for domain, old in host_settings.move_from.items():
            mine = local_state_path(host_settings, domain).parent
            theirs = local_state_path(settings[old], domain).parent
            if theirs.is_dir() and not mine.is_dir():
                raise PyinfraError(
                    f"{name}: settings: move_from = {{{domain!r}: {old!r}}}: expected "
                    f"{domain}'s DKIM key in this host's secrets_dir ({mine}): copy {theirs} "
                    "there, or give both hosts one secrets_dir")


def current_run(inventory: Inventory) -> MailRun:
    """The MailRun of this pyinfra run, loaded on first use (validation happens once, up
    front) and kept on pyinfra's state, the one object of the run that every host's deploy.py
    shares."""
    state = inventory.state
    if getattr(state, "mailhost_run", None) is None:
        run = MailRun.load(inventory)
        # pyinfra has connected to the hosts of --limit when it loads deploy.py: those it
        # reached are its active hosts
        active = getattr(state, "active_hosts", None)
        run.in_run = None if active is None else frozenset(h.name for h in active)
        state.mailhost_run = run
    return state.mailhost_run
