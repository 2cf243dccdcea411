"""The Cloudflare emulator's API state: zones and DNS records, validated as the real API does.

Everything the HTTP layer (lab.cloudflare.http) serves lives here, behind one lock:
the records of each zone, each zone's DNSSEC status, the tokens and the zones each may see,
injected faults and request counters. A write runs on a copy and is committed only when it
succeeded and, when a write hook is set (the lab's Knot mirror), when the hook succeeded too: a
failed write-through fails the request.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

API_PREFIX = "/client/v4"
ADMIN_PREFIX = "/__emulator"
PROXIABLE_TYPES = ("A", "AAAA", "CNAME")
RECORD_TYPES = (
    "A", "AAAA", "CAA", "CERT", "CNAME", "DNSKEY", "DS", "HTTPS", "LOC", "MX", "NAPTR", "NS",
    "OPENPGPKEY", "PTR", "SMIMEA", "SRV", "SSHFP", "SVCB", "TLSA", "TXT", "URI",
)
DNS_PER_PAGE_MAX = 5_000_000  # what the real API documents for dns_records
BATCH_MAX = 200  # changes per dns_records/batch call (the Free plan's documented limit)
TXT_STRING_MAX = 255  # bytes per quoted character-string (RFC 1035)
TXT_CONTENT_MAX = 2048  # characters of TXT content, as documented
ZONES_PER_PAGE_MAX = 50
# GET /zones/{id}/dnssec: "status" is one of these (the SDK's Literal); the emulator signs
# nothing and serves no DNS itself, so a zone is "disabled" until told otherwise (set_dnssec)
DNSSEC_STATUSES = ("active", "pending", "disabled", "pending-disabled", "error")


class ApiError(Exception):
    """A Cloudflare-style error: HTTP status plus one (code, message)."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict:
        return {
            "success": False,
            "errors": [{"code": self.code, "message": self.message}],
            "messages": [],
            "result": None,
        }


def auth_error() -> ApiError:
    return ApiError(403, 10000, "Authentication error")


def record_not_found() -> ApiError:
    return ApiError(404, 81044, "Record does not exist.")


def zone_not_found() -> ApiError:
    return ApiError(404, 1003, "Invalid or missing zone id.")


@dataclass
class Fault:
    """The next ``count`` requests matching ``method`` and ``path`` (a regex) misbehave.

    ``delay`` seconds of sleep first; then, with ``status``, answer that error instead
    (or, with ``after_write``, perform the request and answer the error anyway, as when a
    response is lost); ``retry_after`` adds a Retry-After header (seconds, floats allowed).
    """

    method: str = "*"
    path: str = ".*"
    status: int | None = 429
    count: int = 1
    retry_after: float | None = None
    delay: float = 0.0
    after_write: bool = False

    def matches(self, method: str, path: str) -> bool:
        return (self.count > 0 and self.method in ("*", method)
                and re.search(self.path, path) is not None)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _new_id() -> str:
    return uuid.uuid4().hex


