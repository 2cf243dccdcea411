"""The value types of the backup settings: restic's repository, its schedule and the SFTP
server's host key."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator

from mailhost.settings.messages import Credentials
from mailhost.settings.values import _text, _url, domain_name


@dataclass(frozen=True)
class BackupRepository:
    """Where restic keeps the host's backups: ``kind`` is sftp, s3 or local; ``location`` is
    the repository as restic names it (RESTIC_REPOSITORY); ``user`` and ``host``: SFTP's."""

    kind: str
    location: str
    user: str | None = None
    host: str | None = None

    def __str__(self) -> str:
        return self.location


_SAFE_PATH = re.compile(r"/?[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*/?")
_SSH_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_BACKUP_EXPECTED = ("expected restic's repository: sftp:USER@HOST:/PATH, "
                    "s3:https://HOST/BUCKET[/PREFIX] or an absolute path on the host "
                    "(letters, digits, '.', '_', '-' in names)")


def _repository_path(path: str, absolute: bool) -> str:
    if (not _SAFE_PATH.fullmatch(path) or (absolute and not path.startswith("/"))
            or ".." in path.split("/") or path.strip("/") == ""):
        raise ValueError(_BACKUP_EXPECTED)
    return path.rstrip("/") if path != "/" else path


def _backup_repository(value) -> BackupRepository:
    """sftp:USER@HOST:/PATH, s3:https://HOST[:PORT]/BUCKET[/PREFIX] or /PATH (on the host)."""
    if isinstance(value, BackupRepository):
        return value
    text = _text(value).strip()
    if text.startswith("sftp:"):
        user, at, rest = text.removeprefix("sftp:").rpartition("@")
        if at and ":" in user:  # sftp:USER:PASSWORD@HOST:/PATH (restic logs in with a key)
            raise Credentials(f"sftp:{user.split(':')[0]}:***@{rest}")
        host, colon, path = rest.partition(":")
        if not (at and colon and _SSH_USER.fullmatch(user)):
            raise ValueError(_BACKUP_EXPECTED)
        try:
            host = domain_name(host, min_labels=1) if not host[:1].isdigit() \
                else str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ValueError(_BACKUP_EXPECTED) from None
        path = _repository_path(path, absolute=False)
        return BackupRepository("sftp", f"sftp:{user}@{host}:{path}", user, host)
    if text.startswith("s3:"):
        try:
            url = _url(text.removeprefix("s3:"))
        except Credentials as error:
            raise Credentials("s3:" + error.masked) from None
        except ValueError:
            raise ValueError(_BACKUP_EXPECTED) from None
        if not urlsplit(url).path.strip("/"):
            raise ValueError(_BACKUP_EXPECTED + "; the S3 URL names no bucket")
        return BackupRepository("s3", f"s3:{url}")
    return BackupRepository("local", _repository_path(text, absolute=True))


_WEEKDAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_ON_CALENDAR = re.compile(
    rf"(?:{_WEEKDAY}(?:[.,]{{1,2}}{_WEEKDAY})* )?"  # Mon..Fri, Sat,Sun
    r"(?:[0-9*][0-9*/,.~-]* )?"  # *-*-01, 2026-*-1..7
    r"[0-9*][0-9*/,:.]*")  # 03:30, *:0/15
_CALENDAR_WORDS = frozenset({"minutely", "hourly", "daily", "weekly", "monthly", "quarterly",
                             "semiannually", "yearly"})


_TIME = re.compile(r"([0-9*/,.~]+):([0-9*/,.~]+)(?::([0-9*/,.~]+))?")
_CALENDAR_EXPECTED = ("expected a systemd OnCalendar expression such as daily, hourly, "
                      "'*-*-* 03:30' or 'Mon..Fri 02:00'")


def _on_calendar(value) -> str:
    """A systemd OnCalendar expression: a word (daily), else as systemd's own parser judges it
    (``systemd-analyze calendar`` on the controller), else [WEEKDAYS ][DATE ]HH:MM[:SS] with
    hours, minutes and seconds in range; refused here, not by systemd on the host mid-deploy."""
    text = _text(value).strip()
    if text in _CALENDAR_WORDS:
        return text
    verdict = _systemd_says(text)
    if verdict is None:
        verdict = bool(_ON_CALENDAR.fullmatch(text)) and _times_in_range(text)
    if not verdict:
        raise ValueError(_CALENDAR_EXPECTED + " (systemd.time(7))")
    return text


@cache
def _systemd_says(text: str) -> bool | None:
    """Whether systemd's calendar parser takes TEXT; None without systemd-analyze."""
    program = shutil.which("systemd-analyze")
    if program is None or len(text) > 200:
        return None if program is None else False
    try:
        done = subprocess.run([program, "calendar", "--", text], capture_output=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.returncode == 0


def _times_in_range(text: str) -> bool:
    """The fallback's check of [WEEKDAYS ][DATE ]TIME: every number of the date's month and
    day and of the time in range."""
    parts = text.split(" ")
    match = _TIME.fullmatch(parts[-1])
    if not match:
        return False
    date = parts[-2].split("-") if len(parts) > 1 and "-" in parts[-2] else []
    for part, highest in zip(date[-2:], (12, 31), strict=False):
        if any(not 1 <= int(n) <= highest for n in re.findall(r"[0-9]+", part)):
            return False
    for part, highest in zip(match.groups(), (23, 59, 59), strict=True):
        numbers = re.findall(r"[0-9]+", part or "")
        if any(int(n) > highest for n in numbers) or (part is not None and part.strip("*")
                                                      and not numbers):
            return False
    return True


def _ssh_public_key(value) -> str:
    """An SSH host key as known_hosts holds it: TYPE BASE64 (a comment is dropped)."""
    parts = _text(value).split()
    key_types = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                 "ecdsa-sha2-nistp521")
    if len(parts) >= 2 and parts[0] in key_types and re.fullmatch(r"[A-Za-z0-9+/]+=*",
                                                                     parts[1]):
        return f"{parts[0]} {parts[1]}"
    raise ValueError("expected the SFTP server's public host key, e.g. 'ssh-ed25519 AAAA...' "
                     "(ssh-keyscan prints it)")


Repository = Annotated[BackupRepository, BeforeValidator(_backup_repository)]
SshHostKey = Annotated[str, AfterValidator(_ssh_public_key)]
OnCalendar = Annotated[str, AfterValidator(_on_calendar)]
