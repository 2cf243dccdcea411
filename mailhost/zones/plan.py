"""The DNS plan: existing vs desired records of the keys this tool owns, as changes, and the
conflicts that stop it.

Shared by every provider. A ZonePlan is computed from what a provider read and what
mailhost.zones.desired computed; the provider then applies it. Where a found record may not be ours
(another sender's SPF terms, a foreign MX, an address that is not this host's, a CNAME where
we need a record) the plan holds a Conflict, one line, and check_conflicts refuses it before
anything is written; values of others that can live beside ours (TXT at the apex, CAA, MX in
``mx_keep``) are kept, and our part of such a shared set takes its TTL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailhost.dns.records import RecordSet, display_value

CREATE, MODIFY, DELETE = "create", "modify", "delete"
SAFETY_MIN_ZONE = 10  # octoDNS: the threshold applies to zones of 10+ records
SAFETY_MAX_FRACTION = 0.30  # octoDNS: updates + deletes over 30% of the zone stop the plan


class PlanError(Exception):
    """The plan cannot be made or is refused; the message is one line for the user.

    ``plan`` is the refused ZonePlan when there is one: its lines show every conflict.
    """

    def __init__(self, message: str, plan: ZonePlan | None = None):
        super().__init__(message)
        self.plan = plan


@dataclass(frozen=True)
class Ownership:
    """Which (name, type) keys this tool owns, and which values at a shared key are ours.

    ``shared_txt`` are names whose TXT set is shared with other users (mail domain apexes):
    only the ``v=spf1`` value there is ours. ``mx_keep`` are (name, MX value) pairs of other
    servers kept beside ours. At a CAA key only the values we want are ours: other CAs stay.
    ``mail_hosts`` and ``spf_terms`` are every host's name and SPF terms in this run: an MX or
    SPF term naming them is ours even where the new record no longer does (a parked domain).
    ``written`` are the (name, type, sorted values) this controller last wrote at each key
    (zones.sync's memory): an SPF found as written there is ours whole, every term of it (an
    ``spf_include`` since dropped); at a key whose whole set is ours (DKIM, DMARC, TLS-RPT,
    MTA-STS TXT, SRV, TLSA), a set found neither as we want it nor as written is not ours.
    """

    keys: frozenset[tuple[str, str]]
    shared_txt: frozenset[str] = frozenset()
    mx_keep: frozenset[tuple[str, str]] = frozenset()
    mail_hosts: frozenset[str] = frozenset()
    spf_terms: frozenset[str] = frozenset()
    written: frozenset[tuple[str, str, tuple[str, ...]]] = frozenset()


def is_spf(value: str) -> bool:
    return value.lower() == "v=spf1" or value.lower().startswith("v=spf1 ")


@dataclass(frozen=True)
class Conflict:
    """A found record that stops the plan. ``forceable``: dns_force = True overrides it."""

    name: str
    rtype: str
    text: str
    forceable: bool = True

    def line(self, width_name: int = 0) -> str:
        return f"! CONFLICT {self.rtype:<5} {self.name:<{width_name}}  {self.text}"


def values_only_in(this: RecordSet | None, other: RecordSet | None) -> tuple[str, ...]:
    """``this``'s values that ``other`` lacks: all of them when there is no ``other`` or the
    two differ in TTL or proxy flag (a set is written whole)."""
    values = this.values if this else ()
    if other is None or (this and (this.ttl != other.ttl or this.proxied != other.proxied)):
        return values
    return tuple(v for v in values if v not in other.values)


@dataclass(frozen=True)
class Change:
    """One RecordSet change. ``old``/``new`` are our part; ``found`` is the whole set as read.

    ``note`` says why the new part looks as it does (a shared set's TTL, a value kept).
    """

    action: str
    name: str
    rtype: str
    old: RecordSet | None
    new: RecordSet | None
    found: RecordSet | None = None
    note: str = ""

    @property
    def removed_values(self) -> tuple[str, ...]:
        """Our values to take away (all of them when the TTL or proxy flag changes)."""
        return values_only_in(self.old, self.new)

    @property
    def added_values(self) -> tuple[str, ...]:
        """Our values to write (all of them when the TTL or proxy flag changes)."""
        return values_only_in(self.new, self.old)

    def expected_values(self) -> frozenset[str]:
        """Every value at the key once the change is written: foreign ones included."""
        found = set(self.found.values) if self.found else set()
        return frozenset((found - set(self.removed_values)) | set(self.added_values))

    def line(self, width_name: int = 0) -> str:
        """The dnscontrol-style preview line."""
        symbol = {CREATE: "+", MODIFY: "±", DELETE: "-"}[self.action]
        head = f"{symbol} {self.action.upper():<7} {self.rtype:<5} {self.name:<{width_name}}"
        note = f"   ({self.note})" if self.note else ""
        if self.action == CREATE:
            return f"{head}  {describe(self.new)}{note}"
        if self.action == DELETE:
            return f"{head}  {describe(self.old)}{note}"
        return f"{head}  {describe(self.old)} -> {describe(self.new)}{note}"


def describe(rrset: RecordSet) -> str:
    values = ", ".join(display_value(rrset.rtype, v) for v in rrset.values)
    proxied = " proxied" if rrset.proxied else ""
    return f"{values}   ttl {rrset.ttl}{proxied}"


@dataclass
class ZonePlan:
    """The changes for one zone, the conflicts that stop it, and what was read to make it."""

    zone: str
    changes: list[Change] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    found: tuple[RecordSet, ...] = ()
    notices: list[str] = field(default_factory=list)  # shown, never written nor blocking
    owned: frozenset[tuple[str, str]] = frozenset()  # the keys it was made for
    ours: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)  # once applied

    @property
    def empty(self) -> bool:
        return not self.changes

    def lines(self) -> list[str]:
        notices = [f"  ! NOTICE   {n}" for n in self.notices]
        if self.empty and not self.conflicts:
            return [f"= {self.zone}: no DNS changes", *notices]
        names = [c.name for c in self.changes] + [c.name for c in self.conflicts]
        width = max(len(n) for n in names)
        return (
            [f"DNS changes for zone {self.zone}:"]
            + ["  " + c.line(width) for c in self.conflicts]
            + ["  " + c.line(width) for c in self.changes]
            + notices
        )

    def format(self) -> str:
        return "\n".join(self.lines())

    def counts(self) -> dict[str, int]:
        return {a: sum(1 for c in self.changes if c.action == a) for a in (CREATE, MODIFY, DELETE)}


def compute_plan(
    zone: str, desired: list[RecordSet], found: list[RecordSet], ownership: Ownership
) -> ZonePlan:
    """Compare the desired RecordSets with the found ones, key by owned key.

    ``found`` may hold CNAME and DNAME sets at or above owned names (providers report them):
    they are conflicts, since nothing can sit beside a CNAME or below a DNAME.
    """
    found_by_key = {rr.key: rr for rr in found}
    desired_by_key = {rr.key: rr for rr in desired}
    for key in desired_by_key:
        if key not in ownership.keys:
            raise PlanError(f"internal error: desired record {key} is not in the owned keys")
    plan = ZonePlan(zone, found=tuple(sorted(found, key=lambda r: r.key)),
                    owned=ownership.keys)
    plan.conflicts += _aliases(desired_by_key, found, ownership.mail_hosts)
    for key in sorted(ownership.keys | desired_by_key.keys(), key=_sort_key):
        whole = found_by_key.get(key)
        new = desired_by_key.get(key)
        old, new, kept, conflicts = _our_part(key, whole, new, ownership)
        plan.conflicts += conflicts
        if new is not None:
            plan.ours[key] = new.values
        note = ""
        if kept and new is not None:
            ttl = _ttl_of(whole, kept)
            if ttl != new.ttl:
                note = f"ttl {ttl} of the shared {key[1]} set, not {new.ttl}"
            new = RecordSet(new.name, new.rtype, ttl, new.values, new.proxied)
        if old == new:
            continue
        if old is None:
            action = CREATE
        elif new is None:
            action = DELETE
        else:
            action = MODIFY
        plan.changes.append(Change(action, key[0], key[1], old, new, whole, note))
    return plan


def _aliases(desired_by_key: dict, found: list[RecordSet],
             mail_hosts: frozenset[str]) -> list[Conflict]:
    """A CNAME at a name we need, or a DNAME above one: the server would ignore our record."""
    needed = {name for name, _rtype in desired_by_key}
    conflicts = []
    for rr in found:
        if rr.rtype == "CNAME" and rr.name in needed:
            other_name = " (or choose another mail_hostname)" * (rr.name in mail_hosts)
            conflicts.append(Conflict(rr.name, "CNAME", (
                f"-> {', '.join(rr.values)}: no other record can sit beside a CNAME; remove it "
                f"or move what it serves elsewhere{other_name}"), False))
        elif rr.rtype == "DNAME" and any(n.endswith("." + rr.name) for n in needed):
            below = sorted(n for n in needed if n.endswith("." + rr.name))
            conflicts.append(Conflict(rr.name, "DNAME", (
                f"-> {', '.join(rr.values)} redirects {', '.join(below)}: remove the DNAME"
            ), False))
    return conflicts


def _our_part(key, whole: RecordSet | None, new: RecordSet | None, ownership: Ownership):
    """(our old part, our new part, foreign values kept, conflicts) at one key."""
    name, rtype = key
    if whole is None:
        conflicts = []
        if rtype in ("A", "AAAA") and new is not None and name in ownership.shared_txt:
            conflicts.append(_apex_host(name, rtype))
        return None, new, (), conflicts
    if rtype == "TXT" and name in ownership.shared_txt:
        return _spf_part(whole, new, ownership)
    if rtype == "MX":
        return _mx_part(whole, new, ownership)
    if rtype == "CAA":
        return _caa_part(whole, new)
    if rtype in ("A", "AAAA"):
        return whole, new, (), _address_conflicts(whole, new, ownership)
    return _whole_part(whole, new, ownership)


def _whole_part(whole: RecordSet, new: RecordSet | None, ownership: Ownership):
    """A key whose whole set is ours: found as we want it, or as this controller last wrote
    it. Anything else was not written by this tool: replaced only with dns_force, and left
    alone where we want nothing."""
    if new is not None and set(whole.values) == set(new.values):
        return whole, new, (), []
    if (whole.name, whole.rtype, tuple(sorted(whole.values))) in ownership.written:
        return whole, new, (), []
    if new is None:
        return None, None, (), []
    dkim_key = any(v.lower().startswith("v=dkim1") for v in whole.values)  # another sender's
    hint = "choose another dkim_selector, " if dkim_key else ""
    found = ", ".join(_short(display_value(whole.rtype, v)) for v in whole.values)
    return whole, new, (), [Conflict(whole.name, whole.rtype, (
        f"{found} was not written by this tool (here before it, or edited since; a second "
        f"controller has no record of what the first wrote): {hint}delete it, or set "
        "dns_force = True to replace it"))]


def _short(text: str, limit: int = 72) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _spf_part(whole: RecordSet, new: RecordSet | None, ownership: Ownership):
    spf = [v for v in whole.values if is_spf(v)]
    kept = tuple(v for v in whole.values if not is_spf(v))
    if len(spf) > 1:
        text = (f"{len(spf)} SPF records (a domain may publish only one): "
                + "; ".join(f'"{v}"' for v in spf) + " -- remove all but one by hand")
        return None, None, kept, [Conflict(whole.name, "TXT", text, False)]
    if not spf:
        return None, new, kept, []
    old = whole.with_values(spf)
    conflicts = []
    if new is not None and (whole.name, "TXT", (spf[0],)) not in ownership.written:
        ours = {_spf_term(t) for t in new.values[0].split()[1:]} | ownership.spf_terms
        foreign = [t for t in spf[0].split()[1:]
                   if _spf_term(t) not in ours and _spf_term(t) != "all"]
        if foreign:
            includes = [t.split(":", 1)[1] for t in foreign if _spf_term(t).startswith("include:")]
            adopt = f"add {', '.join(includes)} to spf_include to keep them, or " * bool(includes)
            conflicts.append(Conflict(whole.name, "TXT", (
                f'SPF "{spf[0]}" has terms that are not ours: {" ".join(foreign)}; '
                f"{adopt}set dns_force = True to replace the record")))
    return old, new, kept, conflicts


def _spf_term(term: str) -> str:
    """An SPF term without its qualifier, lowercase: ``-all`` and ``all`` are one term."""
    return term.lstrip("+-~?").lower()


def _mx_part(whole: RecordSet, new: RecordSet | None, ownership: Ownership):
    kept = tuple(v for v in whole.values if (whole.name, v) in ownership.mx_keep)
    ours = [v for v in whole.values if v not in kept]
    our_hosts = {v.split()[1] for v in (new.values if new else ())} | ownership.mail_hosts
    conflicts = [
        Conflict(whole.name, "MX", (
            f"{v} is not one of our mail hosts: list it in mx_keep to keep it (a backup MX), "
            "or set dns_force = True to delete it"))
        for v in ours if v.split()[1] not in our_hosts
    ]
    return (whole.with_values(ours) if ours else None), new, kept, conflicts


NO_WILDCARD_ISSUER = '0 issuewild ";"'


def caa_beside(ours, found) -> list[str]:
    """Our CAA values as published beside the ``found`` ones: without ``issuewild ";"`` when
    another CA is named there (it would forbid that CA's wildcard certificates)."""
    others = [v for v in found if v not in ours and v.split()[1] in ("issue", "issuewild")]
    return [v for v in ours if not (others and v == NO_WILDCARD_ISSUER)]


def _caa_part(whole: RecordSet, new: RecordSet | None):
    """Our CAA values are added beside the zone's; other CAs are never deleted."""
    wanted = set(new.values) if new else set()
    others = [v for v in whole.values if v not in wanted]
    if new is not None:
        values = tuple(caa_beside(new.values, whole.values))
        new = RecordSet(new.name, new.rtype, new.ttl, values, new.proxied)
    ours = [v for v in whole.values if v in set(new.values if new else ())]
    return (whole.with_values(ours) if ours else None), new, tuple(others), []


def _address_conflicts(whole: RecordSet, new: RecordSet | None, ownership: Ownership):
    name, rtype = whole.key
    values = ", ".join(whole.values)
    conflicts = []
    if new is not None and name in ownership.shared_txt:
        conflicts.append(_apex_host(name, rtype))
    if whole.proxied:
        conflicts.append(Conflict(name, rtype, (
            f"{values} is proxied by Cloudflare (a website?): publishing the mail host here "
            "would turn the proxy off and expose its origin; choose another mail_hostname, "
            "or set dns_force = True")))
    elif new is None:
        conflicts.append(Conflict(name, rtype, (
            f"{values} exists but ipv6 is not set: senders would try it; set ipv6 to it, or "
            "set dns_force = True to delete it")))
    elif (set(whole.values) != set(new.values)
          and (name, rtype, tuple(sorted(whole.values))) not in ownership.written):
        # (an address this controller wrote is ours: a host's new address, or a name that
        # moved to another host of the inventory with its domain)
        conflicts.append(Conflict(name, rtype, (
            f"{values} is not this host's address (another server, or an old address?): "
            "remove it, or set dns_force = True to replace it")))
    return conflicts


def _apex_host(name: str, rtype: str) -> Conflict:
    return Conflict(name, rtype, (
        f"mail_hostname {name} is the apex of a mail domain, whose {rtype} usually serves a "
        f"website: choose a name such as mail.{name}, or set dns_force = True"))


def _ttl_of(whole: RecordSet, values) -> int:
    """The TTL the found ``values`` have (the lowest of them; the set's when not known)."""
    ttls = dict(whole.value_ttls)
    known = [ttls[v] for v in values if v in ttls]
    return min(known) if known else whole.ttl


def check_conflicts(plan: ZonePlan, force: bool) -> None:
    """Refuse a plan with conflicts (those dns_force overrides pass when it is set)."""
    blocking = [c for c in plan.conflicts if not (force and c.forceable)]
    if not blocking:
        return
    more = f" (and {len(blocking) - 1} more, see the ! lines)" if len(blocking) > 1 else ""
    first = blocking[0]
    raise PlanError(
        f"zone {plan.zone}: {first.rtype} {first.name}: {first.text}{more}; nothing was written",
        plan,
    )


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


def changed_since(seen: ZonePlan, fresh: ZonePlan) -> list[str]:
    """The keys whose records differ between two reads of a zone, as "TYPE name" texts."""

    def state(plan: ZonePlan) -> dict:
        return {
            rr.key: (rr.values, rr.ttl, rr.proxied, tuple(sorted(rr.value_ttls)))
            for rr in plan.found
        }

    before, after = state(seen), state(fresh)
    keys = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return [f"{rtype} {name}" for name, rtype in keys]
