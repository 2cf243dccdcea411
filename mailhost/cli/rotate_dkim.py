"""``scripts/rotate-dkim INVENTORY DOMAIN``: start a DKIM key rotation now (a compromised key).

Marks the domain's rotation state on the controller (``rotate_now``); nothing else changes
until the next deploy, which makes and publishes the next key beside the current one. The
later deploys finish the rotation as usual: signing switches once the new record is answered
by every authoritative server for twice its TTL, and the old record and key go
``dkim_retire_days`` after that. The inventory is read, not connected to.
"""

from __future__ import annotations

import sys

# first, as pyinfra's own command line does: it patches the process with gevent (sockets, ssl)
import pyinfra_cli  # noqa: F401
from pyinfra.api.exceptions import PyinfraError

from mailhost.cli import arguments, read_inventory
from mailhost.keys.dkim import request_rotation
from mailhost.run import per_host
from mailhost.settings import load_settings


def main(argv=None) -> int:
    parser = arguments("scripts/rotate-dkim", __doc__)
    parser.add_argument("domain", help="a mail domain of the inventory, e.g. example.com")
    args = parser.parse_args(argv)
    try:
        hosts = per_host(read_inventory(args.inventory), load_settings)  # no secrets needed
        serving = [s for s in hosts.values() if args.domain in s.mail_domains]
        if not serving:
            raise PyinfraError(f"domain = {args.domain}: expected a mail domain of a host of "
                               f"{args.inventory}")
        for settings in serving:
            path = request_rotation(settings, args.domain)
            print(f"{args.domain}: rotation asked for in {path}; the next deploy publishes a "
                  "new key (pyinfra INVENTORY deploy.py --dry shows it first)")
    except (PyinfraError, ValueError) as error:
        print(f"scripts/rotate-dkim: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
