"""Inbound burst benchmark (run it as ``scripts/bench-inbound``; not a test): N messages over C
parallel SMTP connections to port 25 of the lab's deployed host, addressed to its local users;
then every message must be in its mailbox exactly once (none lost, none duplicated).

Prints messages per second (from the first connection to the last accepted message, and to
the last one stored), the host's peak resident memory while it ran (sum of RSS of every process
in the VPS, sampled every 0.5 s over SSH) and the counts. Exits 1 when a message is missing or
duplicated, or a transaction was refused.

Needs the lab up and its host deployed, under the lab lock (docs/lab.md):

    flock /tmp/mailhost-lab.lock bash -c \\
        'scripts/lab up && .venv/bin/pyinfra -y inventory/lab.py deploy.py;
         scripts/bench-inbound; scripts/lab down'

Usage: scripts/bench-inbound [--messages 2000] [--connections 20]
"""

from __future__ import annotations

import argparse
import smtplib
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab.common import VPS4
from mailhost.paths import MAILBOX_ROOT

ROOT = Path(__file__).resolve().parent.parent

USERS = ["alice@example.test", "bob@example.test"]  # inventory/lab.py's mail_users
SENDER = "bench@example.org"  # a domain the lab does not serve: no SPF/DMARC verdict to fail


def ssh(command: str, timeout: float = 60) -> str:
    result = subprocess.run(["ssh", "-F", str(ROOT / ".lab/ssh/config"), VPS4, command],
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


class MemorySampler(threading.Thread):
    """The VPS's total RSS (kB), sampled until stopped; keeps the peak."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_kb, self.samples, self._done = 0, 0, threading.Event()

    def run(self):
        while not self._done.is_set():
            total = ssh("ps -eo rss= | awk '{s+=$1} END {print s}'").strip()
            self.peak_kb, self.samples = max(self.peak_kb, int(total or 0)), self.samples + 1
            self._done.wait(0.5)

    def stop(self):
        self._done.set()
        self.join()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-inbound",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for delivery")
    args = parser.parse_args(argv)
    run = uuid.uuid4().hex[:8]
    mta = ssh("systemctl is-active --quiet postfix && echo postfix || echo chasquid").strip()
    idle_kb = int(ssh("ps -eo rss= | awk '{s+=$1} END {print s}'").strip())
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
    missing = sorted(expected - set(stored))
    duplicated = sorted(tag for tag, count in stored.items() if count > 1)
    rows = [
        ("MTA", mta),
        ("messages, connections", f"{args.messages}, {args.connections}"),
        ("accepted per second", f"{args.messages / accepted_at:.1f} ({accepted_at:.1f} s)"),
        ("stored per second", f"{args.messages / stored_at:.1f} ({stored_at:.1f} s)"),
        ("VPS memory idle -> peak", f"{idle_kb / 1024:.0f} MB -> {sampler.peak_kb / 1024:.0f} MB"
                                    f" (sum of RSS, {sampler.samples} samples)"),
        ("stored exactly once", str(sum(1 for t in expected if stored.get(t) == 1))),
        ("refused, missing, duplicated", f"{len(refused)}, {len(missing)}, {len(duplicated)}"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    for line in (refused[:5] + [f"missing {t}" for t in missing[:5]]
                 + [f"duplicated {t}" for t in duplicated[:5]]):
        print("  " + line)
    return 1 if refused or missing or duplicated else 0


if __name__ == "__main__":
    sys.exit(main())
