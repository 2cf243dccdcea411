"""PowerDNS Authoritative (Debian's pdns-server 4.7, sqlite3 backend) for the lab and tests.

``PowerDnsServer`` writes ``pdns.conf`` (0600: it holds the API key) and a fresh sqlite3
database into a work directory, loads each zone from zone-file text with ``pdnsutil``, runs
``pdns_server`` in the foreground as a child and stops it by its PID. Its HTTP API (what
lexicon's ``powerdns`` provider speaks) listens on ``api_address:api_port``; every zone is a
primary whose serial the API increases on each change (SOA-EDIT-API INCREASE), so the serial
counts the writes the API took (``writes``), and NOTIFYs go to ``notify`` (the lab's Knot,
which serves the zone to everyone else as its secondary).

Example::

    with PowerDnsServer({"example.test": minimal_zone("example.test")}) as pdns:
        print(pdns.api_url, pdns.port)  # http://127.0.0.1:PORT and the DNS port
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from lab.common import LabError, StartStop
from lab.knot import free_port

SCHEMA = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")
PDNS_SERVER, PDNSUTIL = "/usr/sbin/pdns_server", "/usr/bin/pdnsutil"


def api(api_url: str, api_key: str, method: str, path: str, body: dict | None = None):
    """One call to PowerDNS's HTTP API at API_URL (``path`` after /api/v1): the decoded JSON,
    or None; LabError (without the key) when it answers an error."""
    request = urllib.request.Request(
        f"{api_url}/api/v1{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"X-API-Key": api_key, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            data = response.read()
    except urllib.error.HTTPError as error:
        raise LabError(f"PowerDNS API {method} {path}: HTTP {error.code} "
                       f"{error.read()[:200]!r}") from None
    return json.loads(data) if data else None


def replace_rrset(api_url: str, api_key: str, zone: str, name: str, rtype: str, ttl: int,
                  contents: list[str]) -> None:
    """Set (or, with no CONTENTS, delete) one RRset of ZONE, contents in zone-file form."""
    change = {"name": name.rstrip(".") + ".", "type": rtype, "ttl": ttl,
              "changetype": "REPLACE" if contents else "DELETE",
              "records": [{"content": c, "disabled": False} for c in contents]}
    api(api_url, api_key, "PATCH", f"/servers/localhost/zones/{zone}.", {"rrsets": [change]})


class PowerDnsServer(StartStop):
    """One pdns_server serving ``zones`` ({zone: zone file text}) from sqlite3.

    + address, port: where it answers DNS (default 127.0.0.1, a free port)
    + api_address, api_port: its HTTP API (default: address, a free port)
    + api_key: the API's key (generated if omitted; never shown)
    + notify: "address:port" of secondaries to NOTIFY on every change (they may AXFR)
    + api_allow_from: networks allowed to use the API besides its own and loopback addresses
    + workdir: config, database and log (default: a temporary directory, removed by stop())
    """

    def __init__(self, zones: dict[str, str], address: str = "127.0.0.1",
                 port: int | None = None, api_address: str | None = None,
                 api_port: int | None = None, api_key: str | None = None,
                 notify: Sequence[str] = (), workdir: str | Path | None = None,
                 api_allow_from: Sequence[str] = ()):
        self.zones = {zone.rstrip(".").lower(): text for zone, text in zones.items()}
        self.address, self.port = address, port
        self.api_address, self.api_port = api_address or address, api_port
        self.api_key = api_key or secrets.token_urlsafe(24)
        self.notify = list(notify)
        self.api_allow_from = list(api_allow_from)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else None
        self.process: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.api_address}:{self.api_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "pdns.log"

    def config_text(self) -> str:
        allowed = sorted({f"{a}/32" if ":" not in a else f"{a}/128"
                          for a in ("127.0.0.1", self.address, self.api_address,
                                    *(n.rsplit(":", 1)[0] for n in self.notify))})
        return "\n".join([
            "launch=gsqlite3",
            f"gsqlite3-database={self.workdir / 'pdns.sqlite3'}",
            "gsqlite3-dnssec=yes",
            f"local-address={self.address}",
            f"local-port={self.port}",
            f"socket-dir={self.workdir}",
            "guardian=no", "daemon=no", "disable-syslog=yes", "loglevel=4",
            # primary (notifying Knot) only in the lab world: its communicator thread writes
            # to the database at start, and the API's first write could meet it there
            "primary=yes" if self.notify else "primary=no",
            f"allow-axfr-ips={','.join(allowed)}",
            f"also-notify={','.join(self.notify)}" if self.notify else "",
            "only-notify=",
            "api=yes",
            f"api-key={self.api_key}",
            "webserver=yes",
            f"webserver-address={self.api_address}",
            f"webserver-port={self.api_port}",
            f"webserver-allow-from={','.join([*allowed, *self.api_allow_from])}",
            "webserver-loglevel=none",
            "",
        ])

    def prepare(self) -> list[str]:
        """Write the config and the database with every zone; return the command line."""
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="pdns-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port([self.address])
        if self.api_port is None:
            self.api_port = free_port([self.api_address])
        config = self.workdir / "pdns.conf"
        descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(descriptor, "w") as file:
            file.write(self.config_text())
        database = self.workdir / "pdns.sqlite3"
        database.unlink(missing_ok=True)
        with sqlite3.connect(database) as connection:
            connection.executescript(SCHEMA.read_text())
        for zone, text in self.zones.items():
            path = self.workdir / f"{zone}.zone"
            path.write_text(text)
            self.pdnsutil("load-zone", zone, str(path))
            self.pdnsutil("set-kind", zone, "primary")
            self.pdnsutil("set-meta", zone, "SOA-EDIT-API", "INCREASE")
        return [PDNS_SERVER, f"--config-dir={self.workdir}"]

    def pdnsutil(self, *args: str) -> str:
        if not Path(PDNSUTIL).exists():
            raise LabError("pdnsutil not found: install the Debian packages pdns-server and "
                           "pdns-backend-sqlite3")
        result = subprocess.run([PDNSUTIL, f"--config-dir={self.workdir}", *args],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise LabError(f"pdnsutil {' '.join(args)} failed: "
                           f"{(result.stderr or result.stdout).strip()}")
        return result.stdout

    def start(self, timeout: float = 15.0) -> PowerDnsServer:
        command = self.prepare()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until it answers every zone's SOA and its API answers."""
        deadline = time.monotonic() + timeout
        while not (all(self._serves(zone) for zone in self.zones) and self._api_up()):
            if self.process is not None and self.process.poll() is not None:
                raise LabError(f"pdns_server exited with {self.process.returncode}: "
                               f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise LabError(f"pdns_server not ready within {timeout}s: {self.log_tail()}")
            time.sleep(0.1)

    def _serves(self, zone: str) -> bool:
        query = dns.message.make_query(zone + ".", dns.rdatatype.SOA)
        try:
            answer = dns.query.tcp(query, self.address, timeout=1.0, port=self.port)
        except (dns.exception.DNSException, OSError):
            return False
        return answer.rcode() == dns.rcode.NOERROR and bool(answer.answer)

    def _api_up(self) -> bool:
        try:
            self.api("GET", "/servers/localhost")
            return True
        except (OSError, LabError):
            return False

    def api(self, method: str, path: str, body: dict | None = None):
        """One call to the HTTP API (``path`` after /api/v1); the decoded JSON, or None. An
        error names what pdns_server logged last (why a 500 happened is only said there)."""
        try:
            return api(self.api_url, self.api_key, method, path, body)
        except LabError as error:
            try:
                logged = self.log_path.read_text(errors="replace").splitlines()[-5:]
            except OSError:
                logged = []
            raise LabError(f"{error}; pdns_server logged last: {' | '.join(logged)}") from None

    def zone(self, zone: str) -> dict:
        return self.api("GET", f"/servers/localhost/zones/{zone}.")

    def serial(self, zone: str) -> int:
        """The zone's SOA serial: the API increases it on every change it takes."""
        return int(self.zone(zone)["serial"])

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text().strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


ZONE = "example.test"
NAME_VALUES = ("MX", "SRV", "CNAME", "NS", "PTR", "DNAME")


def content_of(rtype: str, value: str) -> str:
    """A value in records.py form as PowerDNS's API content (zone-file form)."""
    from mailhost.dns.records import quote_txt

    if rtype == "TXT":
        return quote_txt(value)
    if rtype in NAME_VALUES:
        *head, target = value.split()
        return " ".join([*head, target.rstrip(".") + "."])
    return value


def value_of(rtype: str, content: str) -> str:
    """PowerDNS's API content as a value in records.py form."""
    from mailhost.dns.records import normalize_value, unquote_txt

    return normalize_value(rtype, unquote_txt(content) if rtype == "TXT" else content)


class PowerDnsWorld(StartStop):
    """A fresh pdns_server on loopback serving ``zone`` (SOA, NS, ns1 A and ``size`` filler
    A records), reached through lexicon's ``powerdns`` provider (the world interface of
    lab.worlds: provider, bad_provider, add_foreign, remove_foreign, clutter, snapshot,
    server_writes)."""

    kind = "lexicon"
    zone = ZONE

    def __init__(self, size: int = 0, workdir: str | Path | None = None):
        from lab.knot import filler_records, minimal_zone

        self.size = size
        self.server = PowerDnsServer(
            {self.zone: minimal_zone(self.zone) + filler_records(self.zone, size)},
            workdir=workdir)
        self._base = frozenset()

    def start(self) -> PowerDnsWorld:
        self.server.start(timeout=30)
        self._base = frozenset(self._rows())
        return self

    def stop(self) -> None:
        self.server.stop()

    def provider(self, api_key: str | None = None):
        from mailhost.zones.providers.lexicon import LexiconProvider

        return LexiconProvider("powerdns", {"pdns_server": self.server.api_url},
                               {"auth_token": api_key or self.server.api_key})

    def bad_provider(self):
        return self.provider(api_key="wrong-" + secrets.token_hex(8))

    def _rrsets(self) -> list[dict]:
        return self.server.zone(self.zone)["rrsets"]

    def _patch(self, name: str, rtype: str, ttl: int, contents: list[str]) -> None:
        replace_rrset(self.server.api_url, self.server.api_key, self.zone, name, rtype, ttl,
                      contents)

    def _contents(self, name: str, rtype: str) -> tuple[int | None, list[str]]:
        for rrset in self._rrsets():
            if rrset["name"].rstrip(".").lower() == name.rstrip(".").lower() and \
                    rrset["type"] == rtype:
                return rrset["ttl"], [r["content"] for r in rrset["records"]]
        return None, []

    def add_foreign(self, name: str, rtype: str, value: str, ttl: int = 300) -> None:
        """Add a value beside the set's others (an RRset has one TTL: this one)."""
        rtype = rtype.upper()
        _, contents = self._contents(name, rtype)
        self._patch(name, rtype, ttl, [*contents, content_of(rtype, value)])

    def remove_foreign(self, name: str, rtype: str, value: str) -> None:
        rtype = rtype.upper()
        ttl, contents = self._contents(name, rtype)
        kept = [c for c in contents if value_of(rtype, c) != value_of(rtype, value)]
        if len(kept) == len(contents):
            raise KeyError(f"no record {(name, rtype, value)} in {self.zone}")
        self._patch(name, rtype, ttl or 300, kept)

    def clutter(self) -> None:
        from lab.worlds import clutter_records

        sets: dict[tuple[str, str], tuple[int, list[str]]] = {}
        for name, rtype, value, ttl in clutter_records(self.zone):
            sets.setdefault((name, rtype), (ttl, []))[1].append(content_of(rtype, value))
        changes = [{"name": name + ".", "type": rtype, "ttl": ttl, "changetype": "REPLACE",
                    "records": [{"content": c, "disabled": False} for c in contents]}
                   for (name, rtype), (ttl, contents) in sets.items()]
        self.server.api("PATCH", f"/servers/localhost/zones/{self.zone}.", {"rrsets": changes})

    def snapshot(self) -> frozenset:
        return frozenset(self._rows()) - self._base

    def zone_bytes(self) -> bytes:
        """The whole zone as the API returns it, serial included."""
        return json.dumps(self.server.zone(self.zone), sort_keys=True).encode()

    def raw(self) -> frozenset:
        """Every record as PowerDNS holds it: (name, type, ttl, content as stored)."""
        return frozenset((r["name"], r["type"], r["ttl"], record["content"])
                         for r in self._rrsets() for record in r["records"]
                         if r["type"] != "SOA")

    def server_writes(self) -> int:
        """The SOA serial: the API increases it on every change it takes."""
        return self.server.serial(self.zone)

    def _rows(self):
        for rrset in self._rrsets():
            if rrset["type"] == "SOA":
                continue
            name = rrset["name"].rstrip(".").lower()
            for record in rrset["records"]:
                yield (name, rrset["type"], rrset["ttl"], value_of(rrset["type"],
                                                                   record["content"]))
