"""The DNS operation: publish the mail records of one zone through its provider."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, OperationError, operation
from pyinfra.context import state

from mailhost.keys.dane import NEXT_PENDING
from mailhost.keys.dkim import DKIM_PENDING
from mailhost.zones.plan import PlanError, ZonePlan
from mailhost.zones.providers import ProviderError
from mailhost.zones.sync import ZoneSync, save_written


@operation()
def zone_records(zone: str, preview: ZonePlan, refresh: Callable[[], ZoneSync],
                 memory: Path | None = None):
    """
    Publish the mail DNS records of one zone through its provider.

    + zone: the DNS zone
    + preview: the plan read while operations were prepared; an empty one means no change
    + refresh: rebuilds the ZoneSync when the operation runs, so that a DKIM key generated
      earlier in the same run is the one published
    + memory: where this controller keeps what it wrote in the zone (zones.sync.save_written);
      records found as we want them are noted there when the run executes (not for --dry)

    The zone is read again when the operation runs: if it differs from the read the preview
    was made from, nothing is written. The plan is applied in one provider write (one UPDATE
    message, one Cloudflare batch per 200 records), then read back.
    """
    if preview.empty:
        host.noop(preview.lines()[0])
        if state.is_executing:
            save_written(memory, preview)
        return
    yield FunctionCommand(_apply, (refresh, preview), {})


def _apply(refresh: Callable[[], ZoneSync], preview: ZonePlan):
    sync = refresh()
    if any(r.rtype == "TXT" and DKIM_PENDING in v for r in sync.records.desired for v in r.values):
        raise OperationError(f"DNS zone {sync.zone}: a DKIM key is missing on the controller")
    if any(r.rtype == "TLSA" and v == NEXT_PENDING for r in sync.records.desired
           for v in r.values):
        raise OperationError(f"DNS zone {sync.zone}: the next TLS key is missing on the host")
    try:
        plan = sync.plan()
        for line in plan.lines():
            logger.info(f"    {line}")
        sync.apply(plan, seen=preview)
    except (PlanError, ProviderError) as error:
        raise OperationError(f"DNS zone {sync.zone}: {error}") from None