class CloudflareState:
    """The emulated account: zones, records, tokens, faults and counters, behind one lock."""

    def __init__(
        self,
        token: str,
        zones=("example.test",),
        host: str = "127.0.0.1",
        port: int = 0,
        state_file: str | None = None,
        on_write=None,
    ):
        self.token = token
        self.tokens: dict[str, frozenset[str] | None] = {token: None}  # token -> zone names
        self.no_dnssec_read: set[str] = set()  # tokens refused GET /zones/{id}/dnssec
        self.dnssec: dict[str, dict] = {}  # zone id -> its DNSSEC object, as the API returns it
        self._name_index: dict[str, tuple[list, dict]] = {}  # zone id -> (records, by name)
        self.host, self.port = host, port
        self.state_file = state_file
        self.on_write = on_write
        self.hook_errors: list[str] = []
        self.lock = threading.RLock()
        self.zones: dict[str, dict] = {}  # id -> zone object
        self.dns: dict[str, list[dict]] = {}  # zone id -> records, in creation order
        self.faults: list[Fault] = []
        self.stats: Counter[str] = Counter()
        self.request_log: list[tuple[str, str, str]] = []  # (method, path, query)
        if state_file and os.path.exists(state_file):
            self._load_state()
        for name in zones:
            if self.find_zone(name) is None:
                self.add_zone(name)

    # ----- Python API for tests and the lab -----

    def add_zone(self, name: str) -> str:
        """Create a zone; return its id."""
        with self.lock:
            name = name.rstrip(".").lower()
            zone_id = _new_id()
            now = _now()
            self.zones[zone_id] = {
                "id": zone_id,
                "name": name,
                "status": "active",
                "paused": False,
                "type": "full",
                "development_mode": 0,
                "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
                "original_name_servers": None,
                "original_registrar": None,
                "original_dnshost": None,
                "created_on": now,
                "modified_on": now,
                "activated_on": now,
                "meta": {"step": 2, "phishing_detected": False},
                "owner": {"id": None, "type": "user", "name": None},
                "account": {"id": "0" * 32, "name": "lab account"},
                "permissions": ["#dns_records:edit", "#dns_records:read", "#zone:read"],
                "plan": {"id": "0" * 32, "name": "Free Website", "price": 0, "currency": "USD"},
            }
            self.dns[zone_id] = []
            self.dnssec[zone_id] = _dnssec_object("disabled", None, now)
            self._save_state()
            return zone_id

    def set_dnssec(self, zone: str, status: str, ds: str | None = None) -> dict:
        """Set the zone's DNSSEC status (DNSSEC_STATUSES) and, when signed, its key-signing
        key's DS as text ("key_tag algorithm digest_type digest"); return the API object."""
        if status not in DNSSEC_STATUSES:
            raise ValueError(f"DNSSEC status {status!r}: expected one of "
                             f"{', '.join(DNSSEC_STATUSES)}")
        with self.lock:
            zone_id = self.zone_id(zone)
            name = self.zones[zone_id]["name"]
            self.dnssec[zone_id] = _dnssec_object(status, f"{name}. 3600 IN DS {ds}" if ds
                                                  else None, _now())
            self._save_state()
            return copy.deepcopy(self.dnssec[zone_id])

    def get_dnssec(self, zone_id: str, token: str) -> dict:
        """The zone's DNSSEC object; 403 for a token without the permission to read it."""
        if token in self.no_dnssec_read:
            raise ApiError(403, 9109, "Unauthorized to access requested resource")
        with self.lock:
            return copy.deepcopy(self.dnssec.get(zone_id)
                                 or _dnssec_object("disabled", None, _now()))

    def find_zone(self, name: str) -> str | None:
        """The id of the zone called ``name``, or None."""
        name = name.rstrip(".").lower()
        for zone_id, zone in self.zones.items():
            if zone["name"] == name:
                return zone_id
        return None

    def zone_id(self, zone: str) -> str:
        """Accept a zone name or id; return the id."""
        if zone in self.zones:
            return zone
        zone_id = self.find_zone(zone)
        if zone_id is None:
            raise KeyError(f"no zone {zone}")
        return zone_id

    def add_token(self, token: str, zones, dnssec_read: bool = True) -> None:
        """Accept ``token`` for the zones named (the others answer 403, as Cloudflare does);
        without ``dnssec_read`` it may not read their DNSSEC status (403, a token without
        "DNS Read")."""
        with self.lock:
            self.tokens[token] = frozenset(z.rstrip(".").lower() for z in zones)
            if not dnssec_read:
                self.no_dnssec_read.add(token)

    def zones_of_token(self, token: str) -> frozenset[str] | None:
        """The zone names ``token`` may see (None: all); ApiError 403 for an unknown token."""
        if token not in self.tokens:
            raise auth_error()
        return self.tokens[token]

    def add_record(
        self,
        zone: str,
        name: str,
        rtype: str,
        content: str | None = None,
        ttl: int = 300,
        proxied: bool = False,
        priority: int | None = None,
        comment: str | None = None,
        data: dict | None = None,
    ) -> dict:
        """Create a record directly (same validation as the API, no hook counted as a call)."""
        body = {"name": name, "type": rtype, "content": content, "ttl": ttl, "proxied": proxied}
        if data is not None:
            body["data"] = data
        if priority is not None:
            body["priority"] = priority
        if comment is not None:
            body["comment"] = comment
        return self._write(self.zone_id(zone), lambda records: self._create(zone, records, body))

    def add_records(self, zone: str, bodies) -> list[dict]:
        """Create many records in one write (fast seeding of big zones).

        ``bodies`` are API-style dicts: name, type, content, ttl, proxied, priority...
        """
        zone_id = self.zone_id(zone)

        def create_all(records: list[dict]) -> list[dict]:
            by_name: dict[str, list[dict]] = {}
            for record in records:
                by_name.setdefault(record["name"], []).append(record)
            created = []
            for body in bodies:
                record = self._build(zone_id, {"ttl": 300, **body}, None)
                self._check_conflicts(by_name.get(record["name"], []), record)
                by_name.setdefault(record["name"], []).append(record)
                records.append(record)
                created.append(record)
            return created

        return self._write(zone_id, create_all)

    def update_record(self, zone: str, record_id: str, **fields) -> dict:
        """Change fields of a record directly (like PATCH)."""
        zone_id = self.zone_id(zone)
        return self._write(
            zone_id, lambda records: self._patch(zone_id, records, record_id, fields)
        )

    def delete_record(self, zone: str, record_id: str) -> None:
        zone_id = self.zone_id(zone)
        self._write(zone_id, lambda records: self._delete(records, record_id))

    def records(self, zone: str) -> list[dict]:
        """A copy of every record of the zone, as the API returns them."""
        with self.lock:
            return copy.deepcopy(self.dns[self.zone_id(zone)])

    def add_fault(self, method="*", path=".*", status=429, count=1, retry_after=None,
                  delay=0.0, after_write=False) -> Fault:
        """Make the next ``count`` matching requests fail or stall (see Fault)."""
        fault = Fault(method.upper(), path, status, count, retry_after, delay, after_write)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def reset_stats(self) -> None:
        with self.lock:
            self.stats.clear()
            self.request_log.clear()

    def stats_dict(self) -> dict:
        with self.lock:
            return {"requests": dict(self.stats), "total": sum(self.stats.values())}

    # ----- state changes; all run under the lock, on a copy, committed only on success -----

    def _write(self, zone_id: str, change):
        """Run ``change(records_copy)``, then the write hook; commit only if both succeed.

        A hook that fails (the lab's Knot refused the mirror update) fails the request with a
        500, nothing committed, so the emulator never says it holds what DNS does not serve.
        """
        with self.lock:
            old = self.dns[zone_id]
            new = list(old)  # records are never changed in place, only replaced
            result = change(new)
            if self.on_write:
                try:
                    self.on_write(self.zones[zone_id]["name"], copy.deepcopy(old),
                                  copy.deepcopy(new))
                except Exception as error:
                    self.hook_errors.append(f"{type(error).__name__}: {error}")
                    raise ApiError(500, 10001, f"Internal error: the write was not stored "
                                               f"({type(error).__name__}: {error})") from None
            self.dns[zone_id] = new
            self.zones[zone_id]["modified_on"] = _now()
            self._save_state()
            return result

    def _create(self, zone: str, records: list[dict], body: dict) -> dict:
        zone_id = self.zone_id(zone)
        record = self._build(zone_id, body, None)
        self._check_conflicts(records, record)
        records.append(record)
        return record

    def _patch(self, zone_id: str, records: list[dict], record_id: str, fields: dict) -> dict:
        index = self._index(records, record_id)
        merged = {**records[index], **fields}
        if "data" in fields and "content" not in fields:
            merged.pop("content", None)  # CAA content follows the new data
        record = self._build(zone_id, merged, records[index])
        others = records[:index] + records[index + 1:]
        self._check_conflicts(others, record)
        records[index] = record
        return record

    def _put(self, zone_id: str, records: list[dict], record_id: str, body: dict) -> dict:
        index = self._index(records, record_id)
        record = self._build(zone_id, body, records[index])
        others = records[:index] + records[index + 1:]
        self._check_conflicts(others, record)
        records[index] = record
        return record

    def _delete(self, records: list[dict], record_id: str) -> dict:
        index = self._index(records, record_id)
        return records.pop(index)

    def _batch(self, zone_id: str, records: list[dict], body: dict) -> dict:
        """Deletes, patches, puts, posts, in that order; any error aborts the whole batch."""
        size = sum(len(body.get(kind) or []) for kind in ("deletes", "patches", "puts", "posts"))
        if size > BATCH_MAX:
            raise ApiError(400, 81061, f"Batch size {size} exceeds the maximum of {BATCH_MAX} "
                                       "operations per request.")
        result = {"deletes": [], "patches": [], "puts": [], "posts": []}
        for item in body.get("deletes") or []:
            result["deletes"].append(self._delete(records, _require_id(item)))
        for item in body.get("patches") or []:
            fields = {k: v for k, v in item.items() if k != "id"}
            result["patches"].append(self._patch(zone_id, records, _require_id(item), fields))
        for item in body.get("puts") or []:
            fields = {k: v for k, v in item.items() if k != "id"}
            result["puts"].append(self._put(zone_id, records, _require_id(item), fields))
        for item in body.get("posts") or []:
            result["posts"].append(self._create(zone_id, records, item))
        return result

    @staticmethod
    def _index(records: list[dict], record_id: str) -> int:
        for index, record in enumerate(records):
            if record["id"] == record_id:
                return index
        raise record_not_found()

    def _build(self, zone_id: str, body: dict, previous: dict | None) -> dict:
        """Validate a record body and return the stored record."""
        zone_name = self.zones[zone_id]["name"]
        rtype = str(body.get("type") or "").upper()
        if rtype not in RECORD_TYPES:
            raise ApiError(400, 9000, "DNS record type is invalid.")
        name = _absolute_name(str(body.get("name") or ""), zone_name)
        if not name:
            raise ApiError(400, 9007, "Content for record name is invalid.")
        if name != zone_name and not name.endswith("." + zone_name):
            raise ApiError(400, 9007, f"Record name {name} is not in the zone {zone_name}.")
        ttl = body.get("ttl", 1)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not (
            ttl == 1 or 60 <= ttl <= 86400
        ):
            raise ApiError(
                400, 9021, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic."
            )
        proxied = body.get("proxied", False)
        if proxied is None:
            proxied = False
        if not isinstance(proxied, bool):
            raise ApiError(400, 9003, "Invalid 'proxied' value, must be a boolean")
        if proxied and rtype not in PROXIABLE_TYPES:
            raise ApiError(400, 9004, "This record type cannot be proxied.")
        content = body.get("content")
        data = body.get("data")
        if rtype == "CAA":  # CAA is written through data{flags, tag, value}
            data = _caa_data(data if data is not None else (previous or {}).get("data"))
            content = f'{data["flags"]} {data["tag"]} "{data["value"]}"'
        elif rtype == "TLSA":  # written only through data; content is the formatted data
            data = _tlsa_data(data if data is not None else (previous or {}).get("data"))
            content = (f'{data["usage"]} {data["selector"]} {data["matching_type"]} '
                       f'{data["certificate"]}')
        elif rtype == "SRV" and data is not None:  # or data{priority, weight, port, target}
            data = _srv_data(data)
            content = f'{data["priority"]} {data["weight"]} {data["port"]} {data["target"]}'
        if content is None or content == "":
            raise ApiError(400, 9005, "Content for record is invalid.")
        content = str(content)
        if rtype == "A":
            content = _check_ip(content, ipaddress.IPv4Address, 9005, "IPv4")
        elif rtype == "AAAA":
            content = _check_ip(content, ipaddress.IPv6Address, 9006, "IPv6")
        elif rtype in ("CNAME", "MX", "NS", "PTR"):
            content = content.rstrip(".").lower() or "."  # an MX of "." is a null MX
        elif rtype == "TXT":
            _check_txt(content)
        record = {
            "id": previous["id"] if previous else _new_id(),
            "zone_id": zone_id,
            "zone_name": zone_name,
            "name": name,
            "type": rtype,
            "content": content,
            "ttl": ttl,
            "proxied": proxied,
            "proxiable": rtype in PROXIABLE_TYPES,
            "comment": body.get("comment"),
            "tags": list(body.get("tags") or []),
            "settings": dict(body.get("settings") or {}),
            "meta": {},
            "created_on": previous["created_on"] if previous else _now(),
            "modified_on": _now(),
        }
        if rtype == "MX":
            priority = body.get("priority")
            if not isinstance(priority, int) or not 0 <= priority <= 65535:
                raise ApiError(400, 9101, "MX records require a priority between 0 and 65535.")
            record["priority"] = priority
        if rtype in ("CAA", "SRV", "TLSA") and data is not None:
            record["data"] = data
        return record

    @staticmethod
    def _check_conflicts(others: list[dict], record: dict) -> None:
        for other in others:
            if other["name"] != record["name"]:
                continue
            if (record["type"] == "CNAME") != (other["type"] == "CNAME"):
                raise ApiError(
                    400, 81053, "An A, AAAA, or CNAME record with that host already exists."
                )
            if (other["type"], other["content"], other.get("priority")) == (
                record["type"], record["content"], record.get("priority")
            ):
                raise ApiError(400, 81058, "An identical record already exists.")

    # ----- queries -----

    def list_zones(self, query: dict, visible=None) -> tuple[list[dict], dict]:
        """Zones matching ``?name=``, among those in ``visible`` (None: all)."""
        with self.lock:
            zones = [z for z in self.zones.values() if visible is None or z["name"] in visible]
        wanted = query.get("name")
        if wanted:
            zones = [z for z in zones if _match_zone_name(z["name"], wanted)]
        return _paginate(zones, query, default=20, maximum=ZONES_PER_PAGE_MAX)

    def list_records(self, zone_id: str, query: dict) -> tuple[list[dict], dict]:
        zone_name = self.zones[zone_id]["name"]
        exact = query.get("name.exact", query.get("name"))
        with self.lock:
            if exact is not None and query.get("match") != "any":
                # an index by name, as the real API has: a name-filtered list costs the same
                # whatever the size of the zone
                records = list(self._by_name(zone_id).get(_absolute_name(exact, zone_name), []))
            else:
                records = list(self.dns[zone_id])
        tests = []
        for field in ("name", "content", "comment"):
            for operator in ("", ".exact", ".contains", ".startswith", ".endswith"):
                value = query.get(field + operator)
                if value is None:
                    continue
                if field == "name" and operator in ("", ".exact"):
                    value = _absolute_name(value, zone_name)
                tests.append(_field_test(field, operator or ".exact", value))
        wanted_type = (query.get("type") or "").upper()
        if wanted_type:
            tests.append(lambda r: r["type"] == wanted_type)
        wanted_proxied = query.get("proxied")
        if wanted_proxied in ("true", "false"):
            tests.append(lambda r: r["proxied"] == (wanted_proxied == "true"))
        if query.get("match") == "any" and tests:
            records = [r for r in records if any(test(r) for test in tests)]
        else:
            records = [r for r in records if all(test(r) for test in tests)]
        return _paginate(records, query, default=100, maximum=DNS_PER_PAGE_MAX)

    def _by_name(self, zone_id: str) -> dict[str, list[dict]]:
        """The zone's records by name, rebuilt after each write (writes replace the list)."""
        records = self.dns[zone_id]
        cached = self._name_index.get(zone_id)
        if cached is None or cached[0] is not records:
            index: dict[str, list[dict]] = {}
            for record in records:
                index.setdefault(record["name"], []).append(record)
            cached = self._name_index[zone_id] = (records, index)
        return cached[1]

    # ----- faults and counters, called by the handler -----

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    return fault
        return None

    def count_request(self, method: str, path: str, query: str) -> None:
        with self.lock:
            self.stats[method] += 1
            self.request_log.append((method, path, query))

    # ----- state file -----

    def _save_state(self) -> None:
        if not self.state_file:
            return
        temporary = self.state_file + ".tmp"
        with open(temporary, "w") as out:
            json.dump({"zones": self.zones, "dns": self.dns, "dnssec": self.dnssec}, out,
                      indent=1)
        os.replace(temporary, self.state_file)

    def _load_state(self) -> None:
        with open(self.state_file) as state:
            data = json.load(state)
        self.zones, self.dns = data["zones"], data["dns"]
        self.dnssec = data.get("dnssec", {})


