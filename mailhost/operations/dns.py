"""The DNS operation: publish the mail records of one zone through its provider."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, OperationError, operation
from pyinfra.context import state

from mailhost.dns.records import normalize_value
from mailhost.keys.dane import NEXT_PENDING
from mailhost.keys.dkim import DKIM_PENDING
from mailhost.zones.plan import PlanError, ZonePlan
from mailhost.zones.providers import ProviderError
from mailhost.zones.sync import ZoneSync, save_written

SERVED_WITHIN = 30.0  # seconds a write may take to reach every name server of the zone
# (name, type, matches(rdata)) -> whether every authoritative server answers a matching rdata
Served = Callable[[str, str, Callable], bool]


@operation()
def zone_records(zone: str, preview: ZonePlan, refresh: Callable[[], ZoneSync],
                 memory: Path | None = None, served: Served | None = None):
    """
    Publish the mail DNS records of one zone through its provider.

    + zone: the DNS zone
    + preview: the plan read while operations were prepared; an empty one means no change
    + refresh: rebuilds the ZoneSync when the operation runs, so that a DKIM key generated
      earlier in the same run is the one published
    + memory: where this controller keeps what it wrote in the zone (zones.sync.save_written);
      records found as we want them are noted there when the run executes (not for --dry)
    + served: given (lookup.every_server_answers), the operation waits, up to 30 s, until every
      name server of the zone serves the values it wrote, so that the checks after it see them
      (a zone its provider's secondaries serve, e.g. PowerDNS's, follows a write a moment later)

    The zone is read again when the operation runs: if it differs from the read the preview
    was made from, nothing is written. The plan is applied in one provider write (one UPDATE
    message, one Cloudflare batch per 200 records), then read back.
    """
    if preview.empty:
        host.noop(preview.lines()[0])
        if state.is_executing:
            save_written(memory, preview)
        return
    yield FunctionCommand(_apply, (refresh, preview, served), {})


def _apply(refresh: Callable[[], ZoneSync], preview: ZonePlan, served: Served | None = None):
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
    if served is not None:
        wait_served(plan, served)


def wait_served(plan: ZonePlan, served: Served, within: float = SERVED_WITHIN,
                sleep=time.sleep) -> list[str]:
    """Wait until every name server serves each value the plan added (``served``), at most
    ``within`` seconds; the "TYPE name" of those still missing then, said in one line."""
    waiting = {(c.name, c.rtype): set(c.added_values) for c in plan.changes if c.added_values}
    deadline = time.monotonic() + within
    while waiting:
        waiting = {(name, rtype): values for (name, rtype), values in waiting.items()
                   if not served(name, rtype, lambda rdata, t=rtype, v=values:
                                 normalize_value(t, rdata.to_text()) in v)}
        if not waiting or time.monotonic() >= deadline:
            break
        sleep(0.5)
    missing = [f"{rtype} {name}" for name, rtype in sorted(waiting)]
    if missing:
        logger.warning(f"    not yet served by every name server of zone {plan.zone} after "
                       f"{within:.0f} s: {', '.join(missing)} (the checks may not see it yet)")
    return missing
