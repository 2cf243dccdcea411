"""Inbound burst benchmark (run it as ``scripts/bench-inbound``; not a test): N messages over C
parallel SMTP connections to port 25 of the lab's deployed host, addressed to its local users;
then every message must be in its mailbox exactly once (none lost, none duplicated).

Prints messages per second (from the first connection to the last accepted message, and to
the last one stored), the VPS's memory the way the kernel counts it (its memory cgroup, page
cache included: idle before the burst and the peak during it, and the OOM kills in it; and its
working set, the usage less the inactive file cache that the kernel drops first), the
proportional set size (PSS) of each service idle and at the burst's largest sample, and the
counts. ``--json`` prints one JSON object instead. Exits 1 when a message is missing or
duplicated, or a transaction was refused.

Needs the lab up and its host deployed, under the lab lock (docs/lab.md):

    flock /tmp/mailhost-lab.lock bash -c \\
        'scripts/lab up && .venv/bin/pyinfra -y inventory/lab.py deploy.py;
         scripts/bench-inbound; scripts/lab down'

Usage: scripts/bench-inbound [--messages 2000] [--connections 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import smtplib
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab import vps as lab_vps
from lab.common import VPS4, Paths
from mailhost.paths import MAILBOX_ROOT

ROOT = Path(__file__).resolve().parent.parent

USERS = ["alice@example.test", "bob@example.test"]  # inventory/lab.py's mail_users
SENDER = "bench@example.org"  # a domain the lab does not serve: no SPF/DMARC verdict to fail


def ssh(command: str, timeout: float = 60) -> str:
    result = subprocess.run(["ssh", "-F", str(Paths.for_checkout().ssh_config), VPS4, command],
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        sys.exit(f"bench-inbound: ssh {command!r} failed: {result.stderr.strip()[-500:]}")
    return result.stdout


def message(run: str, number: int, recipient: str) -> tuple[str, str]:
    tag = f"bench-{run}-{number}"
    body = (f"From: {SENDER}\r\nTo: {recipient}\r\nSubject: burst {number}\r\n"
            f"Message-ID: <{tag}@example.org>\r\nX-Bench: {tag}\r\n\r\n"
            + "A line of an ordinary message body, to give it some size.\r\n" * 40)
    return tag, body


def send_batch(run: str, numbers: list[int], refused: list[str]) -> None:
    """One connection: its share of the messages, one transaction each."""
    with smtplib.SMTP(VPS4, 25, timeout=120) as client:
        client.ehlo("mx.example.org")
        for number in numbers:
            recipient = USERS[number % len(USERS)]
            tag, body = message(run, number, recipient)
            try:
                client.sendmail(SENDER, [recipient], body)
            except smtplib.SMTPException as error:
                refused.append(f"{tag}: {error}")


def stored_tags(run: str) -> Counter:
    """How many times each message of this run is in a mailbox (any folder)."""
    listing = ssh(f"find {MAILBOX_ROOT} -type f \\( -path '*/new/*' -o -path '*/cur/*' \\) "
                  f"-exec grep -hoa 'X-Bench: bench-{run}-[0-9]*' {{}} + || true", timeout=300)
    return Counter(line.split(": ", 1)[1] for line in listing.splitlines() if line)


# PSS (kB) of every process in the VPS, summed by its systemd unit (run on the VPS)
PSS_BY_UNIT = r"""
import collections, glob, re
total = collections.Counter()
for status in glob.glob("/proc/[0-9]*/smaps_rollup"):
    proc = status.rsplit("/", 1)[0]
    try:
        pss = int(re.search(r"^Pss:\s+(\d+)", open(status).read(), re.M).group(1))
        units = re.findall(r"([^/\n]+\.(?:service|scope))", open(proc + "/cgroup").read())
    except (OSError, AttributeError):
        continue
    total[units[-1] if units else "other"] += pss
for unit, kb in total.most_common():
    print(unit, kb)
"""


def pss_by_unit() -> dict[str, float]:
    """Each systemd unit's PSS in the VPS (MiB), largest first."""
    lines = ssh(f"python3 -c {shlex.quote(PSS_BY_UNIT)}").split("\n")
    return {unit: round(int(kb) / 1024, 1) for unit, kb in (line.split() for line in lines
                                                             if line.strip())}


