"""Run-time benchmark of the deploy (run it as ``scripts/bench-runs``; not a test): a no-change
run and a --dry run of the lab's deployed host, side by side with a bare pyinfra run that only
reads three facts (the floor: start-up, SSH connection, one round trip a fact).

Each command runs once untimed (warm-up), then --runs times (default 5); wall seconds
(a monotonic clock around the child) and CPU seconds (the child's user + system time) are
printed as median, min and max. The no-change run must report no change: a run that changes
something is reported, and the script exits 1.

Needs the lab up and its host deployed once, in a lane of its own (docs/lab.md):

    export MAILHOST_LAB_LANE=3
    scripts/lab up && .venv/bin/pyinfra -y inventory/lab.py deploy.py && scripts/bench-runs;
    scripts/lab down

Usage: scripts/bench-runs [--runs 5] [--inventory inventory/lab.py] [--json]
(--json: one object with the medians, dry_s, nochange_s, bare_s, and the ratios to bare_s)

--fleet: the lab's fleet (``scripts/lab up --vps 3``, inventory/lab-fleet.py deployed once): a
no-change run of its three hosts beside a no-change run of one of them (``--limit
mail.example.test``, the same inventory: the same plan, one host connected), the two
alternating run by run so that both see the same load; prints the ratio of the medians
(--json: fleet_s, one_s, fleet_over_one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = str(ROOT / ".venv" / "bin" / "pyinfra")


def commands(inventory: str) -> dict[str, list[str]]:
    return {
        "no-change deploy": [PYINFRA, "-y", inventory, "deploy.py"],
        "--dry": [PYINFRA, "-y", "--dry", inventory, "deploy.py"],
        "bare pyinfra (3 facts)": [PYINFRA, "-y", inventory, "fact", "server.Os",
                                   "server.Hostname", "deb.DebPackages"],
    }


def timed(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, output) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        sys.exit(f"bench-runs: `{' '.join(command)}` failed:\n{result.stdout[-2000:]}"
                 f"{result.stderr[-2000:]}")
    return wall, cpu, result.stdout + result.stderr


def changed_operations(output: str) -> list[str]:
    """Operations of a deploy's results table with a success (a change)."""
    rows, in_table = [], False
    for line in output.splitlines():
        if line.strip().startswith("Operation") and "No Change" in line:
            in_table = True
            continue
        if in_table:
            fields = line.split()
            if len(fields) < 5 or fields[0] == "Grand":
                break
            if fields[-3] not in ("-", "0"):
                rows.append(" ".join(fields[:-4]))
    return rows


def fleet_commands(inventory: str, one: str) -> dict[str, list[str]]:
    return {
        "fleet no-change (3 hosts)": [PYINFRA, "-y", inventory, "deploy.py"],
        "one host no-change": [PYINFRA, "-y", inventory, "deploy.py", "--limit", one],
    }


KEYS = {"no-change deploy": "nochange", "--dry": "dry", "bare pyinfra (3 facts)": "bare",
        "fleet no-change (3 hosts)": "fleet", "one host no-change": "one"}
NO_CHANGE = ("no-change deploy", "fleet no-change (3 hosts)", "one host no-change")


def summary(rows: list[tuple[str, list[float], list[float]]], runs: int) -> dict:
    """The medians (wall and CPU seconds) by run, and each run's wall time over the bare one."""
    found = {"runs": runs, "cores": os.cpu_count()}
    for label, walls, cpus in rows:
        key = KEYS[label]
        found[f"{key}_s"] = round(statistics.median(walls), 3)
        found[f"{key}_min_s"], found[f"{key}_max_s"] = round(min(walls), 3), round(max(walls), 3)
        found[f"{key}_cpu_s"] = round(statistics.median(cpus), 3)
    for key in ("dry", "nochange"):
        if "bare_s" in found:
            found[f"{key}_over_bare"] = round(found[f"{key}_s"] / found["bare_s"], 2)
    if "one_s" in found:
        found["fleet_over_one"] = round(found["fleet_s"] / found["one_s"], 2)
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-runs",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--inventory", help="default: inventory/lab.py (with --fleet: "
                        "inventory/lab-fleet.py)")
    parser.add_argument("--fleet", action="store_true",
                        help="the three-host fleet's no-change run beside one host's")
    parser.add_argument("--json", action="store_true", help="one JSON object of the medians")
    args = parser.parse_args(argv)
    if args.fleet:
        chosen = fleet_commands(args.inventory or "inventory/lab-fleet.py", "mail.example.test")
    else:
        chosen = commands(args.inventory or "inventory/lab.py")
    problems = []
    timings = {label: ([], []) for label in chosen}
    for command in chosen.values():
        timed(command)  # warm-up
    for _ in range(args.runs):  # one of each in turn: every kind sees the same load
        for label, command in chosen.items():
            wall, cpu, output = timed(command)
            timings[label][0].append(wall)
            timings[label][1].append(cpu)
            if label in NO_CHANGE and (changed := changed_operations(output)):
                problems.append(f"the {label} run changed: {', '.join(changed)}")
    rows = [(label, walls, cpus) for label, (walls, cpus) in timings.items()]
    if args.json:
        print(json.dumps(summary(rows, args.runs), indent=1))
    else:
        print(f"{'run':<24} {'wall s median':>13} {'min':>6} {'max':>6} {'CPU s median':>12}")
        for label, walls, cpus in rows:
            print(f"{label:<24} {statistics.median(walls):>13.2f} {min(walls):>6.2f} "
                  f"{max(walls):>6.2f} {statistics.median(cpus):>12.2f}")
        print(f"({args.runs} runs each after one warm-up, in turn; {os.cpu_count()} cores)")
        if args.fleet:
            found = summary(rows, args.runs)
            print(f"fleet over one host: {found['fleet_over_one']:.2f}x")
    for problem in problems:
        print(f"bench-runs: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
