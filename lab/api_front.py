"""The Cloudflare API's real host name, served in the lab: stunnel in front of the emulator.

certbot's Cloudflare plugin on the VPS (Ubuntu's and Debian's packages use the old
python-cloudflare 2.x library) only talks to ``https://api.cloudflare.com``. In the lab that
name resolves to the bridge (the VPS's /etc/hosts), where stunnel terminates TLS with a
certificate from the lab CA (which the VPS's certbot trusts through the ACME CA bundle) and
passes the plain HTTP on to the emulator's port. The emulator itself is unchanged.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from mailhost.settings import CLOUDFLARE_API

from . import certs
from .common import CLOUDFLARE_PORT, HOST4, Paths, Proc, accepts_connections, spawn, wait_for

API_HOSTNAME = urlsplit(CLOUDFLARE_API).hostname
API_PORT = 443


def config_text(paths: Paths, cert, key) -> str:
    return (
        "foreground = yes\n"
        "pid =\n"
        "syslog = no\n"
        "debug = notice\n"
        f"[{API_HOSTNAME}]\n"
        f"accept = {HOST4}:{API_PORT}\n"
        f"connect = {HOST4}:{CLOUDFLARE_PORT}\n"
        f"cert = {cert}\n"
        f"key = {key}\n"
    )


def listening() -> bool:
    return accepts_connections(HOST4, API_PORT)


def start(paths: Paths) -> Proc:
    """Start stunnel in the foreground (it logs to our log file); return its PID."""
    cert, key = certs.ensure_leaf(paths.ca, "cloudflare-api", [API_HOSTNAME], [HOST4], paths.ca)
    folder = paths.root / "api-front"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "stunnel.conf"
    config.write_text(config_text(paths, cert, key))
    log = paths.logs / "api-front.log"
    proc = spawn(["stunnel4", str(config)], log)
    wait_for(listening, 10, "stunnel (Cloudflare API front)", proc=proc, log=log)
    return proc
