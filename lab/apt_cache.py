"""The package cache every lane shares: Debian's apt-cacher-ng on the controller's loopback.

Each lane's tinyproxy (proxy.py, the only way out of a VPS, which lets through only the image's
mirror hosts) forwards to it, so a package any VPS of any lane has downloaded once is served
from ``/var/cache/mailhost-lab/apt-cacher-ng`` afterwards: across lanes, worlds, rebuilds and
``down``. The VPS's apt still names the image's real mirrors in its sources (the proxy is
apt's ``Acquire::http::Proxy``), as on a rented VPS.

One apt-cacher-ng runs per machine, started by the first lane that needs it and stopped, by
its PID, by the ``down`` of the last lane up. Its PID and start time are kept beside the cache
(``apt-cacher-ng.json``); a file lock serialises lanes starting and stopping it.
"""

from __future__ import annotations

import json
from pathlib import Path

from .common import CACHE_DIR, LabError, Proc, accepts_connections, cache_lock, spawn, wait_for

ADDRESS, PORT = "127.0.0.1", 3142
HOME = CACHE_DIR / "apt-cacher-ng"
CACHE = HOME / "cache"  # the packages and indexes; survives everything but `rm`
CONFIG_DIR = HOME / "conf"
STATE = HOME / "apt-cacher-ng.json"
LOG = HOME / "apt-cacher-ng.log"
URL = f"http://{ADDRESS}:{PORT}"


def config_text() -> str:
    return (
        "# mailhost lab: the package cache every lane's tinyproxy forwards to (lab/apt_cache.py)\n"
        f"CacheDir: {CACHE}\n"
        f"LogDir: {HOME / 'log'}\n"
        f"SocketPath: {HOME / 'socket'}\n"
        f"Port: {PORT}\n"
        f"BindAddress: {ADDRESS}\n"
        "ForeGround: 1\n"
        # index files are checked against the mirror as apt asks; packages never change
        "ExThreshold: 4\n"
    )


def _recorded() -> Proc | None:
    try:
        return Proc.from_json(json.loads(STATE.read_text()))
    except (OSError, ValueError, KeyError):
        return None


def running() -> Proc | None:
    """The cache's process if it is alive and answers, else None."""
    proc = _recorded()
    if proc is not None and proc.alive() and accepts_connections(ADDRESS, PORT):
        return proc
    return None


def ensure_running() -> Proc:
    """Start apt-cacher-ng unless it runs; return its process."""
    with cache_lock("apt-cacher-ng"):
        proc = running()
        if proc is not None:
            return proc
        stale = _recorded()
        if stale is not None and stale.alive():  # ours, but not answering: start it anew
            stale.stop()
        if accepts_connections(ADDRESS, PORT):
            raise LabError(f"{ADDRESS}:{PORT} is taken by a process the lab did not start "
                           "(a packaged apt-cacher-ng service?): stop it first")
        for folder in (CACHE, CONFIG_DIR, HOME / "log"):
            folder.mkdir(parents=True, exist_ok=True)
        (CONFIG_DIR / "acng.conf").write_text(config_text())
        proc = spawn(["apt-cacher-ng", "-c", str(CONFIG_DIR)], LOG)
        wait_for(lambda: accepts_connections(ADDRESS, PORT), 20, "apt-cacher-ng", proc=proc,
                 log=LOG)
        STATE.write_text(json.dumps(proc.to_json()) + "\n")
        return proc


def stop_unless_used(lanes_up: list[Path]) -> None:
    """Stop the cache's process (by its recorded PID) when no lane is up any more."""
    with cache_lock("apt-cacher-ng"):
        proc = _recorded()
        if lanes_up or proc is None:
            return
        proc.stop()
        STATE.unlink(missing_ok=True)


def size_bytes() -> int:
    """What the cache holds on disk."""
    return sum(path.stat().st_size for path in CACHE.rglob("*") if path.is_file())
