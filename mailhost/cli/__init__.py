"""The command lines (scripts/check, rotate-dkim, rotate-tls-key, reports, import-mail): each
reads the inventory here, as ``pyinfra`` does (group_data/ included), and each host's settings
through run.per_host, the one per-host loop (a wrong value: one line naming the host)."""

from __future__ import annotations

import argparse
import os

from pyinfra.api import Config, State
from pyinfra.api.connect import connect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.inventory import Inventory
from pyinfra.context import ctx_config, ctx_inventory, ctx_state


def read_inventory(path: str, connect: bool = False) -> Inventory:
    """The inventory as pyinfra reads it; with ``connect``, every host connected that can be
    (no host connected otherwise)."""
    # imported here: importing pyinfra_cli patches the process with gevent (sockets, ssl),
    # which only a command line that reads an inventory wants
    from pyinfra_cli.inventory import make_inventory

    if not os.path.exists(path):
        raise PyinfraError(f"no inventory file {path}")
    state, config = State(), Config()
    state.cwd = os.getcwd()
    ctx_state.set(state)
    ctx_config.set(config)
    inventory = make_inventory(path, cwd=state.cwd)
    ctx_inventory.set(inventory)
    if connect:
        state.init(inventory, config)
        connect_all(state)
    return inventory


def connect_host(inventory: Inventory, name: str):
    """Connect one host of an inventory read by read_inventory (the others stay unconnected);
    PyinfraError when it cannot be reached."""
    from pyinfra.context import ctx_state

    state = ctx_state.get()
    state.init(inventory, ctx_config.get())
    host = inventory.get_host(name)
    host.connect(show_errors=False, raise_exceptions=True)
    return host


def arguments(prog: str, doc: str) -> argparse.ArgumentParser:
    """A command line's parser, with the inventory it reads as its first argument."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument("inventory", help="a pyinfra inventory, e.g. inventory/prod.py")
    return parser
