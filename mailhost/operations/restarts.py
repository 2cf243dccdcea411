"""Restarts owed: a run stopped midway (the laptop's connection gone) must not lose the
restarts its changed files asked for. A marker on the host (paths.RESTARTS_OWED) is written
before the first file a run changes (``owe``, from put_text) and removed once the services have
restarted (``done``, after units.converge); a run that finds it left behind restarts every
service once (``owed_by_a_stopped_run``: which file each read is not known)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand
from pyinfra.context import ctx_state
from pyinfra.operations import server

from mailhost import paths
from mailhost.facts import known_state


def _owing() -> set[str]:
    """The hosts whose marker is queued in this run (kept on pyinfra's state)."""
    run = ctx_state.get()
    if not hasattr(run, "mailhost_restarts_owed"):
        run.mailhost_restarts_owed = set()
    return run.mailhost_restarts_owed


def left_by_a_stopped_run() -> bool:
    """Whether a run stopped midway left the marker (read by read_paths)."""
    known, state = known_state(paths.RESTARTS_OWED)
    return known and state is not None


def _owed() -> bool:
    return host.name in _owing() or left_by_a_stopped_run()


def owe() -> None:
    """The marker, on the host before the first configuration file this run changes."""
    if _owed():
        return
    _owing().add(host.name)
    server.shell(name="Restarts owed from here (cleared once the services have restarted)",
                 commands=[f"mkdir -p {paths.MAILHOST_ETC} && touch {paths.RESTARTS_OWED}"])


def owed_by_a_stopped_run(units: list[str]) -> set[str]:
    """The services among ``units`` to restart because a stopped run left the marker."""
    services = {u for u in units if not u.endswith((".socket", ".timer", ".path"))}
    return services if left_by_a_stopped_run() else set()


def done() -> None:
    """Clear the marker, after the restarts (queued last: a run stopped before this point
    leaves it for the next run)."""
    if _owed():
        server.shell(name="Restarts done",
                     commands=[StringCommand("rm -f", QuoteString(paths.RESTARTS_OWED))])
    _owing().discard(host.name)
