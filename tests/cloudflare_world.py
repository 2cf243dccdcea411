"""The ``cloudflare_world`` fixture: the Cloudflare emulator serving example.test, in this
process (lab.worlds)."""

from __future__ import annotations

import pytest

from lab.worlds import CloudflareWorld


@pytest.fixture
def cloudflare_world(monkeypatch):
    for variable in ("CLOUDFLARE_EMAIL", "CLOUDFLARE_API_KEY", "CLOUDFLARE_BASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    with CloudflareWorld() as world:
        yield world
