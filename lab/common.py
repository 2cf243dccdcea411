"""What every part of the lab shares: addresses, names, paths, and starting/stopping by PID.

Everything a lane makes is named with its prefix (``mhlab0-`` for lane 0); every process it
starts is recorded (PID and start time) in ``<checkout>/.lab/lane-N/state.json`` and stopped
by that PID only.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# --- lanes: labs side by side on one machine, sharing nothing ---
# MAILHOST_LAB_LANE=N (0..3) picks a lane: its own /26 of 198.51.100.0/24 and /64 of
# 2001:db8::/32 (never the machine's own 192.0.2.0/24, fd00::/64, nor 203.0.113.0/24), its own
# bridge, namespaces, nftables table, state directory, secrets, processes and lock. Every
# listener binds the lane's own addresses, so each lane uses the same port numbers.
LANES = 4
LANES_DIR = Path("/run/mailhost-lab")  # each lane's lock and holder, for the whole machine


@dataclass(frozen=True)
class Lane:
    """One lab lane: its number, address blocks and the prefix of every name it makes."""

    number: int

    @classmethod
    def from_environment(cls) -> Lane:
        text = os.environ.get("MAILHOST_LAB_LANE", "0").strip() or "0"
        if not text.isdigit() or int(text) >= LANES:
            raise LabError(f"MAILHOST_LAB_LANE={text!r}: expected a lane number from 0 to "
                           f"{LANES - 1}")
        return cls(int(text))

    @property
    def net4(self) -> str:
        return f"198.51.100.{64 * self.number}/26"

    @property
    def net6(self) -> str:
        return f"2001:db8:0:{self.number:x}::/64"

    def ipv4(self, host: int) -> str:
        """The lane's IPv4 address number HOST (1..62) of its /26."""
        return f"198.51.100.{64 * self.number + host}"

    def ipv6(self, host: int) -> str:
        """The lane's IPv6 address ::HOST (written in hex as in 2001:db8::10)."""
        return str(ipaddress.ip_address(f"2001:db8:0:{self.number:x}::{host}"))

    @property
    def prefix(self) -> str:
        """What every namespace, link and nftables table of this lane starts with."""
        return f"mhlab{self.number}-"

    @property
    def lock(self) -> Path:
        """One lab command at a time in this lane, machine-wide (not per checkout)."""
        return LANES_DIR / f"lane-{self.number}.lock"

    @property
    def holder(self) -> Path:
        """Names the checkout whose lab is up in this lane."""
        return LANES_DIR / f"lane-{self.number}.checkout"


class LabError(Exception):
    """The lab could not be brought up (or down); the message says what and where to look."""


try:
    LANE = Lane.from_environment()
except LabError as error:  # one line, not a traceback: the lab cannot start in no lane
    raise SystemExit(f"lab: {error}") from None
PREFIX_LEN4, PREFIX_LEN6 = 26, 64
LAB_NET4, LAB_NET6 = LANE.net4, LANE.net6
HOST4, HOST6 = LANE.ipv4(1), LANE.ipv6(1)  # bridge: Knot, Pebble, proxy, emulator
RX4, RX6 = LANE.ipv4(20), LANE.ipv6(20)
PREFIX = LANE.prefix
BRIDGE = f"{PREFIX}br"
MAIL_DOMAIN = "example.test"
SHOP_DOMAIN = "shop.test"  # a second mail domain, in a zone of its own (the fleet's third VPS)
MAIL_DOMAINS = [MAIL_DOMAIN, SHOP_DOMAIN]


@dataclass(frozen=True)
class Vps:
    """One VPS of a lane's lab: ``key`` names its namespace, rootfs and processes."""

    key: str  # "vps" (the first), "vps2", "vps3"
    hostname: str
    number: int  # its addresses in the lane: LANE.ipv4(number), LANE.ipv6(number)

    ipv4 = property(lambda self: LANE.ipv4(self.number))
    ipv6 = property(lambda self: LANE.ipv6(self.number))
    netns = property(lambda self: f"{PREFIX}{self.key}")
    short = property(lambda self: self.hostname.split(".")[0])
    domain = property(lambda self: self.hostname.split(".", 1)[1])


# `scripts/lab up --vps N` boots the first N: a mail host, a second host of its domain (a
# backup MX), a mail host of another domain (inventory/lab-fleet.py)
FLEET = (Vps("vps", "mail.example.test", 10), Vps("vps2", "mx2.example.test", 11),
         Vps("vps3", "mail.shop.test", 12))
VPS4, VPS6 = FLEET[0].ipv4, FLEET[0].ipv6  # the first VPS
VPS_NETNS, RX_NETNS = FLEET[0].netns, f"{PREFIX}rx"
MAIL_HOSTNAME = FLEET[0].hostname
RX_DOMAIN = "example.net"
RX_HOSTNAME = "mx.example.net"
# while this file is in the receiver's store, every recipient gets a temporary failure (a
# receiver down for a while: mail waits in the sender's queue)
RX_TEMPFAIL_FLAG = "TEMPFAIL"
LAB_DOMAIN = "lab.test"  # ns.lab.test (Knot), acme.lab.test (Pebble)
DNSBL_ZONE = "bl.lab.test"
NS_NAME = "ns.lab.test"
ACME_NAME = "acme.lab.test"
TSIG_KEY_NAME = "mailhost-lab"
ACME_TSIG_KEY_NAME = "mailhost-lab-acme"  # DNS-01 only: the _acme-challenge TXT record

