"""The backup's check (mailhost.host.backup), on the host: the age of the latest snapshot in
the repository, against the schedule's period (systemd computes it from backup_schedule).
Not required, so a fresh host's first deploy passes before its first backup."""

from __future__ import annotations

import datetime
import re

from pyinfra.api import QuoteString

from mailhost.checks import FAILED, OK, WARNING, CheckResult, guarded
from mailhost.checks.host import run
from mailhost.paths import BACKUP_RESTIC, BACKUP_SERVICE, BACKUP_TAG
from mailhost.settings import Settings

NAME = "host: a recent backup"
DAY = 86400
SEPARATOR = "--mailhost--"
_ELAPSE = re.compile(r"^\s*(?:Next elapse|Iter\. #2):\s+\S+\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)",
                     re.MULTILINE)
_SNAPSHOT_TIME = re.compile(
    r'"time":\s*"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)"')


def checks(settings: Settings, host) -> list[CheckResult]:
    """The backup's check; none without backup_repository."""
    if settings.backup_repository is None:
        return []
    return [last_backup_check(settings, host)]


def period_seconds(calendar_output: str) -> float:
    """The time between two runs of the schedule, from `systemd-analyze calendar
    --iterations=2` (a day when it cannot be read)."""
    times = [datetime.datetime.fromisoformat(t) for t in _ELAPSE.findall(calendar_output)]
    if len(times) >= 2 and times[1] > times[0]:
        return (times[1] - times[0]).total_seconds()
    return DAY


def snapshot_time(snapshots_json: str) -> float | None:
    """The epoch time of the latest snapshot restic listed (None: no snapshot)."""
    found = _SNAPSHOT_TIME.findall(snapshots_json)
    if not found:
        return None
    stamps = [datetime.datetime.fromisoformat(base + (zone if zone != "Z" else "+00:00"))
              for base, zone in found]
    return max(stamps).timestamp()


def judge(now: float, last: float | None, period: float, repository: str,
          error: str = "") -> CheckResult:
    """OK within two periods of the schedule; a warning when older, and when none (the check
    is advisory: it never fails the run)."""
    expected = (f"a snapshot in {repository} younger than two periods of the schedule "
                f"({_duration(2 * period)})")
    advice = (f"run a backup (`systemctl start {BACKUP_SERVICE}`) and read why it failed "
              f"(`journalctl -u {BACKUP_SERVICE}`): the repository unreachable, its password or "
              "credentials wrong, the disk full")
    if last is None:
        found = "no snapshot" + (f" ({error.strip()[:160]})" if error.strip() else "")
        return CheckResult(NAME, FAILED, expected, found, advice, required=False)
    age = max(0.0, now - last)
    status = OK if age <= 2 * period else WARNING
    return CheckResult(NAME, status, expected, f"the latest is {_duration(age)} old",
                       "" if status == OK else advice, required=False)


def last_backup_check(settings: Settings, host) -> CheckResult:
    repository = settings.backup_repository.location
    expected = f"a snapshot in {repository}"

    def check():
        output = run(host, "systemd-analyze calendar --iterations=2",
                     QuoteString(settings.backup_schedule), "2>&1; echo", SEPARATOR,
                     "; date +%s; echo", SEPARATOR, ";", BACKUP_RESTIC, "snapshots --no-lock --tag",
                     BACKUP_TAG, "--latest 1 --json 2>&1 || true")
        calendar, now, snapshots = output.split(SEPARATOR + "\n", 2)
        return judge(float(now), snapshot_time(snapshots), period_seconds(calendar),
                     repository, error=snapshots if not snapshots.lstrip().startswith("[")
                     else "")
    return guarded(NAME, expected, "", check, required=False)


def _duration(seconds: float) -> str:
    if seconds >= 2 * DAY:
        return f"{seconds / DAY:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"
