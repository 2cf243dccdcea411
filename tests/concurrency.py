"""A zone written by someone else between plan and apply: shared by the provider and DNS
scenario tests."""

from __future__ import annotations

import pytest

from mailhost.zones.providers import ProviderError


def assert_refused_after_foreign_write(world, write, apply, match: str, snapshot=None) -> None:
    """``write`` (someone else's change) happens after the plan: ``apply`` is refused with an
    error matching ``match`` and the zone stays exactly as that write left it (read with
    ``snapshot``, the world's own by default)."""
    write()
    read = snapshot or world.snapshot
    before = read()
    with pytest.raises(ProviderError, match=match):
        apply()
    assert read() == before