def _srv_data(data) -> dict:
    """The data of an SRV record, checked: priority, weight and port 0-65535, a target name
    ("." : no service)."""
    if not isinstance(data, dict):
        raise ApiError(400, 9101, "SRV records require data with priority, weight, port, target.")
    numbers = [data.get(key) for key in ("priority", "weight", "port")]
    if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 65535
               for n in numbers):
        raise ApiError(400, 9101, "SRV priority, weight and port must be integers 0-65535.")
    target = data.get("target")
    if not isinstance(target, str) or not target or any(c.isspace() for c in target):
        raise ApiError(400, 9101, "SRV target must be a host name.")
    return {"priority": numbers[0], "weight": numbers[1], "port": numbers[2],
            "target": target.rstrip(".").lower() or "."}


def _dnssec_object(status: str, ds: str | None, modified_on: str) -> dict:
    """GET /zones/{id}/dnssec's result: the key fields are null unless a DS is given (as the
    real API answers for a zone whose DNSSEC was never turned on)."""
    fields = {"algorithm": None, "digest": None, "digest_algorithm": None, "digest_type": None,
              "ds": None, "flags": None, "key_tag": None, "key_type": None,
              "public_key": None}
    if ds:
        key_tag, algorithm, digest_type, digest = ds.split()[-4:]
        fields.update(algorithm=algorithm, digest=digest.upper(), digest_type=digest_type,
                      digest_algorithm={"1": "SHA1", "2": "SHA256", "4": "SHA384"}.get(
                          digest_type, digest_type),
                      ds=ds, flags=257, key_tag=int(key_tag),
                      key_type={"8": "RSASHA256", "13": "ECDSAP256SHA256",
                                "15": "ED25519"}.get(algorithm, algorithm))
    return {"status": status, **fields, "dnssec_multi_signer": False,
            "dnssec_presigned": False, "dnssec_use_nsec3": False, "modified_on": modified_on}


