"""The DNS worlds: a real Knot server and the Cloudflare emulator, each holding one zone.

The tests (through thin pytest fixtures) and ``scripts/bench_dns.py`` use them alike:

- ``zone``, ``kind``; ``start()``/``stop()`` (or ``with``);
- ``provider()`` / ``bad_provider()`` (right / wrong credentials);
- ``add_foreign(name, rtype, value, ttl=300)`` and ``remove_foreign(name, rtype, value)``
  change the zone behind the tool's back (values in records.py form: TXT unquoted, MX
  "prio target", CAA ``0 issue "ca.example"``);
- ``snapshot()``: every record but the SOA (and, on Knot, the apex NS and its address) as a
  frozenset of ``(name, rtype, ttl, value)``; a proxied Cloudflare record is
  ``(name, rtype, ttl, value, "proxied")``;
- ``server_writes()``: a number that moves when the server accepts a write;
- ``clutter()``: what a real domain holds before it gets a mail host (see CLUTTER).

Run ``python -m lab.worlds serve-emulator SIZE`` to serve an emulator with SIZE
filler records in a process of its own (the benchmark does); the token comes from the
environment variable CLOUDFLARE_EMULATOR_TOKEN and the base URL is printed on stdout.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import urllib.request

import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.tsig
import dns.update

from lab.cloudflare.emulator import CloudflareEmulator
from lab.common import StartStop
from lab.knot import KnotServer, TsigKey, filler_records, minimal_zone
from mailhost.dns.records import normalize_name, normalize_value
from mailhost.zones.providers.cloudflare import CloudflareProvider, record_value
from mailhost.zones.providers.rfc2136 import Rfc2136Provider, canonical, value_rdata

ZONE = "example.test"
# The host data of one mail host serving ZONE, as an inventory gives it (tests, benchmark).
SAMPLE_HOST = {
    "mail_hostname": "mail.example.test",
    "mail_domains": ["example.test"],
    "ipv4": "198.51.100.10",
    "ipv6": "2001:db8::10",
    "dns_provider": "rfc2136",
    "dns_server": "127.0.0.1",
    "dns_tsig_key_name": "mailhost",
    "dmarc_policy": "quarantine",
    "dmarc_rua": ["mailto:dmarc@example.test"],
    "tlsrpt_rua": ["mailto:tlsrpt@example.test"],
    "caa_issuers": ["letsencrypt.org"],
    "lab_allowances": True,  # documentation addresses (198.51.100.0/24, 2001:db8::/32)
}
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")

# A zone as most domains hold it before they get a mail host: a website (A, AAAA, www CNAME,
# a wildcard), site verifications and a newsletter sender's SPF in the apex TXT set, another
# provider's MX and DKIM CNAME, SRV records, another CA in CAA, records at other subdomains.
# One record a line as a zone file writes it: name relative to the zone ("@" for the apex),
# TTL, type, value in records.py form ("{zone}" stands for the zone).
CLUTTER_LINES = """
@                 3600 A     198.51.100.80
@                 3600 AAAA  2001:db8::80
www               3600 CNAME {zone}
*                 3600 A     198.51.100.80
@                 3600 TXT   google-site-verification=Xk2v9Q
@                 3600 TXT   v=spf1 include:spf.newsletter.example -all
@                 3600 MX    20 mx.oldprovider.example
news._domainkey   3600 CNAME news.dkim.newsletter.example
_sip._tcp         3600 SRV   10 5 5060 sip.{zone}
@                 3600 CAA   0 issue "sectigo.com"
shop               600 A     198.51.100.82
blog               600 TXT   v=spf1 -all
"""


def parse_records(lines: str) -> tuple[tuple[str, str, str, int], ...]:
    """Lines of "name TTL type value" as (name, type, value, TTL) tuples."""
    records = []
    for line in lines.strip().splitlines():
        name, ttl, rtype, value = line.split(maxsplit=3)
        records.append((name, rtype, value, int(ttl)))
    return tuple(records)


# (name relative to the zone, "@" for the apex; type; value in records.py form; TTL)
CLUTTER = parse_records(CLUTTER_LINES)


def clutter_records(zone: str = ZONE) -> list[tuple[str, str, str, int]]:
    """CLUTTER for ``zone``: absolute names, values filled in."""
    rows = []
    for name, rtype, value, ttl in CLUTTER:
        absolute = zone if name == "@" else f"{name}.{zone}"
        rows.append((absolute, rtype, normalize_value(rtype, value.format(zone=zone)), ttl))
    return rows


class KnotWorld(StartStop):
    """A fresh knotd on loopback serving ``zone``: SOA, NS, ns1 A and ``size`` filler A
    records, with a TSIG key allowed to update and transfer it."""

    kind = "rfc2136"
    zone = ZONE

    def __init__(self, size: int = 0, workdir: str | None = None, io_timeout_ms: int = 0):
        self.size = size
        text = minimal_zone(self.zone) + filler_records(self.zone, size)
        self.server = _KnotServer({self.zone: text}, key=TsigKey.generate("mailhost-test"),
                                  workdir=workdir)
        self.server.io_timeout_ms = io_timeout_ms
        key = self.server.key
        self._keyring = {dns.name.from_text(key.name): dns.tsig.Key(key.name, key.secret)}
        self._base = frozenset()

    def start(self) -> KnotWorld:
        self.server.start(timeout=30)
        self._base = frozenset(self._rows())  # the NS and its address are not the tests'
        return self

    def stop(self) -> None:
        self.server.stop()

    def provider(self, timeout: float = 10) -> Rfc2136Provider:
        key = self.server.key
        return Rfc2136Provider(self.server.address, self.server.port, key.name, key.secret,
                               key.algorithm, timeout=timeout)

    def bad_provider(self) -> Rfc2136Provider:
        """The right key name with a wrong secret."""
        key = self.server.key
        wrong = base64.b64encode(b"not the secret".ljust(32, b"!")).decode()
        return Rfc2136Provider(self.server.address, self.server.port, key.name, wrong,
                               key.algorithm, timeout=5)

    def add_foreign(self, name: str, rtype: str, value: str, ttl: int = 300) -> None:
        update = self._update()
        update.add(_absolute(name), ttl, value_rdata(rtype.upper(), value))
        self._send(update)

    def remove_foreign(self, name: str, rtype: str, value: str) -> None:
        rtype, name = rtype.upper(), normalize_name(name)
        wanted = (name, rtype, normalize_value(rtype, value))
        if wanted not in {(n, t, v) for n, t, _, v in self.snapshot()}:
            raise KeyError(f"no record {wanted} in {self.zone}")
        update = self._update()
        update.delete(_absolute(name), value_rdata(rtype, value))
        self._send(update)

    def clutter(self) -> None:
        """Add CLUTTER in one update."""
        update = self._update()
        for name, rtype, value, ttl in clutter_records(self.zone):
            update.add(_absolute(name), ttl, value_rdata(rtype, value))
        self._send(update)

    def snapshot(self) -> frozenset:
        return frozenset(self._rows()) - self._base

    def zone_bytes(self) -> bytes:
        """The whole zone as transferred, SOA serial included, as text."""
        return "\n".join(rrset.to_text() for rrset in self._transfer()).encode()

    def server_writes(self) -> int:
        """The SOA serial: every accepted update bumps it."""
        query = dns.message.make_query(self.zone + ".", dns.rdatatype.SOA)
        answer = dns.query.tcp(query, self.server.address, port=self.server.port, timeout=5)
        return answer.answer[0][0].serial

    def _rows(self):
        for rrset in self._transfer():
            rtype = dns.rdatatype.to_text(rrset.rdtype)
            if rtype == "SOA":
                continue
            for rdata in rrset:
                yield (normalize_name(rrset.name.to_text()), rtype, rrset.ttl,
                       canonical(rtype, rdata))

    def _transfer(self):
        return [
            rrset
            for message in dns.query.xfr(self.server.address, self.zone, port=self.server.port,
                                         keyring=self._keyring, relativize=False, timeout=10)
            for rrset in message.answer
        ]

    def _update(self) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(self.zone + ".", keyring=self._keyring)

    def _send(self, update: dns.update.UpdateMessage) -> None:
        answer = dns.query.tcp(update, self.server.address, port=self.server.port, timeout=5)
        if answer.rcode() != 0:
            raise RuntimeError(f"update behind the tool's back failed: {answer.rcode()!r}")


class _KnotServer(KnotServer):
    """KnotServer with an optional longer TCP I/O timeout.

    knotd drops a TCP connection whose peer lags more than ``tcp-io-timeout`` (500 ms by
    default) behind: a Python client that parses and verifies an AXFR of 10,000 records
    (octoDNS in the benchmark) sometimes lags that much.
    """

    io_timeout_ms = 0

    def config_text(self) -> str:
        text = super().config_text()
        if self.io_timeout_ms:
            text = text.replace("server:\n", f"server:\n  tcp-io-timeout: {self.io_timeout_ms}\n",
                                1)
        return text


def _absolute(name: str) -> dns.name.Name:
    return dns.name.from_text(normalize_name(name) + ".")


class CloudflareWorld(StartStop):
    """An emulated Cloudflare account holding ``zone`` (and ``size`` filler A records).

    In this process by default (``emulator`` is then reachable for faults and raw records);
    with ``own_process=True`` in a child process, so that its CPU is not counted in ours.
    """

    kind = "cloudflare"
    zone = ZONE

    def __init__(self, size: int = 0, own_process: bool = False):
        self.size = size
        self.own_process = own_process
        self.token = "lab-" + secrets.token_hex(16)
        self.emulator: CloudflareEmulator | None = None
        self.process: subprocess.Popen | None = None
        self.base_url = ""

    def start(self) -> CloudflareWorld:
        if self.own_process:
            env = {k: v for k, v in os.environ.items()
                   if k not in ("CLOUDFLARE_EMAIL", "CLOUDFLARE_API_KEY", "CLOUDFLARE_BASE_URL")}
            env["CLOUDFLARE_EMULATOR_TOKEN"] = self.token
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lab.worlds", "serve-emulator", str(self.size)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
            )
            line = self.process.stdout.readline().strip()
            if not line.startswith("http://"):
                self.stop()
                raise RuntimeError(f"the Cloudflare emulator did not start: {line!r}")
            self.base_url = line
        else:
            self.emulator = seeded_emulator(self.token, self.size).start()
            self.base_url = self.emulator.base_url
        return self

    def stop(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None
        if self.process is not None:
            try:
                self.process.stdin.close()  # the child stops its server and exits on EOF
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.terminate()  # by its PID
                self.process.wait()
            self.process = None

    def provider(self, **options) -> CloudflareProvider:
        return CloudflareProvider(self.token, base_url=self.base_url, **options)

    def bad_provider(self, **options) -> CloudflareProvider:
        return CloudflareProvider("wrong-" + secrets.token_hex(8), base_url=self.base_url,
                                  **options)

    def add_foreign(self, name: str, rtype: str, value: str, ttl: int = 300) -> None:
        self.emulator.add_record(self.zone, **api_body(name, rtype, value, ttl))

    def remove_foreign(self, name: str, rtype: str, value: str) -> None:
        for record in self._matching(name, rtype, value):
            self.emulator.delete_record(self.zone, record["id"])

    def set_proxied(self, name: str, rtype: str, value: str, proxied: bool = True) -> None:
        for record in self._matching(name, rtype, value):
            self.emulator.update_record(self.zone, record["id"], proxied=proxied)

    def clutter(self) -> None:
        self.emulator.add_records(self.zone, [
            _as_api_fields(api_body(*row)) for row in clutter_records(self.zone)
        ])

    def snapshot(self) -> frozenset:
        return frozenset(_row(r) for r in self.emulator.records(self.zone))

    def server_writes(self) -> int:
        """Write requests (POST/PUT/PATCH/DELETE) the emulator has served so far."""
        admin = self.base_url.split("/client/v4")[0] + "/__emulator/stats"
        with urllib.request.urlopen(admin, timeout=10) as response:
            stats = json.load(response)
        return sum(stats["requests"].get(method, 0) for method in WRITE_METHODS)

    def _matching(self, name: str, rtype: str, value: str) -> list[dict]:
        wanted = (normalize_name(name), rtype.upper(), normalize_value(rtype.upper(), value))
        found = [r for r in self.emulator.records(self.zone)
                 if (_row(r)[0], _row(r)[1], _row(r)[3]) == wanted]
        if not found:
            raise KeyError(f"no record {wanted} in {self.zone}")
        return found


def api_body(name: str, rtype: str, value: str, ttl: int = 300) -> dict:
    """A value in records.py form as the keyword arguments of CloudflareEmulator.add_record,
    written the way a Cloudflare user would type it (TXT content unquoted, CAA as data)."""
    rtype = rtype.upper()
    value = normalize_value(rtype, value)
    body = {"name": normalize_name(name), "rtype": rtype, "content": value, "ttl": ttl}
    if rtype == "MX":
        priority, target = value.split()
        body.update(priority=int(priority), content=target)
    elif rtype == "CAA":
        flags, tag, caa_value = value.split(None, 2)
        body.pop("content")
        body["data"] = {"flags": int(flags), "tag": tag, "value": caa_value.strip('"')}
    return body


def _as_api_fields(body: dict) -> dict:
    fields = dict(body)
    fields["type"] = fields.pop("rtype")
    return fields


def _row(record: dict) -> tuple:
    """An emulator record as (name, rtype, ttl, value[, "proxied"]) in records.py form."""
    rtype = record["type"]
    value = record_value(rtype, record.get("content"), record.get("priority"), record.get("data"))
    row = (normalize_name(record["name"]), rtype, record["ttl"], normalize_value(rtype, value))
    return row + ("proxied",) if record["proxied"] else row


def seeded_emulator(token: str, size: int) -> CloudflareEmulator:
    """An emulator holding ZONE with ``size`` filler A records (not started)."""
    emulator = CloudflareEmulator(token, zones=[ZONE])
    if size:
        emulator.add_records(ZONE, [
            {"name": f"filler-{i:05d}.{ZONE}", "type": "A",
             "content": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "ttl": 300}
            for i in range(size)
        ])
    return emulator


def _serve_emulator(size: int) -> None:
    """Child process: serve a seeded emulator until stdin closes."""
    emulator = seeded_emulator(os.environ["CLOUDFLARE_EMULATOR_TOKEN"], size).start()
    print(emulator.base_url, flush=True)
    sys.stdin.read()
    emulator.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve-emulator"]:
        _serve_emulator(int(sys.argv[2]))
    else:
        sys.exit("usage: python -m lab.worlds serve-emulator SIZE")