class MemorySampler(threading.Thread):
    """Until stopped: the cgroup's working set every 0.25 s (its peak kept), the services' PSS
    over SSH every 2 s (the sample with the largest total kept). The cgroup's own peak, page
    cache included, is the kernel's, read at the end."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.samples, self._done = {}, 0, threading.Event()
        self.working_set_peak = 0  # bytes, read from the cgroup every 0.25 s

    def run(self):
        next_pss = 0.0
        while not self._done.is_set():
            self.working_set_peak = max(self.working_set_peak,
                                        lab_vps.memory_use(None)["working_set"])
            if time.monotonic() >= next_pss:
                sample = pss_by_unit()
                if sum(sample.values()) > sum(self.peak.values()):
                    self.peak = sample
                self.samples, next_pss = self.samples + 1, time.monotonic() + 2
            self._done.wait(0.25)

    def stop(self):
        self._done.set()
        self.join()


def memory_cap() -> int | None:
    """The VPS's memory cap in bytes, read from its cgroup (None: not capped, or no cgroup)."""
    limit = lab_vps.memory_cgroup() / "memory.limit_in_bytes"
    cap = int(limit.read_text()) if limit.exists() else None
    return cap if cap is not None and cap < 1 << 60 else None  # cgroup v1's "no limit" is huge


def mib(number: int) -> float:
    return round(number / (1 << 20), 1)


def top(units: dict[str, float], count: int = 6) -> str:
    return ", ".join(f"{unit.removesuffix('.service')} {value:.0f}"
                     for unit, value in list(units.items())[:count])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-inbound",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for delivery")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    run = uuid.uuid4().hex[:8]
    mta = ssh("systemctl is-active --quiet postfix && echo postfix || echo chasquid").strip()
    idle = lab_vps.memory_use(memory_cap())
    if not idle:
        sys.exit("bench-inbound: the VPS has no memory cgroup: is the lab up (scripts/lab up)?")
    pss_idle = pss_by_unit()
    lab_vps.reset_memory_peak()
    shares = [list(range(i, args.messages, args.connections)) for i in range(args.connections)]
    refused: list[str] = []
    sampler = MemorySampler()
    sampler.start()
    start = time.monotonic()
    with ThreadPoolExecutor(args.connections) as pool:
        for future in [pool.submit(send_batch, run, share, refused) for share in shares]:
            future.result()
    accepted_at = time.monotonic() - start
    expected = {message(run, n, "")[0] for n in range(args.messages)}
    deadline = start + args.wait
    while True:
        stored = stored_tags(run)
        if set(stored) >= expected - {r.split(":")[0] for r in refused}:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(2)
    stored_at = time.monotonic() - start
    sampler.stop()
    after = lab_vps.memory_use(memory_cap())
    missing = sorted(expected - set(stored))
    duplicated = sorted(tag for tag, count in stored.items() if count > 1)
    once = sum(1 for t in expected if stored.get(t) == 1)
    figures = {
        "mta": mta, "messages": args.messages, "connections": args.connections,
        "stored": once, "lost": len(missing), "duplicated": len(duplicated),
        "refused": len(refused),
        "accepted_per_s": round(args.messages / accepted_at, 1),
        "stored_per_s": round(args.messages / stored_at, 1),
        "accepted_s": round(accepted_at, 1), "stored_s": round(stored_at, 1),
        "cgroup_idle_mib": mib(idle["memory_now"]),
        "cgroup_peak_mib": mib(after["memory_peak"]),
        "cgroup_max_mib": mib(after["memory_max"]) if after["memory_max"] else None,
        "working_set_idle_mib": mib(idle["working_set"]),
        "working_set_peak_mib": mib(sampler.working_set_peak),
        "oom_kills": after["oom_kills"] - idle["oom_kills"],
        "pss_idle_mib": pss_idle, "pss_peak_mib": sampler.peak,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        rows = [
            ("MTA", mta),
            ("messages, connections", f"{args.messages}, {args.connections}"),
            ("accepted per second", f"{figures['accepted_per_s']} ({accepted_at:.1f} s)"),
            ("stored per second", f"{figures['stored_per_s']} ({stored_at:.1f} s)"),
            ("VPS cgroup idle -> peak", f"{figures['cgroup_idle_mib']:.0f} MiB -> "
                                        f"{figures['cgroup_peak_mib']:.0f} MiB, "
                                        f"{figures['oom_kills']} OOM kills"),
            ("VPS working set idle -> peak", f"{figures['working_set_idle_mib']:.0f} MiB -> "
                                             f"{figures['working_set_peak_mib']:.0f} MiB "
                                             f"(less the inactive file cache)"),
            ("PSS idle (MiB)", top(pss_idle)),
            ("PSS at the peak (MiB)", f"{top(sampler.peak)} ({sampler.samples} samples)"),
            ("stored exactly once", str(once)),
            ("refused, missing, duplicated", f"{len(refused)}, {len(missing)}, {len(duplicated)}"),
        ]
        width = max(len(label) for label, _ in rows)
        for label, value in rows:
            print(f"{label:<{width}}  {value}")
    for line in (refused[:5] + [f"missing {t}" for t in missing[:5]]
                 + [f"duplicated {t}" for t in duplicated[:5]]):
        print("  " + line, file=sys.stderr if args.json else sys.stdout)
    return 1 if refused or missing or duplicated or figures["oom_kills"] else 0


if __name__ == "__main__":
    sys.exit(main())
