"""The ``cloudflare_world`` fixture: a Cloudflare emulator serving zone example.test.

Same interface as the other worlds the shared scenario tests run against:

- ``zone``; ``provider()`` / ``bad_provider()`` (good / wrong token);
- ``add_foreign(name, rtype, value, ttl=300)`` and ``remove_foreign(name, rtype, value)``
  change the zone behind the tool's back (values in records.py form: TXT unquoted, MX
  "prio target");
- ``snapshot()``: the whole zone as a frozenset of ``(name, rtype, ttl, value)`` tuples in
  records.py form; a proxied record is ``(name, rtype, ttl, value, "proxied")``.

Cloudflare-only extras: ``emulator`` (faults, stats, raw records) and
``set_proxied(name, rtype, value, proxied=True)``.
"""

from __future__ import annotations

import secrets

import pytest

from mailhost.lab.cloudflare_emulator import CloudflareEmulator
from mailhost.providers.cloudflare import CloudflareProvider
from mailhost.records import normalize_name, normalize_value, unquote_txt

ZONE = "example.test"


class CloudflareWorld:
    """An emulated Cloudflare account holding one zone, and providers that talk to it."""

    zone = ZONE

    def __init__(self, emulator: CloudflareEmulator, token: str):
        self.emulator = emulator
        self._token = token

    def provider(self, **options) -> CloudflareProvider:
        return CloudflareProvider(self._token, base_url=self.emulator.base_url, **options)

    def bad_provider(self, **options) -> CloudflareProvider:
        return CloudflareProvider(
            "wrong-" + secrets.token_hex(8), base_url=self.emulator.base_url, **options
        )

    def add_foreign(self, name: str, rtype: str, value: str, ttl: int = 300) -> None:
        rtype = rtype.upper()
        value = normalize_value(rtype, value)
        priority = None
        if rtype == "MX":
            priority, value = value.split()
            priority = int(priority)
        self.emulator.add_record(self.zone, normalize_name(name), rtype, value, ttl=ttl,
                                 priority=priority)

    def remove_foreign(self, name: str, rtype: str, value: str) -> None:
        for record in self._matching(name, rtype, value):
            self.emulator.delete_record(self.zone, record["id"])

    def set_proxied(self, name: str, rtype: str, value: str, proxied: bool = True) -> None:
        for record in self._matching(name, rtype, value):
            self.emulator.update_record(self.zone, record["id"], proxied=proxied)

    def snapshot(self) -> frozenset:
        return frozenset(_canonical(r) for r in self.emulator.records(self.zone))

    def _matching(self, name: str, rtype: str, value: str) -> list[dict]:
        wanted = (normalize_name(name), rtype.upper(), normalize_value(rtype.upper(), value))
        found = [r for r in self.emulator.records(self.zone) if _canonical(r)[:2] == wanted[:2]
                 and _canonical(r)[3] == wanted[2]]
        if not found:
            raise KeyError(f"no record {wanted} in {self.zone}")
        return found


def _canonical(record: dict) -> tuple:
    """An emulator record as (name, rtype, ttl, value[, "proxied"]) in records.py form."""
    rtype, content = record["type"], record["content"]
    if rtype == "MX":
        content = f"{record['priority']} {content}"
    elif rtype == "TXT":
        content = unquote_txt(content)
    row = (normalize_name(record["name"]), rtype, record["ttl"], normalize_value(rtype, content))
    return row + ("proxied",) if record["proxied"] else row


@pytest.fixture
def cloudflare_world(monkeypatch):
    """A fresh emulator on a free loopback port with zone example.test, stopped afterwards."""
    for variable in ("CLOUDFLARE_EMAIL", "CLOUDFLARE_API_KEY", "CLOUDFLARE_BASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    token = "lab-" + secrets.token_hex(16)
    emulator = CloudflareEmulator(token, zones=[ZONE]).start()
    try:
        yield CloudflareWorld(emulator, token)
    finally:
        emulator.stop()