def _tlsa_data(data) -> dict:
    """The data of a TLSA record, checked: usage 0-3, selector 0-1, matching type 0-2, a
    hexadecimal certificate association."""
    if not isinstance(data, dict):
        raise ApiError(400, 9101, "TLSA records require data with usage, selector, "
                                  "matching_type and certificate.")
    numbers = [data.get(key) for key in ("usage", "selector", "matching_type")]
    if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= limit
               for n, limit in zip(numbers, (3, 1, 2), strict=True)):
        raise ApiError(400, 9101, "TLSA usage (0-3), selector (0-1) and matching_type (0-2) "
                                  "must be integers.")
    certificate = data.get("certificate")
    if not isinstance(certificate, str) or not re.fullmatch(r"(?:[0-9a-fA-F]{2})+",
                                                            certificate):
        raise ApiError(400, 9101, "TLSA certificate must be hexadecimal.")
    return {"usage": numbers[0], "selector": numbers[1], "matching_type": numbers[2],
            "certificate": certificate.lower()}


def _caa_data(data) -> dict:
    """The data of a CAA record, checked: flags 0-255, a known tag, a value."""
    if not isinstance(data, dict):
        raise ApiError(400, 9101, "CAA records require data with flags, tag and value.")
    flags, tag, value = data.get("flags", 0), data.get("tag"), data.get("value")
    if not isinstance(flags, int) or not 0 <= flags <= 255:
        raise ApiError(400, 9101, "CAA flags must be an integer from 0 to 255.")
    if tag not in ("issue", "issuewild", "iodef"):
        raise ApiError(400, 9101, "CAA tag must be issue, issuewild or iodef.")
    if not isinstance(value, str):
        raise ApiError(400, 9101, "CAA value must be a string.")
    return {"flags": flags, "tag": tag, "value": value}


