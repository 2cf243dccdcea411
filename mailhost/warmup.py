"""Warm-up of a new sending address: per-destination rate limits toward the big mailbox
providers during the first weeks (Postfix only; the lab reads it back from postconf:
tests/test_mail_lab.py, test_warmup_transports_are_read_back_from_postconf).

A new IP address has no reputation, and the big receivers throttle or junk a sudden volume
from one. Their guidance gives no numbers (Gmail's sender guidelines: "increase sending volume
slowly"; Microsoft's: "ramp up"), so this follows the usual warm-up practice of the bulk-mail
services' guides (start low, double about weekly over four weeks) expressed as Postfix's
per-destination pacing: one connection at a time to each provider domain, and a delay between
deliveries that halves each week. A delay is an upper bound on the rate, not a quota: a host
that sends little is never slowed at all.

    week 1: 60 s between deliveries to one provider domain (at most 1,440 a day)
    week 2: 30 s   (2,880)      week 3: 15 s   (5,760)      week 4: 5 s   (17,280)
    from week 5: no limit (the transports are gone from the configuration)

chasquid has no per-destination concurrency or rate setting (its queue delivers each message
at once), so ``warmup_start`` with ``mta = "chasquid"`` is refused by the settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from types import MappingProxyType

# delay (seconds) between deliveries to one destination, per week since warmup_start
SCHEDULE = (60, 30, 15, 5)
# the transports: master.cf service name (letters only: it prefixes Postfix parameter names)
# -> the domains routed through it
PROVIDERS = MappingProxyType({
    "warmupgoogle": ("gmail.com", "googlemail.com"),
    "warmupmicrosoft": ("outlook.com", "hotmail.com", "live.com", "msn.com"),
    "warmupyahoo": ("yahoo.com", "aol.com"),
})


@dataclass(frozen=True)
class Pace:
    """Today's limits: the delay and the transports they apply to (none: warm-up over)."""

    week: int  # 1-based; 0: not warming up
    delay_seconds: int

    @property
    def active(self) -> bool:
        return self.week > 0


def pace_on(start: date | None, today: date) -> Pace:
    """The pace of a warm-up started on ``start`` (None: none), on ``today``."""
    if start is None or today < start:
        return Pace(0, 0)
    week = (today - start).days // 7 + 1
    if week > len(SCHEDULE):
        return Pace(0, 0)
    return Pace(week, SCHEDULE[week - 1])


def transport_map(pace: Pace) -> str:
    """Postfix's transport table (hash:/etc/postfix/transport): each provider domain to its
    warm-up transport; empty once the warm-up is over."""
    if not pace.active:
        return ""
    return "".join(f"{domain} {name}:\n" for name, domains in PROVIDERS.items()
                   for domain in domains)
