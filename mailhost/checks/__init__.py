"""Checks: what a working mail host looks like, one line each, with what to do when it fails.

Run at the end of every deploy (mailhost.operations.verify) and alone (``scripts/check``), all
of them by checks.all.run_checks.
One module per concern: dns, rdns, mta_sts, dane, smtp and imap (from the controller), host (on
the host, through pyinfra), blocklists. Each check says what it expected, what it found and,
when it fails, what to do. Each line is ``ok``, ``warn`` or ``fail``: ``fail`` only for a check
that fails the deploy and makes ``scripts/check`` exit 1. A check declared advisory
(``required=False``, on the check) never fails: when it finds a problem it says ``warn``.
"""

from __future__ import annotations

import json
import ssl
import textwrap
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from mailhost.secrets import Secrets
from mailhost.settings import Settings

OK, FAILED, WARNING = "ok", "failed", "warning"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # OK, FAILED (the run fails) or WARNING (could not tell, or worth a look)
    expected: str
    found: str
    advice: str = ""
    required: bool = True  # False: advisory, its problems are warnings (never FAILED)

    def __post_init__(self):
        # an advisory check's failure does not fail the run, so it never says "failed"
        if self.status == FAILED and not self.required:
            object.__setattr__(self, "status", WARNING)

    @property
    def blocking(self) -> bool:
        """A failed check (always a required one): the deploy fails, scripts/check exits 1."""
        return self.status == FAILED


def result(name: str, passed: bool, expected: str, found: str, advice: str,
           required: bool = True) -> CheckResult:
    """OK when passed, else FAILED with the advice (WARNING when not required)."""
    return CheckResult(name, OK if passed else FAILED, expected, found,
                       "" if passed else advice, required)


def as_mail_user(name: str, doing: str, advice: str, settings: Settings, secrets: Secrets,
                 connect: Callable, attempt: Callable) -> CheckResult:
    """A check that logs in as the first mail user with a password: ``connect()`` opens a
    connection whose certificate is verified, ``attempt(client, user, password, expected)``
    judges. A warning, nothing tried, when no user has a password or the certificate does not
    verify (a password is never sent to an unverified host).

    + doing: what the user must manage, after their address ("may send to X")
    """
    users = [u for u in settings.mail_users if u in secrets.passwords]
    expected = f"{users[0] if users else 'a mail user'} {doing}"
    if not users:
        return CheckResult(name, WARNING, expected, "not tried: no mail_users with a password",
                           "add mail_users and their passwords to the secrets to check this")
    user = users[0]

    def check():
        try:
            client = connect()
        except ssl.SSLCertVerificationError:
            return CheckResult(name, WARNING, expected, "not tried: the certificate did not "
                               "verify, and a password is never sent to an unverified host",
                               "fix the certificate (see the certificate checks) first")
        with client:
            return attempt(client, user, secrets.passwords[user].reveal(), expected)
    return guarded(name, expected, advice, check)


def guarded(name: str, expected: str, advice: str, check: Callable[[], CheckResult],
            required: bool = True) -> CheckResult:
    """Run one check; an error on the way (timeout, refused connection...) fails it.
    ``required=False`` declares the check advisory, whatever ``check()`` returns."""
    try:
        outcome = check()
    except Exception as error:  # noqa: BLE001 - any error is this check's finding
        found = f"{type(error).__name__}: {error}".strip().rstrip(":")
        return CheckResult(name, FAILED, expected, found, advice, required)
    return outcome if required else replace(outcome, required=False)


def failure_line(host_name: str, results: list[CheckResult]) -> str:
    """One line naming the failed required checks ('' when none failed)."""
    failed = [r.name for r in results if r.blocking]
    if not failed:
        return ""
    return f"{host_name}: {len(failed)} required check(s) failed: " + "; ".join(failed)


def render_table(results: list[CheckResult], width: int = 120) -> str:
    """One line per check (ok, warn or fail, name, found), expected and advice under one not
    ok; the last line counts them (summary_line)."""
    lines = []
    name_width = min(max((len(r.name) for r in results), default=10), 60)
    for r in results:
        mark = {OK: "ok  ", FAILED: "fail", WARNING: "warn"}[r.status]
        lines.append(f"{mark}  {r.name:<{name_width}}  {r.found}")
        if r.status != OK:
            indent = " " * 6
            lines.append(f"{indent}expected: {r.expected}")
            if r.advice:
                lines += textwrap.wrap(r.advice, width, initial_indent=indent + "advice:   ",
                                       subsequent_indent=indent + " " * 10)
    lines.append(summary_line(results))
    return "\n".join(lines)


def summary_line(results: list[CheckResult]) -> str:
    """'70 ok', '70 ok, 1 warning', '68 ok, 2 failed, 3 warnings': failed only when the run
    fails for them."""
    counts = {s: sum(r.status == s for r in results) for s in (OK, FAILED, WARNING)}
    warnings = counts[WARNING]
    return ", ".join([f"{counts[OK]} ok"]
                     + ([f"{counts[FAILED]} failed"] if counts[FAILED] else [])
                     + ([f"{warnings} warning{'s' if warnings != 1 else ''}"] if warnings
                        else []))


def render_json(results_by_host: dict[str, list[CheckResult]]) -> str:
    """A JSON list, one object per check: host, name, status, expected, found, advice, required."""
    entries = [{"host": host_name, **asdict(r)}
               for host_name, results in results_by_host.items() for r in results]
    return json.dumps(entries, indent=2)
