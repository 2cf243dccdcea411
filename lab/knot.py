"""A real Knot DNS server (knotd 3.2) for the lab, the tests and the benchmark.

``KnotServer`` writes a block-style YAML config (Knot 3.2 refuses flow-style maps) into a
work directory, runs ``knotd`` in the foreground as a child process and stops it by its PID.
Every zone accepts RFC 2136 updates and AXFR signed with one TSIG key; changes are kept in
the journal only (``zonefile-sync: -1``, ``journal-content: all``), so zone files are never
rewritten.

Example::

    key = TsigKey.generate("mailhost")
    zone_text = minimal_zone("example.test") + filler_records("example.test", 10_000)
    with KnotServer({"example.test": zone_text}, key=key) as knot:
        print(knot.address, knot.port)   # 127.0.0.1 and a free port

For the lab: ``KnotServer(zones, listen=["198.51.100.1", "2001:db8::1"], port=53)``.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dns.dnssec
import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.dnskeybase

from lab.common import StartStop

KNOTD = "knotd"
KNOTC = "knotc"
SIGNING_POLICY = "lab-signing"


def knot_program(name: str) -> str | None:
    """Full path of a Knot program (``knotd``, ``knotc``); sbin may be missing from PATH."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


class KnotError(Exception):
    """knotd could not be started or did not answer."""


@dataclass(frozen=True)
class TsigKey:
    """A TSIG key as Knot and dnspython need it. ``secret`` is base64 and never shown."""

    name: str
    secret: str = field(repr=False)
    algorithm: str = "hmac-sha256"

    @classmethod
    def generate(cls, name: str = "mailhost", algorithm: str = "hmac-sha256") -> TsigKey:
        """A new key with a random 256-bit secret."""
        return cls(name, base64.b64encode(secrets.token_bytes(32)).decode(), algorithm)


def minimal_zone(zone: str, ns_address: str = "127.0.0.1", serial: int = 1, ttl: int = 300) -> str:
    """Zone file text with just an SOA, one NS ``ns1.<zone>`` and its A record."""
    origin = zone.rstrip(".") + "."
    return (
        f"$ORIGIN {origin}\n"
        f"$TTL {ttl}\n"
        f"@ IN SOA ns1.{origin} hostmaster.{origin} {serial} 3600 600 604800 {ttl}\n"
        f"@ IN NS ns1.{origin}\n"
        f"ns1 IN A {ns_address}\n"
    )


def filler_records(zone: str, count: int, prefix: str = "filler") -> str:
    """Zone file lines for ``count`` unrelated A records, to append to a zone before start.

    Loading them from the zone file takes well under a second even for 10,000 records,
    where sending them as updates would take far longer.
    """
    origin = zone.rstrip(".") + "."
    return "".join(
        f"{prefix}-{i:05d}.{origin} 300 IN A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n"
        for i in range(count)
    )


def free_port(addresses: Sequence[str] = ("127.0.0.1",)) -> int:
    """A port free for both UDP and TCP on every address (the OS picks it on the first)."""
    for _ in range(50):
        with socket.socket(_family(addresses[0]), socket.SOCK_STREAM) as probe:
            probe.bind((addresses[0], 0))
            port = probe.getsockname()[1]
        if all(_port_free(address, port) for address in addresses):
            return port
    raise KnotError(f"no free port found on {', '.join(addresses)}")