def _check_txt(content: str) -> None:
    """TXT content: at most 2048 characters; quoted strings of at most 255 bytes each.

    Unquoted content is stored as given (Cloudflare splits it into strings when serving)."""
    if len(content) > TXT_CONTENT_MAX:
        raise ApiError(400, 9100, f"TXT content is longer than {TXT_CONTENT_MAX} characters.")
    if not content.startswith('"'):
        return
    for string in re.findall(r'"((?:[^"\\]|\\.)*)"', content):
        if len(re.sub(r"\\(.)", r"\1", string).encode()) > TXT_STRING_MAX:
            raise ApiError(400, 9100, "A TXT character-string is longer than 255 bytes: split "
                                      "the content into quoted strings of 255 bytes or less.")


def _require_id(item: dict) -> str:
    if not isinstance(item, dict) or not item.get("id"):
        raise ApiError(400, 1004, "DNS Validation Error: id is required.")
    return item["id"]


def _absolute_name(name: str, zone_name: str) -> str:
    """Cloudflare accepts "@", relative and absolute names; store absolute, lowercase."""
    name = name.strip().rstrip(".").lower()
    if name in ("", "@"):
        return zone_name if name == "@" else ""
    if name == zone_name or name.endswith("." + zone_name):
        return name
    if "." not in name:
        return f"{name}.{zone_name}"
    return name


