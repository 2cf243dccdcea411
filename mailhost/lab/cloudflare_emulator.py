"""A stateful local emulator of the Cloudflare API v4 (zones and DNS records), stdlib only.

It serves the unmodified official ``cloudflare`` SDK pointed at it with
``Cloudflare(api_token=TOKEN, base_url=emulator.base_url)``. Tests seed and inspect state
through the Python API (``add_record``, ``records``), inject faults (429 with Retry-After,
500, delays) and read request counters; the same is reachable over HTTP under
``/__emulator/`` (no auth, loopback only).

Run it alone::

    python -m mailhost.lab.cloudflare_emulator --listen 127.0.0.1:8787 \\
        --zone example.test --token TOKEN [--state FILE]

An optional write hook ``on_write(zone, old_records, new_records)`` is called after each
successful write; ``Rfc2136Mirror`` is such a hook that mirrors the zone into a real DNS
server through RFC 2136 dynamic updates.
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import json
import os
import re
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

API_PREFIX = "/client/v4"
ADMIN_PREFIX = "/__emulator"
PROXIABLE_TYPES = ("A", "AAAA", "CNAME")
RECORD_TYPES = (
    "A", "AAAA", "CAA", "CERT", "CNAME", "DNSKEY", "DS", "HTTPS", "LOC", "MX", "NAPTR", "NS",
    "OPENPGPKEY", "PTR", "SMIMEA", "SRV", "SSHFP", "SVCB", "TLSA", "TXT", "URI",
)
DNS_PER_PAGE_MAX = 5_000_000  # what the real API documents for dns_records
ZONES_PER_PAGE_MAX = 50


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


class CloudflareEmulator:
    """The emulator: state, Python API and an HTTP server run in a thread."""

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
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if state_file and os.path.exists(state_file):
            self._load_state()
        for name in zones:
            if self.find_zone(name) is None:
                self.add_zone(name)

    # ----- lifecycle -----

    def start(self) -> CloudflareEmulator:
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to give the SDK as ``base_url``."""
        return self.url + API_PREFIX

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
            self._save_state()
            return zone_id

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

    def add_record(
        self,
        zone: str,
        name: str,
        rtype: str,
        content: str,
        ttl: int = 300,
        proxied: bool = False,
        priority: int | None = None,
        comment: str | None = None,
    ) -> dict:
        """Create a record directly (same validation as the API, no hook counted as a call)."""
        body = {"name": name, "type": rtype, "content": content, "ttl": ttl, "proxied": proxied}
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
        """Run ``change(records_copy)``; commit the copy and call the hook only if it succeeds."""
        with self.lock:
            old = self.dns[zone_id]
            new = list(old)  # records are never changed in place, only replaced
            result = change(new)
            self.dns[zone_id] = new
            self.zones[zone_id]["modified_on"] = _now()
            self._save_state()
            if self.on_write:
                try:
                    self.on_write(self.zones[zone_id]["name"], copy.deepcopy(old),
                                  copy.deepcopy(new))
                except Exception as error:  # the write stands; the mirror reports its failure
                    self.hook_errors.append(f"{type(error).__name__}: {error}")
                    print(f"cloudflare emulator: write hook failed: {error}", file=sys.stderr)
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
        if not isinstance(ttl, int) or not (ttl == 1 or 30 <= ttl <= 86400):
            raise ApiError(
                400, 9021, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic."
            )
        proxied = bool(body.get("proxied") or False)
        if proxied and rtype not in PROXIABLE_TYPES:
            raise ApiError(400, 9004, "This record type cannot be proxied.")
        content = body.get("content")
        data = body.get("data")
        if rtype == "CAA" and content is None and isinstance(data, dict):
            content = f'{data.get("flags", 0)} {data.get("tag")} "{data.get("value")}"'
        if content is None or content == "":
            raise ApiError(400, 9005, "Content for record is invalid.")
        content = str(content)
        if rtype == "A":
            content = _check_ip(content, ipaddress.IPv4Address, 9005, "IPv4")
        elif rtype == "AAAA":
            content = _check_ip(content, ipaddress.IPv6Address, 9006, "IPv6")
        elif rtype in ("CNAME", "MX", "NS", "PTR"):
            content = content.rstrip(".").lower()
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
        if rtype == "CAA" and isinstance(data, dict):
            record["data"] = dict(data)
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
                raise ApiError(400, 81057, "An identical record already exists.")

    # ----- queries -----

    def list_zones(self, query: dict) -> tuple[list[dict], dict]:
        with self.lock:
            zones = list(self.zones.values())
        wanted = query.get("name")
        if wanted:
            zones = [z for z in zones if _match_zone_name(z["name"], wanted)]
        return _paginate(zones, query, default=20, maximum=ZONES_PER_PAGE_MAX)

    def list_records(self, zone_id: str, query: dict) -> tuple[list[dict], dict]:
        with self.lock:
            records = list(self.dns[zone_id])
        zone_name = self.zones[zone_id]["name"]
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
            json.dump({"zones": self.zones, "dns": self.dns}, out, indent=1)
        os.replace(temporary, self.state_file)

    def _load_state(self) -> None:
        with open(self.state_file) as state:
            data = json.load(state)
        self.zones, self.dns = data["zones"], data["dns"]


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