# --- ports ---
DNS_PORT = 53
PROXY_PORT = 3128
PEBBLE_PORT, PEBBLE_MGMT_PORT = 14000, 15000
CLOUDFLARE_PORT = 8443
POWERDNS_PORT, POWERDNS_API_PORT = 5300, 8081  # the powerdns world (MAILHOST_LAB_PROVIDER)
SMTP_PORT = 25

# --- caches outside the checkout ---
CACHE_DIR = Path(os.environ.get("MAILHOST_LAB_CACHE", "/var/cache/mailhost-lab"))

CHECKOUT = Path(__file__).resolve().parents[1]


def lab_world() -> str:
    """Who serves the mail zones: "powerdns" (MAILHOST_LAB_PROVIDER=powerdns: PowerDNS is
    their primary, Knot serves them to everyone as its secondary) or "knot"."""
    return "powerdns" if os.environ.get("MAILHOST_LAB_PROVIDER") == "powerdns" else "knot"


@contextmanager
def cache_lock(name: str):
    """One lane at a time builds or starts the shared thing NAME in CACHE_DIR."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@dataclass(frozen=True)
class Paths:
    """Where a lane's lab keeps its runtime state: ``<checkout>/.lab/lane-N/``."""

    root: Path

    @classmethod
    def for_checkout(cls, checkout: Path = CHECKOUT, lane: Lane = LANE) -> Paths:
        return cls(Path(checkout).resolve() / ".lab" / f"lane-{lane.number}")

    state = property(lambda self: self.root / "state.json")
    logs = property(lambda self: self.root / "logs")
    ssh = property(lambda self: self.root / "ssh")
    ssh_key = property(lambda self: self.root / "ssh" / "id_ed25519")
    known_hosts = property(lambda self: self.root / "ssh" / "known_hosts")
    ssh_config = property(lambda self: self.root / "ssh" / "config")
    secrets_file = property(lambda self: self.root / "secrets.toml")
    secrets_dir = property(lambda self: self.root / "secrets")
    ca = property(lambda self: self.root / "ca")
    pebble = property(lambda self: self.root / "pebble")
    pebble_root = property(lambda self: self.root / "pebble-root.pem")
    acme_ca_bundle = property(lambda self: self.root / "acme-ca-bundle.pem")
    knot = property(lambda self: self.root / "knot")
    proxy = property(lambda self: self.root / "tinyproxy")
    cloudflare = property(lambda self: self.root / "cloudflare")
    powerdns = property(lambda self: self.root / "powerdns")
    received = property(lambda self: self.root / "received")
    vps_rootfs = property(lambda self: self.root / "vps-rootfs")  # the first VPS's

    def rootfs(self, vps: Vps) -> Path:
        return self.root / f"{vps.key}-rootfs"


def run(*args: str, check: bool = True, capture: bool = True, timeout: float = 120,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run a command; on failure raise LabError with its stderr."""
    result = subprocess.run(args, capture_output=capture, text=True, timeout=timeout,
                            input=input)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip() if capture else ""
        raise LabError(f"{' '.join(args)} failed ({result.returncode}): {detail}")
    return result


class StartStop:
    """``with thing:`` starts it (``start()``, which returns it) and stops it at the end
    (``stop()``)."""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --- processes: start detached, remember (pid, start time), stop by PID ---

def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


@dataclass(frozen=True)
class Proc:
    """A process the lab started: its PID and start time (guards against PID reuse)."""

    pid: int
    started: int

    @classmethod
    def of(cls, pid: int) -> Proc:
        started = start_time(pid)
        if started is None:
            raise LabError(f"process {pid} exited right after it was started")
        return cls(pid, started)

    def alive(self) -> bool:
        return start_time(self.pid) == self.started

    def to_json(self) -> dict:
        return {"pid": self.pid, "started": self.started}

    @classmethod
    def from_json(cls, data: dict) -> Proc:
        return cls(int(data["pid"]), int(data["started"]))

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """Send ``sig``, wait up to ``timeout``, then SIGKILL; only if it is still our process."""
        if not self.alive():
            return
        os.kill(self.pid, sig)
        if self.wait_exit(timeout):
            return
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.wait_exit(5)

    def wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return True
            _reap(self.pid)
            time.sleep(0.1)
        return not self.alive()


def _reap(pid: int) -> None:
    """Collect a child's exit status so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def spawn(args: list[str], log: Path, env: dict | None = None, cwd: Path | None = None) -> Proc:
    """Start a daemon in its own session (it survives the CLI), output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, **(env or {})}, cwd=cwd,
        )
    return Proc.of(process.pid)


def log_tail(log: Path, lines: int = 8) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def accepts_connections(address: str, port: int) -> bool:
    """Whether something accepts a TCP connection at ``address``, ``port`` (within a second)."""
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(check, timeout: float, what: str, proc: Proc | None = None,
             log: Path | None = None, interval: float = 0.2):
    """Poll ``check()`` until it returns something truthy; LabError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if proc is not None and not proc.alive():
            raise LabError(f"{what}: the process exited. Log {log}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            tail = f" Log {log}:\n{log_tail(log)}" if log else ""
            raise LabError(f"{what}: not ready after {timeout:.0f}s.{tail}")
        time.sleep(interval)


# --- state file ---

def load_state(paths: Paths) -> dict:
    try:
        return json.loads(paths.state.read_text())
    except (OSError, ValueError):
        return {}


def save_state(paths: Paths, state: dict) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    temporary = paths.state.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n")
    temporary.replace(paths.state)


def read_secrets(paths: Paths) -> dict[str, str]:
    """The lab's secrets file (a flat TOML table of strings)."""
    import tomllib

    try:
        return tomllib.loads(paths.secrets_file.read_text())
    except OSError:
        return {}