def _port_free(address: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(_family(address), kind) as probe:
            try:
                probe.bind((address, port))
            except OSError:
                return False
    return True


def zone_ds(address: str, zone: str, port: int = 53, timeout: float = 10.0) -> list[str]:
    """The DS (SHA-256) of each key-signing DNSKEY ``zone`` serves at ADDRESS, as text; waits
    (up to ``timeout``) until the signer has published them."""
    origin = dns.name.from_text(zone)
    deadline = time.monotonic() + timeout
    while True:
        query = dns.message.make_query(origin, dns.rdatatype.DNSKEY, want_dnssec=True)
        try:
            answer = dns.query.tcp(query, address, timeout=2.0, port=port)
        except (dns.exception.DNSException, OSError):
            answer = None
        keys = answer.get_rrset(answer.answer, origin, dns.rdataclass.IN,
                                dns.rdatatype.DNSKEY) if answer else None
        anchors = [dns.dnssec.make_ds(origin, key, "SHA256").to_text()
                   for key in keys or () if key.flags & dns.rdtypes.dnskeybase.Flag.SEP]
        if anchors:
            return anchors
        if time.monotonic() > deadline:
            raise KnotError(f"{zone} has no key-signing DNSKEY at {address}@{port}")
        time.sleep(0.1)


def _program(name: str) -> str:
    path = knot_program(name)
    if path is None:
        raise KnotError(f"{name} not found: install the Debian package knot")
    return path


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


class KnotServer(StartStop):
    """One knotd process serving ``zones`` ({zone name: zone file text}) with one TSIG key.

    + zones: zone name -> zone file text (see ``minimal_zone`` and ``filler_records``)
    + key: the TSIG key allowed to update and transfer every zone (generated if omitted)
    + acme_key: a second key that may only add and delete TXT records at ``acme_names``
      (absolute ``_acme-challenge.NAME.`` names): the least a DNS-01 client needs
    + listen: addresses to listen on, IPv4 and/or IPv6 (default 127.0.0.1)
    + port: one port for every address (default: a free one; 53 needs root or CAP_NET_BIND)
    + workdir: where config, zone files, journal and log go (default: a temporary directory,
      removed by stop())
    + command_prefix: run knotd through this, e.g. ``["ip", "netns", "exec", "lab"]``; the
      prefix must exec knotd so that the PID stays knotd's
    + signed_zones: zones Knot signs with DNSSEC (policy ``SIGNING_POLICY``: one ECDSA P-256
      key per zone, never rolled, NSEC); an RFC 2136 update to them is signed as it lands
    + primaries: zone -> "address@port" of another server whose zone Knot serves as its
      secondary (AXFR on its NOTIFY, signed here when in ``signed_zones``): no zone file
    """

    def __init__(
        self,
        zones: dict[str, str],
        key: TsigKey | None = None,
        listen: Sequence[str] = ("127.0.0.1",),
        port: int | None = None,
        workdir: str | Path | None = None,
        command_prefix: Sequence[str] = (),
        acme_key: TsigKey | None = None,
        acme_names: Sequence[str] = (),
        signed_zones: Sequence[str] = (),
        primaries: dict[str, str] | None = None,
    ):
        self.zones = {zone.rstrip(".").lower(): text for zone, text in zones.items()}
        self.key = key or TsigKey.generate()
        self.acme_key, self.acme_names = acme_key, list(acme_names)
        self.signed_zones = {zone.rstrip(".").lower() for zone in signed_zones}
        self.primaries = {zone.rstrip(".").lower(): where
                          for zone, where in (primaries or {}).items()}
        self.listen = list(listen)
        self.port = port
        self.command_prefix = list(command_prefix)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else None
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        """The first listen address: where clients should send queries."""
        return self.listen[0]

    @property
    def config_path(self) -> Path:
        return self.workdir / "knot.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "knotd.log"

    def config_text(self) -> str:
        """The knotd config, in block style."""
        listen = ", ".join(f"{address}@{self.port}" for address in self.listen)
        acls = "[ update-transfer, acme-challenge ]" if self.acme_key else "update-transfer"
        if self.primaries:
            acls = acls.rstrip(" ]").lstrip("[ ").split(", ") + ["primary-notify"]
            acls = f"[ {', '.join(acls)} ]"
        zones = "".join(f"  - domain: {zone}\n    acl: {acls}\n"
                        + (f"    master: primary-{zone}\n" if zone in self.primaries else "")
                        + (f"    dnssec-signing: on\n    dnssec-policy: {SIGNING_POLICY}\n"
                           if zone in self.signed_zones else "")
                        for zone in self.zones)
        remotes = "".join(f"  - id: primary-{zone}\n    address: {where}\n"
                          for zone, where in self.primaries.items())
        remotes = f"remote:\n{remotes}" if remotes else ""
        notify_acl = "".join(
            f"  - id: primary-notify\n    address: [ {', '.join(sorted(addresses))} ]\n"
            "    action: notify\n"
            for addresses in [{w.split('@')[0] for w in self.primaries.values()}] if addresses)
        policy = ("policy:\n"
                  f"  - id: {SIGNING_POLICY}\n"
                  "    algorithm: ecdsap256sha256\n"
                  "    single-type-signing: on\n"  # one key (CSK): its DS is the anchor
                  "    ksk-lifetime: 0\n"
                  "    zsk-lifetime: 0\n") if self.signed_zones else ""
        acme_key, acme_acl = "", ""
        if self.acme_key:
            acme_key = (f"  - id: {self.acme_key.name}\n"
                        f"    algorithm: {self.acme_key.algorithm}\n"
                        f"    secret: {self.acme_key.secret}\n")
            acme_acl = ("  - id: acme-challenge\n"
                        f"    key: {self.acme_key.name}\n"
                        "    action: update\n"
                        "    update-type: [ TXT ]\n"
                        "    update-owner: name\n"
                        "    update-owner-match: equal\n"
                        f"    update-owner-name: [ {', '.join(self.acme_names)} ]\n")
        return (
            "server:\n"
            f'  rundir: "{self.workdir / "run"}"\n'
            f"  listen: [ {listen} ]\n"
            "  tcp-io-timeout: 10000\n"  # 500 ms default drops AXFRs to a slow Python client
            "log:\n"
            "  - target: stderr\n"
            "    any: info\n"
            "database:\n"
            f'  storage: "{self.workdir / "db"}"\n'
            "key:\n"
            f"  - id: {self.key.name}\n"
            f"    algorithm: {self.key.algorithm}\n"
            f"    secret: {self.key.secret}\n"
            + acme_key
            + "acl:\n"
            "  - id: update-transfer\n"
            f"    key: {self.key.name}\n"
            "    action: [ update, transfer ]\n"
            + acme_acl
            + notify_acl
            + remotes
            + policy
            + "template:\n"
            "  - id: default\n"
            f'    storage: "{self.workdir / "zones"}"\n'
            '    file: "%s.zone"\n'
            "    zonefile-sync: -1\n"
            "    journal-content: all\n"
            "zone:\n" + zones
        )

    @property
    def pid(self) -> int | None:
        """knotd's PID while start() has it running."""
        return self.process.pid if self.process else None

    def prepare(self) -> list[str]:
        """Write the config and zone files; return the knotd command line.

        start() uses it; a caller that runs knotd its own way (detached, recording the PID)
        can run this command itself, then call wait_ready().
        """
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="knot-"))
        if self.port is None:
            self.port = free_port(self.listen)
        for sub in ("run", "db", "zones"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        for zone, text in self.zones.items():
            if zone not in self.primaries:  # a secondary's zone comes by AXFR
                (self.workdir / "zones" / f"{zone}.zone").write_text(text)
        # 0600 from the start: the config holds the TSIG secret
        config = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(config, "w") as file:
            file.write(self.config_text())
        return [*self.command_prefix, _program(KNOTD), "--config", str(self.config_path)]

    def start(self, timeout: float = 10.0) -> KnotServer:
        """Write the config and zone files, start knotd, wait until it serves every zone."""
        if self.process is not None:
            raise KnotError("knotd is already running")
        command = self.prepare()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until every listen address answers an SOA query for every zone."""
        deadline = time.monotonic() + timeout
        waiting = [(address, zone) for address in self.listen for zone in self.zones]
        while waiting:
            if self.process and self.process.poll() is not None:
                raise KnotError(f"knotd exited with {self.process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise KnotError(
                    f"knotd did not serve {waiting[0][1]} at {waiting[0][0]}@{self.port} "
                    f"within {timeout}s: {self.log_tail()}"
                )
            waiting = [(a, z) for a, z in waiting if not self._serves(a, z)]
            if waiting:
                time.sleep(0.05)

    def _serves(self, address: str, zone: str) -> bool:
        query = dns.message.make_query(zone + ".", dns.rdatatype.SOA)
        try:
            # TCP: a port not yet bound is refused at once, where UDP would wait for a timeout
            answer = dns.query.tcp(query, address, timeout=1.0, port=self.port)
        except (dns.exception.DNSException, OSError):
            return False
        return answer.rcode() == dns.rcode.NOERROR and bool(answer.answer)

    def trust_anchors(self, timeout: float = 10.0) -> dict[str, list[str]]:
        """Each signed zone's DS records (text), made from its DNSKEYs with the SEP flag as
        served: what a validating resolver is given where no parent publishes the DS."""
        return {zone: zone_ds(self.address, zone, self.port, timeout)
                for zone in sorted(self.signed_zones)}

    def log_tail(self, lines: int = 5) -> str:
        """knotd's warnings and errors, else its last log lines (the log holds no secret)."""
        try:
            log = self.log_path.read_text().strip().splitlines()
        except OSError:
            return "(no log)"
        problems = [line for line in log if " warning: " in line or " error: " in line]
        return " | ".join((problems or log)[-lines:])

    def knotc(self, *args: str) -> str:
        """Run ``knotc`` against this server, e.g. ``knotc("zone-read", "example.test")``."""
        result = subprocess.run(
            [*self.command_prefix, _program(KNOTC), "--config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            output = (result.stderr + result.stdout).strip()  # knotc reports errors on stdout
            raise KnotError(f"knotc {' '.join(args)} failed: {output}")
        return result.stdout

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate knotd by its PID, wait for it, and remove a temporary work directory."""
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
