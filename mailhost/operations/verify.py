"""The verification that ends every deploy: mailhost.checks, run after the changes."""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import OperationError, operation
from pyinfra.context import state

from mailhost.checks import failure_line, render_table, run_checks
from mailhost.secrets import Secrets
from mailhost.settings import Settings


@operation()
def checks(settings: Settings, secrets: Secrets):
    """
    Run every check of the mail host once the changes are made; never a change itself.

    + settings: the host's validated settings
    + secrets: the host's secrets (a mail user's password, for the submission check); give the
      operation a ``name=`` so that nothing of them reaches its label

    pyinfra calls an operation's body twice: while it prepares (and for ``--dry``), where this
    only notes that the checks run later, and when it executes, where the checks run here, in
    the body, and the table is logged. Nothing is ever yielded, so the operation reports
    "No changes"; a failed required check raises OperationError, which fails the run with one
    line naming the failed checks.

    **Example:**

    .. code:: python

        verify.checks(name="Checks of the mail host", settings=settings, secrets=secrets)
    """
    if not state.is_executing:
        host.noop("checks run after the changes")
        return
    results = run_checks(settings, secrets, host)
    for line in render_table(results).splitlines():
        logger.info(f"{host.print_prefix}{line}")
    failed = failure_line(host.name, results)
    if failed:
        raise OperationError(failed)
    yield from ()
