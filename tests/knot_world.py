"""pytest fixtures: a real Knot server holding one zone, seen through the shared world interface.

The scenario tests use ``knot_world`` exactly as they use the Cloudflare-emulator world:
``provider()``, ``bad_provider()``, ``add_foreign()``, ``remove_foreign()``, ``snapshot()``
and ``zone_bytes()``.
"""

from __future__ import annotations

import base64

import dns.name
import dns.query
import dns.rdatatype
import dns.tsig
import dns.update
import pytest

from mailhost.lab.knot import KNOTD, KnotServer, TsigKey, knot_program, minimal_zone
from mailhost.providers.rfc2136 import Rfc2136Provider, canonical, value_rdata
from mailhost.records import normalize_name, normalize_value


class KnotWorld:
    """A fresh Knot server with zone ``example.test``, and ways to look at it from outside."""

    zone = "example.test"

    def __init__(self, server: KnotServer):
        self.server = server
        key = server.key
        self._keyring = {dns.name.from_text(key.name): dns.tsig.Key(key.name, key.secret)}

    def provider(self) -> Rfc2136Provider:
        """A new provider with the right TSIG key."""
        key = self.server.key
        return Rfc2136Provider(
            self.server.address, self.server.port, key.name, key.secret, key.algorithm, timeout=5
        )

    def bad_provider(self) -> Rfc2136Provider:
        """A provider with the right key name but a wrong secret."""
        key = self.server.key
        wrong_secret = base64.b64encode(b"not the secret".ljust(32, b"!")).decode()
        return Rfc2136Provider(
            self.server.address, self.server.port, key.name, wrong_secret, key.algorithm, timeout=5
        )

    def add_foreign(self, name: str, rtype: str, value: str, ttl: int = 300) -> None:
        """Add one record behind the tool's back (TXT value unquoted)."""
        update = self._update()
        update.add(_absolute(name), ttl, value_rdata(rtype.upper(), value))
        self._send(update)

    def remove_foreign(self, name: str, rtype: str, value: str) -> None:
        """Remove one record behind the tool's back; KeyError when it is not there."""
        rtype, name = rtype.upper(), normalize_name(name)
        wanted = (name, rtype, normalize_value(rtype, value))
        if wanted not in {(n, t, v) for n, t, _, v in self.snapshot()}:
            raise KeyError(f"no record {wanted} in {self.zone}")
        update = self._update()
        update.delete(_absolute(name), value_rdata(rtype.upper(), value))
        self._send(update)

    def snapshot(self) -> frozenset:
        """Every RR but the SOA, as (name, rtype, ttl, value) in records.py conventions."""
        return frozenset(
            (normalize_name(rrset.name.to_text()), rtype, rrset.ttl, canonical(rtype, rdata))
            for rrset in self._transfer()
            if (rtype := dns.rdatatype.to_text(rrset.rdtype)) != "SOA"
            for rdata in rrset
        )

    def zone_bytes(self) -> bytes:
        """The whole zone as AXFR'd, SOA serial included, as text."""
        return "\n".join(rrset.to_text() for rrset in self._transfer()).encode()

    def _transfer(self):
        return [
            rrset
            for message in dns.query.xfr(
                self.server.address,
                self.zone,
                port=self.server.port,
                keyring=self._keyring,
                relativize=False,
                timeout=5,
            )
            for rrset in message.answer
        ]

    def _update(self) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(self.zone + ".", keyring=self._keyring)

    def _send(self, update: dns.update.UpdateMessage) -> None:
        answer = dns.query.tcp(update, self.server.address, port=self.server.port, timeout=5)
        assert answer.rcode() == 0, f"foreign update failed: {answer.rcode()!r}"


def _absolute(name: str) -> dns.name.Name:
    return dns.name.from_text(normalize_name(name) + ".")


@pytest.fixture(scope="session")
def knot_binary() -> str:
    """The knotd path; fails (never skips) when Knot is not installed."""
    path = knot_program(KNOTD)
    assert path, "knotd not found: apt-get install knot knot-dnsutils"
    return path


@pytest.fixture
def knot_world(knot_binary, tmp_path) -> KnotWorld:
    """A fresh Knot on 127.0.0.1 (free port) serving example.test with a TSIG key."""
    zones = {KnotWorld.zone: minimal_zone(KnotWorld.zone)}
    with KnotServer(zones, key=TsigKey.generate("mailhost-test"), workdir=tmp_path) as server:
        yield KnotWorld(server)
