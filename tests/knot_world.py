"""The ``knot_world`` fixture: a fresh Knot serving example.test (lab.worlds)."""

from __future__ import annotations

import pytest

from lab.knot import KNOTD, knot_program
from lab.worlds import KnotWorld


@pytest.fixture(scope="session")
def knot_binary() -> str:
    """The knotd path; fails (never skips) when Knot is not installed."""
    path = knot_program(KNOTD)
    assert path, "knotd not found: apt-get install knot knot-dnsutils"
    return path


@pytest.fixture
def knot_world(knot_binary, tmp_path) -> KnotWorld:
    with KnotWorld(workdir=tmp_path) as world:
        yield world
