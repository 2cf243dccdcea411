"""The verification that ends every deploy: mailhost.checks, run after the changes."""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, operation
from pyinfra.context import state

from mailhost.checks import failure_line, render_table
from mailhost.secrets import Secrets
from mailhost.settings import Settings
from mailhost.settings.fleet import ALONE, FleetView


@operation()
def checks(settings: Settings, secrets: Secrets, mta, fleet: FleetView = ALONE):
    """
    Run every check of the mail host once the changes are made; never a change itself.

    + settings: the host's validated settings
    + secrets: the host's secrets (a mail user's password, for the submission check); give the
      operation a ``name=`` so that nothing of them reaches its label
    + mta: the host's MTA profile (mailhost.host.Mta: its units, queue, TLS advice)
    + fleet: the host's part of the inventory (settings.fleet.FleetView: its domains' MX hosts,
      the domains it is the backup MX of)

    pyinfra calls an operation's body twice: while it prepares (and for ``--dry``), where this
    only notes that the checks run later, and when it executes, where the checks run here, in
    the body, and the table is logged. When they pass nothing is yielded, so the operation
    reports "No changes". When a required check fails it yields one command that logs one line
    naming the failed checks and fails, which fails the run (an exception raised here would
    print a gevent traceback instead).

    **Example:**

    .. code:: python

        verify.checks(name="Checks of the mail host", settings=settings, secrets=secrets,
                      mta=mta)
    """
    if not state.is_executing:
        host.noop("checks run after the changes")
        return
    # imported when the checks run: checkdmarc and the checks' clients take about half a
    # second to import, which a --dry run never needs
    from mailhost.checks.all import run_checks

    results = run_checks(settings, secrets, mta, host, fleet)
    for line in render_table(results).splitlines():
        logger.info(f"{host.print_prefix}{line}")
    failed = failure_line(host.name, results)
    if failed:
        yield FunctionCommand(_fail, (failed,), {})


def _fail(state, host, line: str) -> bool:
    """Log the line; False fails the operation (pyinfra passes state and host first)."""
    logger.error(f"{host.print_prefix}{line}")
    return False