ZONE_PATH = re.compile(r"^/zones/([^/]+)$")
RECORDS_PATH = re.compile(r"^/zones/([^/]+)/dns_records$")
BATCH_PATH = re.compile(r"^/zones/([^/]+)/dns_records/batch$")
RECORD_PATH = re.compile(r"^/zones/([^/]+)/dns_records/([^/]+)$")


class _Handler(BaseHTTPRequestHandler):
    emulator: CloudflareEmulator
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms delayed-ACK stall

    def log_message(self, *args):  # quiet: tests read the counters instead
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_DELETE(self):
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            body = self._body()
        except ValueError:
            self._send(400, ApiError(400, 6007, "Malformed JSON in request body").body())
            return
        if path.startswith(ADMIN_PREFIX):
            self._admin(method, path[len(ADMIN_PREFIX):], query, body)
            return
        if not path.startswith(API_PREFIX + "/"):
            self._send(404, ApiError(404, 7000, "No route for that URI").body())
            return
        path = path[len(API_PREFIX):]
        emulator = self.emulator
        emulator.count_request(method, path, parts.query)
        fault = emulator.take_fault(method, path)
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and fault.status and not fault.after_write:
            self._send_fault(fault)
            return
        if self.headers.get("Authorization", "") != f"Bearer {emulator.token}":
            self._send(403, auth_error().body())
            return
        try:
            status, payload = self._route(method, path, query, body)
        except ApiError as error:
            status, payload = error.status, error.body()
        if fault and fault.status:
            self._send_fault(fault)
            return
        self._send(status, payload)

    def _route(self, method: str, path: str, query: dict, body) -> tuple[int, dict]:
        emulator = self.emulator
        if path == "/zones" and method == "GET":
            zones, info = emulator.list_zones(query)
            return 200, _ok(zones, info)
        if match := ZONE_PATH.match(path):
            zone_id = self._zone(match.group(1))
            if method == "GET":
                return 200, _ok(copy.deepcopy(emulator.zones[zone_id]))
        elif match := RECORDS_PATH.match(path):
            zone_id = self._zone(match.group(1))
            if method == "GET":
                records, info = emulator.list_records(zone_id, query)
                return 200, _ok(records, info)
            if method == "POST":
                body = _object(body)
                return 200, _ok(emulator._write(
                    zone_id, lambda records: emulator._create(zone_id, records, body)
                ))
        elif match := BATCH_PATH.match(path):
            zone_id = self._zone(match.group(1))
            if method == "POST":
                body = _object(body)
                return 200, _ok(emulator._write(
                    zone_id, lambda records: emulator._batch(zone_id, records, body)
                ))
        elif match := RECORD_PATH.match(path):
            zone_id, record_id = self._zone(match.group(1)), match.group(2)
            if method == "GET":
                with emulator.lock:
                    records = emulator.dns[zone_id]
                    return 200, _ok(copy.deepcopy(records[emulator._index(records, record_id)]))
            if method == "DELETE":
                emulator._write(zone_id, lambda records: emulator._delete(records, record_id))
                return 200, _ok({"id": record_id})
            if method in ("PATCH", "PUT"):
                body = _object(body)
                change = emulator._patch if method == "PATCH" else emulator._put
                return 200, _ok(emulator._write(
                    zone_id, lambda records: change(zone_id, records, record_id, body)
                ))
        else:
            raise ApiError(404, 7003, f"Could not route to {path}, perhaps your object "
                                      "identifier is invalid?")
        raise ApiError(405, 10405, "Method not allowed for this route.")

    def _zone(self, zone_id: str) -> str:
        if zone_id not in self.emulator.zones:
            raise zone_not_found()
        return zone_id

    def _admin(self, method: str, path: str, query: dict, body) -> None:
        emulator = self.emulator
        try:
            if path == "/stats" and method == "GET":
                self._send(200, emulator.stats_dict())
            elif path == "/stats" and method == "DELETE":
                emulator.reset_stats()
                self._send(200, {"ok": True})
            elif path == "/faults" and method == "POST":
                fields = _object(body)
                allowed = ("method", "path", "status", "count", "retry_after", "delay",
                           "after_write")
                emulator.add_fault(**{k: v for k, v in fields.items() if k in allowed})
                self._send(200, {"ok": True})
            elif path == "/faults" and method == "DELETE":
                emulator.clear_faults()
                self._send(200, {"ok": True})
            elif path == "/zones" and method == "POST":
                self._send(200, {"id": emulator.add_zone(_object(body)["name"])})
            elif path == "/records" and method == "GET":
                self._send(200, emulator.records(query["zone"]))
            elif path == "/records" and method == "POST":
                fields = dict(_object(body))
                zone = fields.pop("zone")
                fields["rtype"] = fields.pop("type")
                self._send(200, emulator.add_record(zone, **fields))
            else:
                self._send(404, {"error": "unknown emulator endpoint"})
        except ApiError as error:
            self._send(error.status, error.body())
        except (KeyError, TypeError) as error:
            self._send(400, {"error": f"bad request: {error}"})

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        return json.loads(self.rfile.read(length))

    def _send_fault(self, fault: Fault) -> None:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        if fault.status == 429:
            error = ApiError(429, 971, "Please wait and consider throttling your request speed")
        else:
            error = ApiError(fault.status, 10001, "Internal server error (injected)")
        self._send(fault.status, error.body(), headers)

    def _send(self, status: int, payload, headers=None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def _ok(result, info: dict | None = None) -> dict:
    payload = {"success": True, "errors": [], "messages": [], "result": result}
    if info is not None:
        payload["result_info"] = info
    return payload


def _object(body) -> dict:
    if not isinstance(body, dict):
        raise ApiError(400, 9207, "Request body is invalid.")
    return body


class Rfc2136Mirror:
    """A write hook that copies the rrsets an emulator write changed into a DNS server.

    Use as ``CloudflareEmulator(..., on_write=Rfc2136Mirror(...))``; each call sends one
    TSIG-signed RFC 2136 update replacing (or deleting) every (name, type) that changed.
    """

    def __init__(self, server: str, port: int, zone: str, tsig_name: str, tsig_secret: str,
                 algorithm: str = "hmac-sha256", timeout: float = 5.0):
        import dns.tsigkeyring

        self.server, self.port, self.timeout = server, port, timeout
        self.zone = zone.rstrip(".").lower()
        self.keyring = dns.tsigkeyring.from_text({tsig_name: tsig_secret})
        self.algorithm = algorithm

    def __call__(self, zone: str, old_records: list[dict], new_records: list[dict]) -> None:
        if zone.rstrip(".").lower() != self.zone:
            return
        old, new = _rrsets(old_records), _rrsets(new_records)
        changed = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
        if changed:
            self.push({key: new.get(key) for key in changed})

    def push(self, rrsets: dict) -> None:
        """Send one update: ``{(name, type): (ttl, [rdata text]) or None to delete}``."""
        import dns.query
        import dns.rcode
        import dns.update

        update = dns.update.Update(self.zone + ".", keyring=self.keyring,
                                   keyalgorithm=self.algorithm)
        for (name, rtype), rrset in rrsets.items():
            if rrset is None:
                update.delete(name + ".", rtype)
            else:
                ttl, rdatas = rrset
                update.replace(name + ".", ttl, rtype, *rdatas)
        response = dns.query.tcp(update, self.server, port=self.port, timeout=self.timeout)
        if response.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"RFC 2136 update refused: {dns.rcode.to_text(response.rcode())}")


