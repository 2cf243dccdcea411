"""Webmail memory (run it as ``scripts/bench-webmail``; not a test): what Roundcube costs the
lab's deployed host (``webmail = "roundcube"``), as the proportional set size (PSS: shared pages
divided among the processes sharing them, so the sum is not overstated as RSS's is) of every
PHP-FPM and nginx process, read from /proc/PID/smaps_rollup over SSH:

1. idle (PHP-FPM's pool is ``ondemand``: its master only, no worker; waits up to 90 s for the
   workers of an earlier use to leave);
2. the peak while headless Chromium (lab/chromium.py) logs in as alice, opens her inbox, the
   compose form and the message list of three folders, then logs out, ROUNDS times, sampled
   every 0.5 s;
3. right after (the workers are still there until their idle timeout, 60 s).

Needs the lab up in this lane and its host deployed with the webmail on:

    MAILHOST_LAB_LANE=N scripts/lab up
    MAILHOST_LAB_LANE=N MAILHOST_LAB_WEBMAIL=roundcube \\
        .venv/bin/pyinfra -y inventory/lab.py deploy.py
    MAILHOST_LAB_LANE=N scripts/bench-webmail [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

from lab.chromium import Browser
from lab.common import MAIL_HOSTNAME, VPS4

ROOT = Path(__file__).resolve().parent.parent
ALICE = "alice@example.test"
IDLE_WAIT = 90  # seconds, at most: the pool's idle timeout is 60 s
# every PHP-FPM and nginx process: its command name and PSS in kB
PSS = ("ps -eo pid=,comm= | awk '$2 ~ /^(php-fpm|nginx)/ {print $1, $2}' | "
       "while read pid comm; do pss=$(awk '/^Pss:/ {print $2}' /proc/$pid/smaps_rollup "
       "2>/dev/null); [ -n \"$pss\" ] && echo \"$comm $pss\"; done")


def status() -> dict:
    result = subprocess.run([str(ROOT / "scripts" / "lab"), "status", "--json"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    return json.loads(result.stdout)


def sample(ssh_config: str) -> dict[str, tuple[int, int]]:
    """{"php-fpm": (processes, PSS kB), "nginx": (...)} now."""
    output = subprocess.run(["ssh", "-F", ssh_config, MAIL_HOSTNAME, PSS], capture_output=True,
                            text=True, timeout=60, check=True).stdout
    found: dict[str, tuple[int, int]] = {"php-fpm": (0, 0), "nginx": (0, 0)}
    for line in output.splitlines():
        comm, kb = line.split()
        group = "php-fpm" if comm.startswith("php-fpm") else "nginx"
        count, total = found[group]
        found[group] = (count + 1, total + int(kb))
    return found


def line(label: str, figures: dict[str, tuple[int, int]]) -> str:
    total = sum(kb for _, kb in figures.values())
    parts = ", ".join(f"{name} {count} process(es) {kb / 1024:.1f} MiB"
                      for name, (count, kb) in figures.items())
    return f"{label:<34} {total / 1024:6.1f} MiB  ({parts})"


def session(browser: Browser, password: str) -> None:
    url = f"https://{MAIL_HOSTNAME}/"
    browser.navigate(url)
    browser.wait_for("document.querySelector('#rcmloginuser') !== null")
    browser.type_into("#rcmloginuser", ALICE)
    browser.type_into("#rcmloginpwd", password)
    browser.evaluate("document.querySelector('#rcmloginsubmit').click(); true")
    browser.wait_for("window.rcmail && rcmail.env.task === 'mail' && "
                     "document.querySelector('#messagelist') !== null && !rcmail.busy")
    browser.navigate(f"{url}?_task=mail&_action=compose")
    browser.wait_for("window.rcmail && rcmail.env.action === 'compose' && !rcmail.busy")
    for folder in ("Sent", "Junk", "INBOX"):
        browser.navigate(f"{url}?_task=mail&_mbox={folder}")
        browser.wait_for("window.rcmail && rcmail.env.mailbox && !rcmail.busy")
    token = browser.evaluate("rcmail.env.request_token")
    browser.navigate(f"{url}?_task=logout&_token={token}")
    browser.wait_for("document.querySelector('#rcmloginuser') !== null")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    info = status()
    ssh_config = info["vps"]["ssh_config"]
    password = tomllib.loads(Path(info["secrets_file"]).read_text())["passwords"][ALICE]
    idle = sample(ssh_config)
    for _ in range(IDLE_WAIT):  # the workers of an earlier use leave after their idle timeout
        if idle["php-fpm"][0] <= 1:
            break
        time.sleep(1)
        idle = sample(ssh_config)
    print(line("idle", idle))
    peak: dict[str, tuple[int, int]] = dict(idle)
    done = threading.Event()

    def watch():
        while not done.is_set():
            now = sample(ssh_config)
            if sum(kb for _, kb in now.values()) > sum(kb for _, kb in peak.values()):
                peak.update(now)
            done.wait(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with tempfile.TemporaryDirectory(prefix="bench-webmail-") as home:
        browser = Browser(Path(home), info["acme"]["root_ca_file"], {MAIL_HOSTNAME: VPS4})
        try:
            for _ in range(args.rounds):
                session(browser, password)
        finally:
            browser.close()
    done.set()
    watcher.join()
    print(line(f"peak over {args.rounds} session(s)", peak))
    print(line("after (workers not yet idle)", sample(ssh_config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
