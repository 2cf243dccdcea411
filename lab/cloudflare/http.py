"""The Cloudflare emulator's HTTP layer: API v4 routes over the state, and the admin routes.

``/client/v4/zones`` (GET, ``?name=``), ``/client/v4/zones/ID``,
``/client/v4/zones/ID/dns_records`` (GET list with filters and pages, POST),
``/client/v4/zones/ID/dns_records/ID`` (GET, PATCH, PUT, DELETE) and
``/client/v4/zones/ID/dns_records/batch`` (POST), ``/client/v4/zones/ID/dnssec`` (GET);
``/__emulator/...`` (stats, faults, seeding, DNSSEC status; no auth, loopback only). The
request handler is ``CloudflareHandler``.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from lab.cloudflare.state import (
    ADMIN_PREFIX,
    API_PREFIX,
    ApiError,
    CloudflareState,
    Fault,
    auth_error,
    zone_not_found,
)

ZONE_PATH = re.compile(r"^/zones/([^/]+)$")
RECORDS_PATH = re.compile(r"^/zones/([^/]+)/dns_records$")
BATCH_PATH = re.compile(r"^/zones/([^/]+)/dns_records/batch$")
RECORD_PATH = re.compile(r"^/zones/([^/]+)/dns_records/([^/]+)$")
DNSSEC_PATH = re.compile(r"^/zones/([^/]+)/dnssec$")


class CloudflareHandler(BaseHTTPRequestHandler):
    """One request: auth, faults, then the route."""

    emulator: CloudflareState
    visible: frozenset[str] | None = None  # the zones the request's token may see (None: all)
    token = ""  # the request's API token
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
        authorization = self.headers.get("Authorization", "")
        try:
            if not authorization.startswith("Bearer "):
                raise auth_error()
            self.token = authorization[len("Bearer "):]
            self.visible = emulator.zones_of_token(self.token)
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
            zones, info = emulator.list_zones(query, self.visible)
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
        elif match := DNSSEC_PATH.match(path):
            zone_id = self._zone(match.group(1))
            if method == "GET":
                return 200, _ok(emulator.get_dnssec(zone_id, self.token))
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
        if self.visible is not None and self.emulator.zones[zone_id]["name"] not in self.visible:
            raise ApiError(403, 9109, "Unauthorized to access requested resource")
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
            elif path == "/dnssec" and method == "POST":
                fields = _object(body)
                self._send(200, emulator.set_dnssec(fields["zone"], fields["status"],
                                                    fields.get("ds")))
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
        except (KeyError, TypeError, ValueError) as error:
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




def serve(state: CloudflareState, host: str, port: int):
    """Serve ``state`` on host:port in a daemon thread; return the server (port 0: any)."""
    handler = type("Handler", (CloudflareHandler,), {"emulator": state})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    return server
