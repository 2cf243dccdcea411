"""``scripts/rotate-dkim INVENTORY DOMAIN``: start a DKIM key rotation now (a compromised key).

Marks the domain's rotation state on the controller (``rotate_now``); nothing else changes
until the next deploy, which makes and publishes the next key beside the current one. The
later deploys finish the rotation as usual: signing switches once the new record is answered
by every authoritative server for twice its TTL, and the old record and key go
``dkim_retire_days`` after that. The inventory is read, not connected to.
"""

from __future__ import annotations

import argparse
import os
import sys

from pyinfra.api import Config, State
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import ctx_config, ctx_inventory, ctx_state
from pyinfra_cli.inventory import make_inventory

from mailhost.keys.dkim import request_rotation
from mailhost.settings import SettingsError, load_settings


def read_inventory(path: str):
    """The inventory as pyinfra reads it (group_data/ included), no host connected."""
    state, config = State(), Config()
    state.cwd = os.getcwd()
    ctx_state.set(state)
    ctx_config.set(config)
    inventory = make_inventory(path, cwd=state.cwd)
    ctx_inventory.set(inventory)
    return inventory


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/rotate-dkim",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("inventory", help="a pyinfra inventory, e.g. inventory/prod.py")
    parser.add_argument("domain", help="a mail domain of the inventory, e.g. example.com")
    args = parser.parse_args(argv)
    try:
        if not os.path.exists(args.inventory):
            raise PyinfraError(f"no inventory file {args.inventory}")
        hosts = {}
        for host in read_inventory(args.inventory):
            try:
                hosts[host.name] = load_settings(host.data.dict())  # no secrets needed
            except SettingsError as error:
                raise PyinfraError(f"{host.name}: {error}") from None
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
