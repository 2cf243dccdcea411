"""The VPS's only way out: tinyproxy on the host side of its link (198.51.100.1:3128 in lane 0),
for apt.

It listens on the lane's address only, serves only the lane's subnet, only lets through the
hosts of the package mirrors the VPS image uses (``images.mirror_hosts``), and forwards those
requests to the package cache every lane shares (apt_cache.py: apt-cacher-ng on loopback).
"""

from __future__ import annotations

from pathlib import Path

from . import apt_cache
from .common import (
    HOST4,
    LAB_NET4,
    LAB_NET6,
    PROXY_PORT,
    Paths,
    Proc,
    accepts_connections,
    spawn,
    wait_for,
)


def allow_list(paths: Paths) -> Path:
    return paths.proxy / "allowed-hosts"


def allowed_hosts(paths: Paths) -> list[str]:
    """The hosts the running proxy lets through ([] before it first started)."""
    try:
        return allow_list(paths).read_text().split()
    except OSError:
        return []


def config_text(paths: Paths) -> str:
    return (
        "User tinyproxy\nGroup tinyproxy\n"
        f"Port {PROXY_PORT}\nListen {HOST4}\n"
        "Timeout 600\nMaxClients 50\nLogLevel Info\n"
        f"Allow {LAB_NET4}\nAllow {LAB_NET6}\n"
        "ConnectPort 443\nDisableViaHeader Yes\n"
        f"Upstream http {apt_cache.ADDRESS}:{apt_cache.PORT}\n"
        f'Filter "{allow_list(paths)}"\n'
        "FilterType fnmatch\nFilterDefaultDeny Yes\n"
    )


def listening() -> bool:
    return accepts_connections(HOST4, PROXY_PORT)


def start(paths: Paths, hosts: list[str]) -> Proc:
    """Start tinyproxy in the foreground (it logs to our log file), forwarding to ``hosts``
    only (exact names); return its PID."""
    paths.proxy.mkdir(parents=True, exist_ok=True)
    allow_list(paths).write_text("".join(h + "\n" for h in hosts))
    config = paths.proxy / "tinyproxy.conf"
    config.write_text(config_text(paths))
    log = paths.logs / "tinyproxy.log"
    proc = spawn(["tinyproxy", "-d", "-c", str(config)], log)
    wait_for(listening, 10, "tinyproxy", proc=proc, log=log)
    return proc
