"""``scripts/check INVENTORY [--json] [--strict]``: every check of every mail host, without
deploying.

Loads the inventory as ``pyinfra`` does (group_data/ included), validates the settings, connects
to the hosts whose settings manage them, runs the checks and prints a table (or a JSON list,
one object per check) on stdout; logs go to stderr. Exits 1 when a required check fails (with
``--strict``: when any check is not ok, a warning included), 2 when the settings or the
inventory are wrong.
"""

from __future__ import annotations

import logging
import sys

# first, as pyinfra's own command line does: it patches the process with gevent (sockets, ssl)
import pyinfra_cli  # noqa: F401
from pyinfra import logger
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.inventory import Inventory

from mailhost.checks import (
    FAILED,
    OK,
    CheckResult,
    failure_line,
    render_json,
    render_table,
)
from mailhost.checks.all import run_checks
from mailhost.cli import arguments, read_inventory
from mailhost.host.mtas import mta_of
from mailhost.run import MailRun


def check_all(inventory: Inventory, run: MailRun) -> dict[str, list[CheckResult]]:
    results = {}
    for host in inventory:
        settings, lost = run.settings[host.name], []
        on_host = settings.mail_manage_host and host.connected
        if settings.mail_manage_host and not host.connected:
            lost = [CheckResult("host: connection", FAILED, "an SSH connection",
                                "could not connect: the checks on the host were not run",
                                "check the inventory's ssh_* settings and that the host is up")]
        results[host.name] = lost + run_checks(settings, run.secrets[host.name],
                                               mta_of(settings), host if on_host else None,
                                               run.fleet[host.name])
    return results


def main(argv=None) -> int:
    parser = arguments("scripts/check", __doc__)
    parser.add_argument("--json", action="store_true", help="a JSON list, one entry per check")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 unless every check is ok, warnings included (a new host's "
                             "first day, a demo, a monitor that wants to hear of warnings)")
    args = parser.parse_args(argv)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False

    try:
        inventory = read_inventory(args.inventory, connect=True)
        run = MailRun.load(inventory)
    except PyinfraError as error:
        print(f"scripts/check: {error}", file=sys.stderr)
        return 2
    results = check_all(inventory, run)

    if args.json:
        print(render_json(results))
    else:
        for host_name, host_results in results.items():
            print(f"{host_name}:")
            print(render_table(host_results))
    failures = [line for name, r in results.items() if (line := failure_line(name, r))]
    if args.strict:
        failures += [line for name, r in results.items() if (line := not_ok_line(name, r))]
    for line in failures:
        print(line, file=sys.stderr)
    return 1 if failures else 0


def not_ok_line(host_name: str, results: list[CheckResult]) -> str:
    """One line naming the checks that are not ok but fail nothing ('' when none)."""
    names = [r.name for r in results if r.status != OK and not r.blocking]
    if not names:
        return ""
    return f"{host_name}: {len(names)} check(s) not ok (--strict): " + "; ".join(names)


if __name__ == "__main__":
    sys.exit(main())
