"""``scripts/rotate-tls-key INVENTORY MAIL_HOSTNAME``: start a DANE key rollover now.

For a host with ``dane = "auto"`` whose certificate's key is to change (compromised, or due):
marks the request on the controller (``secrets_dir/tls/MAIL_HOSTNAME.rollover-asked``);
nothing else changes until the next deploy, which makes the next key on the host and publishes
its TLSA beside the current one. The later deploys switch the certificate to it once every
authoritative server has answered the new TLSA set for twice its TTL (mailhost.keys.dane). The
inventory is read, not connected to.
"""

from __future__ import annotations

import sys

# first, as pyinfra's own command line does: it patches the process with gevent (sockets, ssl)
import pyinfra_cli  # noqa: F401
from pyinfra.api.exceptions import PyinfraError

from mailhost.cli import arguments, read_inventory
from mailhost.keys.dane import rollover_request
from mailhost.run import per_host
from mailhost.settings import load_settings


def request(inventory: str, mail_hostname: str) -> str:
    """Mark the rollover of the inventory's host named ``mail_hostname``; the mark's path."""
    hosts = list(per_host(read_inventory(inventory), load_settings).values())  # no secrets
    found = [s for s in hosts if s.mail_hostname == mail_hostname.rstrip(".").lower()]
    if not found:
        names = ", ".join(s.mail_hostname for s in hosts)
        raise PyinfraError(f"mail_hostname = {mail_hostname!r}: expected one of {names}")
    settings = found[0]
    if settings.dane != "auto":
        raise PyinfraError(f"dane = {settings.dane} on {settings.mail_hostname}: a key rollover "
                           "publishes TLSA records; expected dane = auto")
    path = rollover_request(settings.secrets_dir, settings.mail_hostname)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text("asked\n")
    return str(path)


def main(argv=None) -> int:
    parser = arguments("scripts/rotate-tls-key", __doc__)
    parser.add_argument("mail_hostname", help="a host's mail_hostname, e.g. mail.example.com")
    args = parser.parse_args(argv)
    try:
        path = request(args.inventory, args.mail_hostname)
    except PyinfraError as error:
        print(f"scripts/rotate-tls-key: {error}", file=sys.stderr)
        return 2
    print(f"{args.mail_hostname}: key rollover asked for in {path}; the next deploy makes the "
          "next key and publishes its TLSA (pyinfra INVENTORY deploy.py --dry shows it first)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
