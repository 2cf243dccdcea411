"""The ``powerdns_world`` fixture: a fresh PowerDNS Authoritative (sqlite3) serving
example.test, reached through dns-lexicon's powerdns provider (lab.powerdns)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.powerdns import PDNS_SERVER, PowerDnsWorld


@pytest.fixture
def powerdns_world(tmp_path):
    assert Path(PDNS_SERVER).exists(), \
        "pdns_server not found: apt-get install pdns-server pdns-backend-sqlite3"
    with PowerDnsWorld(workdir=tmp_path / "pdns") as world:
        yield world
