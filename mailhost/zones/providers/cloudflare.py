"""Cloudflare DNS through the official ``cloudflare`` SDK (5.9).

Reads are one name-filtered list per owned name, whatever the size of the zone; the zone is
counted (one 5-record page) only when the safety threshold could apply. A plan is written with
one ``dns.records.batch`` call (all or nothing) per 200 changes, right after a re-read that
makes sure nothing we touch changed since the plan was read. The re-read and the batch are two
calls, not one transaction: a change made between them is not prevented, it is found by the
read-back after the write (mailhost.zones.sync.ZoneSync.verify) and reported.

DNSSEC (for DANE's TLSA) is Cloudflare's own zone status (``dns.dnssec.get``): signed only when
"active", which Cloudflare reports once it signs the zone and sees the DS at the registrar.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType

import cloudflare
from cloudflare import Cloudflare

from mailhost.dns.records import RecordSet, normalize_name, quote_txt, unquote_txt
from mailhost.zones.providers.base import Provider, ProviderError

LEGACY_AUTH_VARIABLES = ("CLOUDFLARE_EMAIL", "CLOUDFLARE_API_KEY")
PROXIABLE = ("A", "AAAA", "CNAME")
NEVER_PROXIED = ("A", "AAAA")  # the mail host's addresses: SMTP cannot go through the proxy
# Cloudflare documents at most 200 changes per dns_records/batch call on the Free plan (3,500
# on paid plans); a bigger plan is written in several batches, each all or nothing.
BATCH_LIMIT = 200
# Cloudflare's DNSSEC status -> what to do for DANE (only "active" is signed)
DNSSEC_ADVICE = MappingProxyType({
    "disabled": "turn DNSSEC on in Cloudflare (DNS > Settings > DNSSEC), add the DS record it "
                'shows at your registrar, and wait for the status "active"',
    "pending": "add the DS record Cloudflare shows (DNS > Settings > DNSSEC) at your registrar "
               'and wait for the status "active"',
})
DNSSEC_OTHER_ADVICE = ('DANE needs the status "active": DNSSEC on in Cloudflare and its DS '
                       "record at your registrar")
# GET /zones/{id}/dnssec accepts "DNS Read" or "DNS Write" (Cloudflare's API reference)
DNSSEC_PERMISSION = '"DNS Read" (Zone > DNS > Read)'


@dataclass(frozen=True)
class FoundRecord:
    """One Cloudflare record as read: its id and its value in records.py form."""

    id: str
    name: str
    rtype: str
    value: str
    ttl: int
    proxied: bool


class CloudflareProvider(Provider):
    """DNS records of Cloudflare zones.

    ``api_token`` comes from the caller (env CLOUDFLARE_API_TOKEN); ``base_url`` points the SDK
    at another server (the lab emulator). ``page_size`` is the per_page of name lists.
    """

    kind = "cloudflare"

    def __init__(
        self,
        api_token: str,
        base_url: str | None = None,
        max_retries: int = 2,
        timeout: float = 30.0,
        page_size: int = 500,
    ):
        super().__init__()
        # The SDK would send CLOUDFLARE_EMAIL/CLOUDFLARE_API_KEY instead of the token, silently.
        legacy = [name for name in LEGACY_AUTH_VARIABLES if os.environ.get(name)]
        if legacy:
            raise ProviderError(
                f"{' and '.join(legacy)} set in the environment: the Cloudflare SDK would use "
                "them instead of CLOUDFLARE_API_TOKEN; unset them"
            )
        if not api_token:
            raise ProviderError("no Cloudflare API token: set CLOUDFLARE_API_TOKEN")
        self._token = api_token
        self.page_size = page_size
        self.client = Cloudflare(
            api_token=api_token, base_url=base_url, max_retries=max_retries, timeout=timeout
        )
        self._zone_ids: dict[str, str] = {}
        self._found: dict[str, dict[tuple[str, str], list[FoundRecord]]] = {}
        self._dnssec_advice: dict[str, str] = {}  # zone -> why it counts as unsigned

    # ----- the Provider interface -----

    def check_zone(self, zone: str) -> None:
        self._zone_id(zone)

    def read(self, zone: str, owned: Iterable[tuple[str, str]]) -> list[RecordSet]:
        keys = {(normalize_name(name), rtype.upper()) for name, rtype in owned}
        found = self._fetch(zone, keys)
        self._found[zone] = found
        return [_record_set(records) for _key, records in sorted(found.items())]

    def apply(self, plan) -> None:
        if plan.empty:
            return
        zone = plan.zone
        zone_id = self._zone_id(zone)
        keys = {(c.name, c.rtype) for c in plan.changes}
        current = self._fetch(zone, keys)
        self._check_unchanged(plan, current)
        deletes, patches, posts = [], [], []
        for change in plan.changes:
            change_deletes, change_patches, change_posts = _operations(
                change, current.get((change.name, change.rtype), [])
            )
            deletes += change_deletes
            patches += change_patches
            posts += change_posts
        for part in _batches(deletes, patches, posts):
            self._call(
                "write",
                f"writing {len(plan.changes)} changes to zone {zone}",
                lambda part=part: self.client.dns.records.batch(zone_id=zone_id, **part),
            )
        self._found.pop(zone, None)

    def dnssec_signed(self, zone: str) -> bool:
        """Whether Cloudflare's DNSSEC status of ``zone`` is "active" (it signs the zone and
        sees the DS at the registrar). "pending", "disabled" and the rest count as unsigned, and
        so does a token refused this endpoint (HTTP 401/403): the deploy goes on without a
        TLSA; ``dnssec_advice`` says why and what to do."""
        zone_id = self._zone_id(zone)

        def get_status():
            try:
                return self.client.dns.dnssec.get(zone_id=zone_id)
            except (cloudflare.AuthenticationError, cloudflare.PermissionDeniedError) as error:
                return error  # not fatal: any other error is, through _call

        dnssec = self._call("read", f"reading the DNSSEC status of zone {zone}", get_status)
        if isinstance(dnssec, cloudflare.APIStatusError):
            self._dnssec_advice[zone] = (
                f"the API token may not read its DNSSEC status ({_describe(dnssec)}): give the "
                f"token {DNSSEC_PERMISSION} on the zone; it counts as unsigned until then")
            return False
        status = (dnssec.status if dnssec is not None else None) or "disabled"
        if status == "active":
            self._dnssec_advice.pop(zone, None)
            return True
        self._dnssec_advice[zone] = (f'Cloudflare\'s DNSSEC status is "{status}": '
                                     + DNSSEC_ADVICE.get(status, DNSSEC_OTHER_ADVICE))
        return False

    def dnssec_advice(self, zone: str) -> str:
        """Why ``zone`` counted as unsigned at the last dnssec_signed, and what to do."""
        advice = self._dnssec_advice.get(zone) or super().dnssec_advice(zone)
        return advice.replace(self._token, "[token]")

    def count_records(self, zone: str) -> int:
        """The zone's size from total_count of the smallest page the API allows (5 records)."""
        zone_id = self._zone_id(zone)
        page = self._call(
            "read",
            f"counting the records of zone {zone}",
            lambda: self.client.dns.records.list(zone_id=zone_id, page=1, per_page=5),
        )
        total = _total_count(page)
        if total is None:
            raise self._error(f"Cloudflare did not return a record count for zone {zone}")
        return total

    # ----- reading -----

    def _zone_id(self, zone: str) -> str:
        if zone not in self._zone_ids:
            page = self._call(
                "read",
                f"looking up zone {zone}",
                lambda: self.client.zones.list(name=zone, page=1, per_page=5),
            )
            matches = [z for z in page.result if normalize_name(z.name) == normalize_name(zone)]
            if not matches:
                raise self._error(
                    f"zone {zone} is not in this Cloudflare account, or the API token "
                    "cannot see it (it needs Zone:Read and DNS:Edit on the zone)"
                )
            self._zone_ids[zone] = matches[0].id
        return self._zone_ids[zone]

    def _fetch(self, zone: str, keys: set[tuple[str, str]]):
        """The records at ``keys`` (and any CNAME at their names), grouped by key.

        One name-filtered list per owned name: the cost follows what we own, never the size
        of the zone. Cloudflare lists a wildcard under its own name ``*.zone``, so nothing
        here is synthesized.
        """
        if not keys:
            return {}
        zone_id = self._zone_id(zone)
        names = sorted({name for name, _rtype in keys})
        wanted = set(keys) | {(name, "CNAME") for name in names}
        grouped: dict[tuple[str, str], list[FoundRecord]] = {}
        for name in names:
            for record in self._list_name(zone, zone_id, name):
                if (record.name, record.rtype) in wanted:
                    grouped.setdefault((record.name, record.rtype), []).append(record)
        return grouped

    def _list_page(self, zone: str, zone_id: str, page_number: int, name: str | None):
        """One page of the zone's records (all, or those called ``name``); + total_pages."""
        query = {"zone_id": zone_id, "page": page_number, "per_page": self.page_size}
        if name is None:
            what = f"listing the records of zone {zone}"
        else:
            query["name"] = {"exact": name}
            what = f"listing the records of {name}"
        page = self._call("read", what, lambda: self.client.dns.records.list(**query))
        total_pages = getattr(page.result_info, "total_pages", None)
        if total_pages is None:  # derive it from total_count when the API leaves it out
            total_pages = -(-(_total_count(page) or 0) // self.page_size)
        total_pages = max(total_pages, 1)
        return [_found_record(r) for r in page.result], total_pages

    def _list_name(self, zone: str, zone_id: str, name: str) -> list[FoundRecord]:
        records, total_pages = self._list_page(zone, zone_id, 1, name)
        for page_number in range(2, total_pages + 1):
            records += self._list_page(zone, zone_id, page_number, name)[0]
        return records

    # ----- writing -----

    def _check_unchanged(self, plan, current) -> None:
        """Refuse to write when a record we would touch changed since the plan was read."""
        remembered = self._found.get(plan.zone)
        changed = []
        for change in plan.changes:
            key = (change.name, change.rtype)
            now = current.get(key, [])
            found_now = _record_set(now) if now else None
            if found_now != change.found:
                changed.append(f"{change.rtype} {change.name}")
            elif remembered is not None and key in remembered and (
                {r.id for r in remembered[key]} != {r.id for r in now}
            ):
                changed.append(f"{change.rtype} {change.name}")
        if changed:
            raise self._error(
                f"zone {plan.zone} changed since the plan was read ({', '.join(changed)}); "
                "nothing was written: run again"
            )

    # ----- SDK calls and their errors -----

    def _call(self, kind: str, what: str, function):
        """Count and run one SDK call; turn its errors into one-line ProviderErrors."""
        self.calls[kind] += 1
        try:
            return function()
        except (cloudflare.AuthenticationError, cloudflare.PermissionDeniedError) as error:
            message = (
                f"Cloudflare refused the API token while {what} ({_describe(error)}): check "
                "CLOUDFLARE_API_TOKEN and that it has Zone:Read and DNS:Edit on the zone"
            )
        except cloudflare.RateLimitError as error:
            message = (
                f"Cloudflare rate limit while {what} ({_describe(error)}), still refused after "
                f"{self.client.max_retries} retries: wait a few minutes and run again"
            )
        except cloudflare.APIStatusError as error:
            codes = _error_codes(error)
            if 81044 in codes:
                hint = ": a record to change no longer exists, the zone changed since it was read"
            elif codes & {81057, 81058}:
                hint = (": a record to create already exists, the zone changed since it was read "
                        "or an interrupted run already wrote it")
            else:
                hint = ""
            message = f"Cloudflare API error while {what} ({_describe(error)}){hint}"
            if kind == "write":
                message += "; the batch is all or nothing: nothing was written, run again"
        except cloudflare.APIConnectionError as error:
            reason = "timed out" if isinstance(error, cloudflare.APITimeoutError) else "failed"
            message = (
                f"connection to the Cloudflare API at {self.client.base_url.host} {reason} "
                f"while {what}"
            )
        raise self._error(message)

    def _error(self, message: str) -> ProviderError:
        """A ProviderError of one line that never holds the token."""
        return ProviderError(" ".join(message.replace(self._token, "[token]").split()))


def _batches(deletes: list, patches: list, posts: list) -> list[dict]:
    """The operations in batches of at most BATCH_LIMIT, deletes first, then patches, posts."""
    items = [("deletes", d) for d in deletes] + [("patches", p) for p in patches]
    items += [("posts", p) for p in posts]
    batches = []
    for start in range(0, len(items), BATCH_LIMIT):
        batch: dict[str, list] = {"deletes": [], "patches": [], "posts": []}
        for kind, item in items[start:start + BATCH_LIMIT]:
            batch[kind].append(item)
        batches.append(batch)
    return batches


def _describe(error: cloudflare.APIStatusError) -> str:
    body = error.body if isinstance(error.body, dict) else {}
    errors = body.get("errors") or []
    details = "; ".join(
        f"code {e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict)
    )
    return f"HTTP {error.status_code}" + (f", {details}" if details else "")


def _error_codes(error: cloudflare.APIStatusError) -> set:
    body = error.body if isinstance(error.body, dict) else {}
    return {e.get("code") for e in body.get("errors") or [] if isinstance(e, dict)}


def _total_count(page) -> int | None:
    return getattr(page.result_info, "total_count", None)


def record_value(rtype: str, content: str | None, priority=None, data=None) -> str:
    """A Cloudflare record's fields as a value in records.py form (the one converter).

    MX is "priority target"; TXT content is unquoted (Cloudflare accepts and returns both
    quoted and bare content); CAA, SRV and TLSA come from ``data`` when the API gives it.
    """
    content = content or ""
    if rtype == "MX":
        return f"{int(priority or 0)} {content}"
    if rtype == "TXT":
        return unquote_txt(content)
    if rtype == "CAA" and isinstance(data, dict) and data.get("tag"):
        return f'{int(data.get("flags") or 0)} {data["tag"]} "{data.get("value", "")}"'
    if rtype == "SRV" and isinstance(data, dict) and data.get("target"):
        return (f'{int(data.get("priority") or 0)} {int(data.get("weight") or 0)} '
                f'{int(data.get("port") or 0)} {data["target"]}')
    if rtype == "TLSA" and isinstance(data, dict) and data.get("certificate"):
        return (f'{int(data.get("usage") or 0)} {int(data.get("selector") or 0)} '
                f'{int(data.get("matching_type") or 0)} {data["certificate"].lower()}')
    if rtype == "SRV" and priority is not None and len(content.split()) == 3:
        return f"{int(priority)} {content}"  # content holds "weight port target"
    return content


def _found_record(record) -> FoundRecord:
    """An SDK record as a FoundRecord, its value in records.py form."""
    data = getattr(record, "data", None)
    if data is not None and not isinstance(data, dict):
        data = data.model_dump() if hasattr(data, "model_dump") else dict(data)
    return FoundRecord(
        id=record.id,
        name=normalize_name(record.name),
        rtype=record.type,
        value=record_value(record.type, record.content, getattr(record, "priority", None), data),
        ttl=int(record.ttl),
        proxied=bool(record.proxied),
    )


def _record_set(records: list[FoundRecord]) -> RecordSet:
    """Records of one key as a RecordSet: the lowest TTL (what resolvers use), proxied when any
    record is (so that an unproxied desired set rewrites them all), and each value's own TTL
    (so that our part of a shared set has our TTL, whatever the TTL of the others)."""
    first = records[0]
    return RecordSet(
        first.name,
        first.rtype,
        min(r.ttl for r in records),
        tuple(r.value for r in records),
        proxied=any(r.proxied for r in records),
        value_ttls=tuple((r.value, r.ttl) for r in records),
    )


def _operations(change, records: list[FoundRecord]):
    """Batch deletes, patches and posts for one Change, given the records now at its key.

    The records holding removed values are patched into the added values (same value first,
    so that a TTL or proxy change patches a record in place); the rest are deleted or posted.
    """
    removed = set(change.removed_values)
    dropping = [r for r in records if r.value in removed]
    adding = list(change.added_values)
    patches = []
    for record in list(dropping):
        if record.value in adding:
            adding.remove(record.value)
            dropping.remove(record)
            patches.append({"id": record.id, **_body(change.new, record.value)})
    while dropping and adding:
        record = dropping.pop(0)
        patches.append({"id": record.id, **_body(change.new, adding.pop(0))})
    deletes = [{"id": r.id} for r in dropping]
    posts = [_body(change.new, value) for value in adding]
    return deletes, patches, posts


def _body(rrset: RecordSet, value: str) -> dict:
    """The API fields of one record of ``rrset`` holding ``value``."""
    body = {"name": rrset.name, "type": rrset.rtype, "ttl": rrset.ttl}
    if rrset.rtype == "MX":
        priority, target = value.split(None, 1)
        body.update(content=target, priority=int(priority))
    elif rrset.rtype == "TXT":
        body["content"] = quote_txt(value)
    elif rrset.rtype == "CAA":
        flags, tag, caa_value = value.split(None, 2)
        body["data"] = {"flags": int(flags), "tag": tag, "value": unquote_txt(caa_value)}
    elif rrset.rtype == "SRV":
        priority, weight, port, target = value.split()
        body["data"] = {"priority": int(priority), "weight": int(weight), "port": int(port),
                        "target": target}
    elif rrset.rtype == "TLSA":  # written through data: the API's content is read-only
        usage, selector, matching_type, certificate = value.split(None, 3)
        body["data"] = {"usage": int(usage), "selector": int(selector),
                        "matching_type": int(matching_type), "certificate": certificate}
    else:
        body["content"] = value
    if rrset.rtype in PROXIABLE:
        body["proxied"] = False if rrset.rtype in NEVER_PROXIED else rrset.proxied
    return body
