"""ACME: Pebble (Let's Encrypt's test CA) on the bridge, https://198.51.100.1:14000/dir.

Pebble resolves names, and validates DNS-01, through the lab's Knot; it validates HTTP-01 on
port 80 and TLS-ALPN-01 on 443 of the name's address (the VPS). Its HTTPS listener has a
certificate from the lab CA. Pebble makes a new issuing root on every start: it is fetched
from the management port into ``.lab/pebble-root.pem``, and ``.lab/acme-ca-bundle.pem`` holds
both (the lab CA, which certbot must trust to talk to Pebble, and Pebble's root).
"""

from __future__ import annotations

import json
import ssl
import urllib.request

from . import certs
from .common import (
    ACME_NAME,
    DNS_PORT,
    HOST4,
    HOST6,
    PEBBLE_MGMT_PORT,
    PEBBLE_PORT,
    LabError,
    Paths,
    Proc,
    spawn,
    wait_for,
)

DIRECTORY_URL = f"https://{HOST4}:{PEBBLE_PORT}/dir"
ROOT_URL = f"https://{HOST4}:{PEBBLE_MGMT_PORT}/roots/0"
ENVIRONMENT = {
    "PEBBLE_VA_NOSLEEP": "1",  # no random delay before validating
    "PEBBLE_WFE_NONCEREJECT": "0",  # do not reject 5% of good nonces
    "PEBBLE_AUTHZREUSE": "0",  # validate every order: deterministic tests
}


def _get(url: str, paths: Paths) -> bytes:
    context = ssl.create_default_context(cafile=str(paths.ca / "lab-ca.pem"))
    with urllib.request.urlopen(url, context=context, timeout=5) as response:
        return response.read()


def directory(paths: Paths) -> dict | None:
    """Pebble's ACME directory, or None if it does not answer."""
    try:
        return json.loads(_get(DIRECTORY_URL, paths))
    except (OSError, ValueError):
        return None


def start(paths: Paths) -> Proc:
    """Start Pebble, wait for its directory, write the root CA and the CA bundle."""
    cert, key = certs.ensure_leaf(paths.pebble, "listener", [ACME_NAME, "localhost"],
                                  [HOST4, HOST6], paths.ca)
    config = paths.pebble / "pebble-config.json"
    config.write_text(json.dumps({"pebble": {
        "listenAddress": f"{HOST4}:{PEBBLE_PORT}",
        "managementListenAddress": f"{HOST4}:{PEBBLE_MGMT_PORT}",
        "certificate": str(cert),
        "privateKey": str(key),
        "httpPort": 80,
        "tlsPort": 443,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }}, indent=2))
    log = paths.logs / "pebble.log"
    proc = spawn(["pebble", "-config", str(config), "-dnsserver", f"{HOST4}:{DNS_PORT}"],
                 log, env=ENVIRONMENT, cwd=paths.pebble)
    wait_for(lambda: directory(paths), 20, "Pebble", proc=proc, log=log)
    write_bundle(paths)
    return proc


def write_bundle(paths: Paths) -> None:
    """Fetch Pebble's current root into pebble-root.pem; bundle it with the lab CA."""
    try:
        root = _get(ROOT_URL, paths).decode()
    except OSError as error:
        raise LabError(f"could not fetch Pebble's root from {ROOT_URL}: {error}") from error
    paths.pebble_root.write_text(root)
    lab_ca = (paths.ca / "lab-ca.pem").read_text()
    paths.acme_ca_bundle.write_text(
        "# mailhost lab CA: signed Pebble's HTTPS listener (ACME API)\n" + lab_ca
        + "# Pebble's issuing root (certificates Pebble issues chain to it)\n" + root
    )