def _rrsets(records: list[dict]) -> dict:
    """Cloudflare records as {(name, type): (min ttl, sorted rdata texts)}."""
    from mailhost.records import quote_txt

    grouped: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        grouped.setdefault((record["name"], record["type"]), []).append(record)
    result = {}
    for key, group in grouped.items():
        rdatas = []
        for record in group:
            content, rtype = record["content"], record["type"]
            if rtype == "MX":
                content = f"{record['priority']} {content}."
            elif rtype in ("CNAME", "NS", "PTR"):
                content += "."
            elif rtype == "TXT" and not content.startswith('"'):
                content = quote_txt(content)
            rdatas.append(content)
        ttl = min(300 if r["ttl"] == 1 else r["ttl"] for r in group)
        result[key] = (ttl, sorted(rdatas))
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8787", help="HOST:PORT")
    parser.add_argument("--zone", action="append", default=[], help="zone to serve (repeat)")
    parser.add_argument("--token", default=os.environ.get("CLOUDFLARE_EMULATOR_TOKEN"),
                        help="API token to accept (or env CLOUDFLARE_EMULATOR_TOKEN)")
    parser.add_argument("--state", help="JSON file that keeps the state across restarts")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token (or CLOUDFLARE_EMULATOR_TOKEN) is required")
    host, _, port = args.listen.rpartition(":")
    emulator = CloudflareEmulator(
        args.token, zones=args.zone or ["example.test"], host=host or "127.0.0.1",
        port=int(port), state_file=args.state,
    )
    emulator.start()
    print(f"cloudflare emulator on {emulator.base_url} zones: "
          + ", ".join(z["name"] for z in emulator.zones.values()), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        emulator.stop()


if __name__ == "__main__":
    main()
