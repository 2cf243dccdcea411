"""The DNS plan: existing vs desired records of the keys this tool owns, as changes.

Shared by every provider. A ZonePlan is computed from what a provider read and what
mailhost.desired computed; the provider then applies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailhost.records import RecordSet, display_value

CREATE, MODIFY, DELETE = "create", "modify", "delete"
SAFETY_MIN_ZONE = 10  # octoDNS: the threshold applies to zones of 10+ records
SAFETY_MAX_FRACTION = 0.30  # octoDNS: updates + deletes over 30% of the zone stop the plan


class PlanError(Exception):
    """The plan cannot be made or is refused; the message is one line for the user."""


@dataclass(frozen=True)
class Ownership:
    """Which (name, type) keys this tool owns, and which values at a shared key are ours.

    ``shared_txt`` are names whose TXT set is shared with other users (mail domain apexes):
    only the ``v=spf1`` value there is ours.
    """

    keys: frozenset[tuple[str, str]]
    shared_txt: frozenset[str] = frozenset()

    def ours(self, found: RecordSet) -> RecordSet | None:
        """The part of a found RecordSet that this tool owns, or None."""
        if found.key not in self.keys:
            return None
        if found.rtype == "TXT" and found.name in self.shared_txt:
            spf = [v for v in found.values if is_spf(v)]
            if len(spf) > 1:
                raise PlanError(
                    f"{found.name} has {len(spf)} SPF records (a domain may publish only one): "
                    + "; ".join(f'"{v}"' for v in spf)
                    + " -- remove all but one by hand, then run again"
                )
            return found.with_values(spf) if spf else None
        return found


def is_spf(value: str) -> bool:
    return value.lower() == "v=spf1" or value.lower().startswith("v=spf1 ")


@dataclass(frozen=True)
class Change:
    """One RecordSet change. ``old``/``new`` are our part; ``found`` is the whole set as read."""

    action: str
    name: str
    rtype: str
    old: RecordSet | None
    new: RecordSet | None
    found: RecordSet | None = None

    @property
    def removed_values(self) -> tuple[str, ...]:
        """Our values to take away (all of them when the TTL or proxy flag changes)."""
        old = self.old.values if self.old else ()
        if self.new is None:
            return old
        if self.old and (self.old.ttl != self.new.ttl or self.old.proxied != self.new.proxied):
            return old
        return tuple(v for v in old if v not in self.new.values)

    @property
    def added_values(self) -> tuple[str, ...]:
        new = self.new.values if self.new else ()
        if self.old is None:
            return new
        if self.new and (self.old.ttl != self.new.ttl or self.old.proxied != self.new.proxied):
            return new
        return tuple(v for v in new if v not in self.old.values)

    def line(self, width_name: int = 0) -> str:
        """The dnscontrol-style preview line."""
        symbol = {CREATE: "+", MODIFY: "±", DELETE: "-"}[self.action]
        head = f"{symbol} {self.action.upper():<7} {self.rtype:<5} {self.name:<{width_name}}"
        if self.action == CREATE:
            return f"{head}  {describe(self.new)}"
        if self.action == DELETE:
            return f"{head}  {describe(self.old)}"
        return f"{head}  {describe(self.old)} -> {describe(self.new)}"


def describe(rrset: RecordSet) -> str:
    values = ", ".join(display_value(rrset.rtype, v) for v in rrset.values)
    proxied = " proxied" if rrset.proxied else ""
    return f"{values}   ttl {rrset.ttl}{proxied}"


@dataclass
class ZonePlan:
    """The changes for one zone."""

    zone: str
    changes: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.changes

    def lines(self) -> list[str]:
        if self.empty:
            return [f"= {self.zone}: no DNS changes"]
        width = max(len(c.name) for c in self.changes)
        return [f"DNS changes for zone {self.zone}:"] + [
            "  " + c.line(width) for c in self.changes
        ]

    def format(self) -> str:
        return "\n".join(self.lines())

    def counts(self) -> dict[str, int]:
        return {a: sum(1 for c in self.changes if c.action == a) for a in (CREATE, MODIFY, DELETE)}


def compute_plan(
    zone: str, desired: list[RecordSet], found: list[RecordSet], ownership: Ownership
) -> ZonePlan:
    """Compare the desired RecordSets with the found ones, key by owned key."""
    found_by_key = {rr.key: rr for rr in found}
    desired_by_key = {rr.key: rr for rr in desired}
    for key in desired_by_key:
        if key not in ownership.keys:
            raise PlanError(f"internal error: desired record {key} is not in the owned keys")
    changes = []
    for key in sorted(ownership.keys | desired_by_key.keys(), key=_sort_key):
        whole = found_by_key.get(key)
        old = ownership.ours(whole) if whole else None
        new = desired_by_key.get(key)
        if old == new:
            continue
        if old is None:
            changes.append(Change(CREATE, key[0], key[1], None, new, whole))
        elif new is None:
            changes.append(Change(DELETE, key[0], key[1], old, None, whole))
        else:
            changes.append(Change(MODIFY, key[0], key[1], old, new, whole))
    return ZonePlan(zone, changes)


def _sort_key(key: tuple[str, str]):
    name, rtype = key
    order = ["A", "AAAA", "MX", "TXT", "CAA"]
    return (list(reversed(name.split("."))), order.index(rtype) if rtype in order else 99, rtype)


def check_safety(plan: ZonePlan, count_records, force: bool) -> None:
    """Refuse a plan that updates or deletes more than 30% of a zone of 10+ records.

    ``count_records()`` returns the zone's size; it is called only when the answer matters,
    so a normal run never pays for counting a large zone.
    """
    touched = sum(
        len(c.removed_values) for c in plan.changes if c.action in (MODIFY, DELETE)
    )
    # With 3 or fewer records touched, no zone of 10+ records can cross 30%.
    if force or touched <= SAFETY_MAX_FRACTION * SAFETY_MIN_ZONE:
        return
    size = count_records()
    if size >= SAFETY_MIN_ZONE and touched > SAFETY_MAX_FRACTION * size:
        raise PlanError(
            f"zone {plan.zone}: the plan updates or deletes {touched} of {size} records "
            f"(over {int(SAFETY_MAX_FRACTION * 100)}%); check it, then set "
            "dns_force = True to apply it"
        )