def _check_ip(content: str, kind, code: int, label: str) -> str:
    try:
        return str(kind(content.strip()))
    except ValueError:
        raise ApiError(
            400, code, f"Content for {'A' if label == 'IPv4' else 'AAAA'} record must be "
            f"a valid {label} address."
        ) from None


def _field_test(field: str, operator: str, value: str):
    value = value.lower() if field == "name" else value

    def test(record: dict) -> bool:
        have = record.get(field) or ""
        have = have.lower() if field == "name" else have
        if operator == ".exact":
            return have == value
        if operator == ".contains":
            return value in have
        if operator == ".startswith":
            return have.startswith(value)
        return have.endswith(value)

    return test


def _match_zone_name(name: str, wanted: str) -> bool:
    operator, _, value = wanted.partition(":")
    if not value:
        return name == wanted.rstrip(".").lower()
    value = value.lower()
    return {
        "equal": name == value,
        "not_equal": name != value,
        "contains": value in name,
        "starts_with": name.startswith(value),
        "ends_with": name.endswith(value),
    }.get(operator, False)


def _paginate(items: list, query: dict, default: int, maximum: int) -> tuple[list, dict]:
    try:
        page = max(1, int(float(query.get("page", 1))))
        per_page = int(float(query.get("per_page", default)))
    except ValueError:
        raise ApiError(400, 1004, "Invalid pagination parameters.") from None
    per_page = min(max(per_page, 5), maximum)
    chunk = items[(page - 1) * per_page: page * per_page]
    total = len(items)
    info = {
        "page": page,
        "per_page": per_page,
        "count": len(chunk),
        "total_count": total,
        "total_pages": (total + per_page - 1) // per_page,
    }
    return copy.deepcopy(chunk), info


