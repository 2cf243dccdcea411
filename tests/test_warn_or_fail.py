"""A check says ``fail`` only when the run fails for it: an advisory check (declared
``required=False`` on the check) that finds a problem says ``warn``, is counted as a warning,
and the deploy and ``scripts/check`` still succeed; a required one says ``fail``, is counted as
failed, and both fail (issue 23, item 6)."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from fakehost import FakeHost, on, text

from mailhost.checks import (
    FAILED,
    WARNING,
    CheckResult,
    failure_line,
    guarded,
    render_json,
    render_table,
    result,
    summary_line,
)
from mailhost.checks import all as checks_all
from mailhost.operations import verify

ROOT = Path(__file__).resolve().parent.parent
HOST = "mail.example.test"
PASSED = result("dns: MX example.test", True, "an MX", "10 mail.example.test", "")
ADVISORY = result("host: mail queue not stuck", False, "no message waiting", "2 queued",
                  "look at the queue", required=False)
REQUIRED = result("rdns: PTR 198.51.100.10", False, HOST, "no PTR record",
                  "set the PTR at your VPS provider")


def lines_of(table: str, name: str) -> list[str]:
    return [line for line in table.splitlines() if name in line]


def test_an_advisory_check_that_finds_a_problem_is_a_warning():
    assert (ADVISORY.status, ADVISORY.required, ADVISORY.blocking) == (WARNING, False, False)
    table = render_table([PASSED, ADVISORY])
    assert lines_of(table, "host: mail queue")[0].startswith("warn  host: mail queue not stuck")
    assert "fail" not in table
    assert table.splitlines()[-1] == "1 ok, 1 warning"
    assert failure_line(HOST, [PASSED, ADVISORY]) == ""


def test_a_required_check_that_fails_is_a_failure():
    assert (REQUIRED.status, REQUIRED.blocking) == (FAILED, True)
    table = render_table([PASSED, ADVISORY, REQUIRED])
    assert lines_of(table, "rdns: PTR")[0].startswith("fail  rdns: PTR 198.51.100.10")
    assert table.splitlines()[-1] == "1 ok, 1 failed, 1 warning"
    assert failure_line(HOST, [PASSED, ADVISORY, REQUIRED]) == (
        f"{HOST}: 1 required check(s) failed: rdns: PTR 198.51.100.10")


def test_the_summary_names_only_what_there_is():
    assert summary_line([PASSED]) == "1 ok"
    assert summary_line([PASSED, ADVISORY, ADVISORY]) == "1 ok, 2 warnings"
    assert summary_line([REQUIRED, REQUIRED]) == "0 ok, 2 failed"


def test_advisory_is_declared_once_on_the_check():
    """guarded(required=False) makes the check advisory on every path: its error, and a
    failure its body reports without repeating the flag."""
    def broken():
        raise ConnectionRefusedError(111, "Connection refused")

    def failing():
        return result("host: x", False, "x", "y", "advice")
    for body in (broken, failing):
        check = guarded("host: x", "x", "advice", body, required=False)
        assert (check.status, check.required) == (WARNING, False)
    assert guarded("host: x", "x", "advice", failing).status == FAILED
    assert CheckResult("host: x", FAILED, "x", "y", required=False).status == WARNING


def test_the_json_says_warning_for_an_advisory_problem():
    entries = json.loads(render_json({HOST: [ADVISORY, REQUIRED]}))
    assert [(e["status"], e["required"]) for e in entries] == [("warning", False),
                                                                ("failed", True)]


def scripts_check(which: list[str], *flags: str) -> subprocess.CompletedProcess:
    """scripts/check's main in its own process (it sets up pyinfra's logging, and its import
    patches the standard library with gevent) over canned results, named from this module; no
    inventory, no connection."""
    code = ("import sys; from types import SimpleNamespace; import test_warn_or_fail as t; "
            "from mailhost.cli import check; "
            "check.read_inventory = lambda path, connect=False: []; "
            "check.MailRun = SimpleNamespace(load=lambda inventory: None); "
            "check.check_all = lambda inventory, run: "
            f"{{t.HOST: [getattr(t, n) for n in {which!r}]}}; "
            f"sys.exit(check.main(['inventory/prod.py', *{list(flags)!r}]))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              [str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")])})


def test_scripts_check_exits_0_on_an_advisory_problem():
    done = scripts_check(["PASSED", "ADVISORY"])
    assert done.returncode == 0, done.stderr
    assert "warn  host: mail queue not stuck" in done.stdout
    assert done.stdout.splitlines()[-1] == "1 ok, 1 warning"
    assert "fail" not in done.stdout + done.stderr


def test_scripts_check_exits_1_on_a_required_failure():
    done = scripts_check(["PASSED", "ADVISORY", "REQUIRED"])
    assert done.returncode == 1, done.stderr
    assert "fail  rdns: PTR 198.51.100.10" in done.stdout
    assert done.stdout.splitlines()[-1] == "1 ok, 1 failed, 1 warning"
    assert "1 required check(s) failed: rdns: PTR 198.51.100.10" in done.stderr


def test_scripts_check_strict_exits_1_on_an_advisory_problem_and_names_it():
    """--strict (scripts/demo's): every check must be ok, a warning included."""
    done = scripts_check(["PASSED", "ADVISORY"], "--strict")
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"{HOST}: 1 check(s) not ok (--strict): host: mail queue not stuck")
    assert scripts_check(["PASSED"], "--strict").returncode == 0


class Log:
    def __init__(self):
        self.lines: list[tuple[int, str]] = []

    def info(self, line):
        self.lines.append((logging.INFO, line))

    def error(self, line):
        self.lines.append((logging.ERROR, line))


def deploy_checks(monkeypatch, results) -> tuple[list[str], Log]:
    """The deploy's verification (mailhost.operations.verify) over canned results: the commands
    it yields (one that fails the operation, or none) and what it logged."""
    log, host = Log(), FakeHost()
    monkeypatch.setattr(verify, "logger", log)
    monkeypatch.setattr(checks_all, "run_checks", lambda *_args: results)
    with on(host, executing=True):
        commands = list(verify.checks._inner(settings=None, secrets=None, mta=None))
    for command in commands:  # what pyinfra does with it: False fails the operation
        assert command.function(None, host, *command.args) is False
    return [text(c) for c in commands], log


def test_a_deploy_passes_with_an_advisory_problem_and_says_warn(monkeypatch):
    commands, log = deploy_checks(monkeypatch, [PASSED, ADVISORY])
    assert commands == []  # nothing fails the operation: the deploy exits 0
    logged = [line for _, line in log.lines]
    assert any("warn  host: mail queue not stuck" in line for line in logged)
    assert logged[-1].endswith("1 ok, 1 warning") and "fail" not in " ".join(logged)


def test_a_deploy_fails_on_a_required_failure_and_says_fail(monkeypatch):
    commands, log = deploy_checks(monkeypatch, [PASSED, ADVISORY, REQUIRED])
    assert commands == ["<_fail>"]  # False from it fails the operation, so the deploy
    logged = [line for _, line in log.lines]
    assert any("fail  rdns: PTR 198.51.100.10" in line for line in logged)
    assert any(line.endswith("1 ok, 1 failed, 1 warning") for line in logged)
    assert log.lines[-1] == (logging.ERROR, f"[{HOST}] {HOST}: 1 required check(s) failed: "
                                            "rdns: PTR 198.51.100.10")
