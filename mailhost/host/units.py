"""systemd units of any type (services, sockets, timers): running and enabled, or stopped and
disabled. pyinfra's systemd.service reads services only; these read SystemdUnitState."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand
from pyinfra.operations import server

from mailhost.facts import SystemdUnitState


def running(unit: str, restart: bool = False) -> None:
    """Start and enable a unit; restart it (when it already runs) if its configuration changed."""
    state = host.get_fact(SystemdUnitState, unit=unit)
    if not (state["active"] and state["enabled"]):
        # reset-failed: a unit that hit its start limit in an earlier, failed run starts again
        server.shell(name=f"{unit} running and enabled", commands=[
            StringCommand("systemctl daemon-reload && systemctl reset-failed", QuoteString(unit),
                          "2>/dev/null; systemctl enable --now", QuoteString(unit))])
    elif restart:
        server.shell(name=f"Restart {unit}",
                     commands=[StringCommand("systemctl restart", QuoteString(unit))])


def stopped(unit: str) -> None:
    """Stop and disable a unit, if it exists and runs or is enabled (its ports are released)."""
    state = host.get_fact(SystemdUnitState, unit=unit)
    if state["active"] or state["enabled"]:
        # reset-failed: a daemon that exits non-zero on SIGTERM is left "inactive", not "failed"
        server.shell(name=f"{unit} stopped and disabled", commands=[
            StringCommand("systemctl disable --now", QuoteString(unit),
                          "&& { systemctl reset-failed", QuoteString(unit),
                          "2>/dev/null || true; }")])
