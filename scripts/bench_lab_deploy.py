"""The package cache's benchmark (run it as ``scripts/bench-lab-deploy``; not a test): a fresh
VPS's first deploy of the default world (``scripts/lab up --fresh``, then
``pyinfra -y inventory/lab.py deploy.py``) with the package cache cold (emptied first) and
warm (what the cold run left), alternately, RUNS times each; wall seconds of the deploy alone
(the VPS's boot is not counted), median, min and max, and the cache's size after each run.

Emptying the cache stops apt-cacher-ng (by its PID) and deletes what it holds: run it when no
other lane is deploying. Uses this process's lane (MAILHOST_LAB_LANE) and leaves it down.

Usage: scripts/bench-lab-deploy [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lab import apt_cache
from lab.common import cache_lock

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = str(ROOT / ".venv" / "bin" / "pyinfra")


def lab(*args: str) -> None:
    subprocess.run([str(ROOT / "scripts" / "lab"), *args], cwd=ROOT, check=True,
                   capture_output=True, text=True, timeout=1800)


def empty_cache() -> None:
    with cache_lock("apt-cacher-ng"):
        proc = apt_cache.running()
        if proc is not None:
            proc.stop()
        shutil.rmtree(apt_cache.CACHE, ignore_errors=True)


def first_deploy(cold: bool) -> float:
    lab("down")
    if cold:
        empty_cache()
    lab("up", "--fresh")
    started = time.monotonic()
    result = subprocess.run([PYINFRA, "-y", "inventory/lab.py", "deploy.py"], cwd=ROOT,
                            capture_output=True, text=True, timeout=1800)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"the deploy failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"cold": [], "warm": []}
    for _ in range(args.runs):
        for mode in ("cold", "warm"):
            times[mode].append(first_deploy(mode == "cold"))
            print(f"{mode}: {times[mode][-1]:.1f} s  (cache {apt_cache.size_bytes() >> 20} MiB)",
                  flush=True)
    lab("down")
    for mode, values in times.items():
        print(f"first deploy, cache {mode}: median {statistics.median(values):.1f} s "
              f"(min {min(values):.1f}, max {max(values):.1f}, {len(values)} runs)")


if __name__ == "__main__":
    main()
