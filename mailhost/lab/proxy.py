"""The VPS's only way out: tinyproxy on the host side of its link (198.51.100.1:3128), for apt.

It listens on the lab address only, serves only the lab subnet, and only forwards to the
package mirrors in ``ALLOWED_HOSTS``.
"""

from __future__ import annotations

import socket

from .common import HOST4, LAB_NET4, LAB_NET6, PROXY_PORT, Paths, Proc, spawn, wait_for

ALLOWED_HOSTS = ("deb.debian.org", "security.debian.org", "pypi.org", "files.pythonhosted.org")


def config_text(paths: Paths) -> str:
    return (
        "User tinyproxy\nGroup tinyproxy\n"
        f"Port {PROXY_PORT}\nListen {HOST4}\n"
        "Timeout 600\nMaxClients 50\nLogLevel Info\n"
        f"Allow {LAB_NET4}\nAllow {LAB_NET6}\n"
        "ConnectPort 443\nDisableViaHeader Yes\n"
        f'Filter "{paths.proxy / "allowed-hosts"}"\n'
        "FilterType fnmatch\nFilterDefaultDeny Yes\n"
    )


def listening() -> bool:
    try:
        with socket.create_connection((HOST4, PROXY_PORT), timeout=1):
            return True
    except OSError:
        return False


def start(paths: Paths) -> Proc:
    """Start tinyproxy in the foreground (it logs to our log file); return its PID."""
    paths.proxy.mkdir(parents=True, exist_ok=True)
    (paths.proxy / "allowed-hosts").write_text("".join(h + "\n" for h in ALLOWED_HOSTS))
    config = paths.proxy / "tinyproxy.conf"
    config.write_text(config_text(paths))
    log = paths.logs / "tinyproxy.log"
    proc = spawn(["tinyproxy", "-d", "-c", str(config)], log)
    wait_for(listening, 10, "tinyproxy", proc=proc, log=log)
    return proc
