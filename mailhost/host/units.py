"""systemd units of any type (services, sockets, timers): running and enabled, or stopped and
disabled. Every component activates through here; the states of all the units concerned are
read in one command (facts.SystemdUnitStates)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand
from pyinfra.operations import server

from mailhost import paths
from mailhost.facts import SystemdUnitStates
from mailhost.host import _owing, restarts_owed_before, restarts_owed_from_here

NOT_THERE = {"active": False, "enabled": False}


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


def owed_by_a_stopped_run(units: list[str]) -> set[str]:
    """The services among ``units`` to restart because a run stopped midway left the
    restarts-owed marker: which of its changed files each read is unknown, so all of them."""
    services = {u for u in units if not u.endswith((".socket", ".timer", ".path"))}
    return services if restarts_owed_before() else set()


def restarts_done() -> None:
    """Clear the restarts-owed marker, after the restarts (queued last: a run stopped before
    this point leaves it for the next run)."""
    if restarts_owed_from_here():
        server.shell(name="Restarts done",
                     commands=[StringCommand("rm -f", QuoteString(paths.RESTARTS_OWED))])
    _owing().discard(host.name)
