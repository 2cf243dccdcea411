"""systemd units of any type (services, sockets, timers): running and enabled, or stopped and
disabled. Every component activates through here; the states of all the units concerned are
read in one command (facts.SystemdUnitStates)."""

from __future__ import annotations

from types import MappingProxyType

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand
from pyinfra.operations import server

from mailhost.facts import SystemdUnitStates

NOT_THERE = MappingProxyType({"active": False, "enabled": False})


def converge(running: list[str], stopped: list[str] = (), restart: set[str] = frozenset()) -> None:
    """Stop and disable ``stopped`` (in reverse order: their ports are released first), then
    start and enable ``running`` in order, restarting those in ``restart`` that already run."""
    states = host.get_fact(SystemdUnitStates, units=[*stopped, *running])
    for unit in reversed(stopped):
        _stop(unit, states.get(unit, NOT_THERE))
    for unit in running:
        _start(unit, states.get(unit, NOT_THERE), unit in restart)


def activate(units: list[str], restart: set[str] = frozenset()) -> None:
    """Start and enable units; restart those in ``restart`` if they already run."""
    converge(units, restart=restart)


def _start(unit: str, state: dict, restart: bool) -> None:
    if not (state["active"] and state["enabled"]):
        # reset-failed: a unit that hit its start limit in an earlier, failed run starts again
        server.shell(name=f"{unit} running and enabled", commands=[
            StringCommand("systemctl daemon-reload && systemctl reset-failed", QuoteString(unit),
                          "2>/dev/null; systemctl enable --now", QuoteString(unit))])
    elif restart:
        server.shell(name=f"Restart {unit}",
                     commands=[StringCommand("systemctl restart", QuoteString(unit))])


def _stop(unit: str, state: dict) -> None:
    """Stop and disable a unit, if it runs or is enabled (its ports are released)."""
    if state["active"] or state["enabled"]:
        # reset-failed: a daemon that exits non-zero on SIGTERM is left "inactive", not "failed"
        server.shell(name=f"{unit} stopped and disabled", commands=[
            StringCommand("systemctl disable --now", QuoteString(unit),
                          "&& { systemctl reset-failed", QuoteString(unit),
                          "2>/dev/null || true; }")])

