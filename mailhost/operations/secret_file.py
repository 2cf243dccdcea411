"""A file whose content is secret (credentials, password hashes) on the host."""

from __future__ import annotations

import hashlib
import io

from pyinfra import host
from pyinfra.api import FunctionCommand, OperationError, QuoteString, StringCommand, operation
from pyinfra.facts.files import File, Sha256File

from mailhost.facts import in_place
from mailhost.operations import run_or_fail
from mailhost.paths import SECRET_STAGING as STAGING
from mailhost.secrets import Secret


@operation()
def secret_file(path: str, content: Secret, user: str = "root", group: str = "root",
                mode: str = "600"):
    """
    Upload a file whose content is secret when it differs; unlike files.put, never show it,
    not even with ``--diff``.

    + path: where the file goes on the host
    + content: the file's text, wrapped in ``Secret`` so that no label or log shows it
    + user, group, mode: the file's owner, group and mode

    The content goes through a root-only staging directory and is installed with its final
    owner and mode in one step, so it is never readable by others, even for a moment.
    """
    data = content.reveal().encode()
    digest = hashlib.sha256(data).hexdigest()
    if in_place(path, "f", mode, user, group, digest):  # read with facts.read_paths
        return
    if host.get_fact(Sha256File, path=path) != digest:
        yield FunctionCommand(_install, (path, content, user, group, mode), {})
        return
    info = host.get_fact(File, path=path) or {}
    if (info.get("user"), info.get("group"), info.get("mode")) != (user, group, int(mode)):
        yield StringCommand("chown", QuoteString(f"{user}:{group}"), QuoteString(path),
                            "&& chmod", mode, QuoteString(path))


def _install(path: str, content: Secret, user: str, group: str, mode: str):
    staged = f"{STAGING}/{hashlib.sha256(path.encode()).hexdigest()[:16]}"
    run_or_fail(StringCommand("mkdir -p -m 0700", STAGING, "&& chmod 0700", STAGING))
    if not host.put_file(io.BytesIO(content.reveal().encode()), staged):
        raise OperationError(f"could not upload {path}")
    run_or_fail(StringCommand("install -o", QuoteString(user), "-g", QuoteString(group),
                              "-m", mode, staged, QuoteString(path), "&& rm -f", staged))

