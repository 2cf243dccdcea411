"""pyinfra operations of our own."""

from pyinfra import host
from pyinfra.api import OperationError, StringCommand


def run_or_fail(command: StringCommand) -> None:
    """Run a command on the host from an operation's FunctionCommand; fail the operation if it
    fails."""
    status, _ = host.run_shell_command(command)
    if not status:
        raise OperationError(f"command failed on the host: {command}")
