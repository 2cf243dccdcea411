"""Facts in, commands out: run our operations and host modules against a fake host, the way
pyinfra tests its own operations (the operation's generator called with ``host.get_fact``
answering from a table, and the commands it yields compared)."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

from pyinfra.api import FunctionCommand, StringCommand
from pyinfra.context import ctx_host, ctx_state


class FakeHost:
    """A host whose facts come from ``facts``: {FactClass: value} or {FactClass: {kwargs
    tuple: value}} (kwargs as sorted (name, value) pairs, lists as tuples); a fact not in the
    table is what a fresh host gives: nothing printed, so the fact's default."""

    def __init__(self, facts_table=None, name="mail.example.test", data=None, shell_ok=True,
                 upload_ok=None):
        self.name = name
        self.facts = facts_table or {}
        self.data = SimpleNamespace(get=(data or {}).get)
        self.fact_calls: list[tuple[str, dict]] = []
        self.noops: list[str] = []
        self.commands: list[str] = []
        self.shell_ok = shell_ok
        self.upload_ok = shell_ok if upload_ok is None else upload_ok
        self.uploads: dict[str, bytes] = {}
        self.files: dict[str, bytes] = {}
        self.print_prefix = f"[{name}] "

    def get_fact(self, cls, **kwargs):
        self.fact_calls.append((cls.__name__, kwargs))
        value = self.facts.get(cls)
        if isinstance(value, dict) and value and all(isinstance(k, tuple) for k in value):
            value = value.get(_key(kwargs))
        # as pyinfra: a command that prints nothing gives the fact's default
        return cls().default() if value is None else value

    def noop(self, message):
        self.noops.append(message)

    def run_shell_command(self, command):
        self.commands.append(text(command))
        return self.shell_ok, SimpleNamespace(stdout="", stderr="")

    def put_file(self, handle, path):
        self.uploads[path] = handle.read()
        return self.upload_ok

    def get_file(self, path, handle):
        if path not in self.files:
            return False
        handle.write(self.files[path])
        return True


def _key(kwargs: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))


def key(**kwargs) -> tuple:
    """The key of a fact's value for these arguments, in a FakeHost's table."""
    return _key(kwargs)


def text(command) -> str:
    """A yielded command as text (a FunctionCommand as its function's name)."""
    if isinstance(command, FunctionCommand):
        return f"<{command.function.__name__}>"
    if isinstance(command, StringCommand):
        return command.get_raw_value()
    return str(command)


@contextmanager
def on(host: FakeHost, executing: bool = False):
    """pyinfra's ``host`` and ``state`` are the fake ones inside; nothing read by read_paths
    (what it read is kept on the state, new here)."""
    state = SimpleNamespace(is_executing=executing)
    with ctx_host.use(host), ctx_state.use(state):
        yield host


def run(operation, host: FakeHost, **arguments) -> list:
    """The commands an operation yields on the host (its generator, as pyinfra runs it)."""
    with on(host):
        return list(operation._inner(**arguments))


class Recorder:
    """Stands in for a pyinfra operation (server.shell, files.put...): records each call's
    arguments and answers ``will_change``/``did_change`` as a real one would."""

    def __init__(self, label: str = "", log: list | None = None):
        self.calls: list[dict] = []
        self.label, self.log = label, log if log is not None else []

    def __call__(self, **arguments):
        self.calls.append(arguments)
        self.log.append(f"{self.label}: {arguments.get('name')}")
        return SimpleNamespace(will_change=True, did_change=lambda: True)

    @property
    def names(self) -> list[str]:
        return [call.get("name") for call in self.calls]
