"""The DKIM key operation: one private key, the same on the controller and on the host."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path, PurePosixPath

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, OperationError, QuoteString, StringCommand, operation
from pyinfra.facts.files import File, Sha256File

from mailhost.dkim import generate_key, read_local_key, save_local_key
from mailhost.facts import in_place
from mailhost.operations import run_or_fail


@operation()
def key(local_path: str, remote_path: str | None, kind: str = "rsa", rsa_bits: int = 2048,
        owner: str = "root"):
    """
    Keep one DKIM private key identical on the controller and the host.

    + local_path: the key on the controller (in the gitignored secrets directory)
    + remote_path: where the host keeps it (0600, in a 0700 directory); None keeps the key
      on the controller only (a host whose MTA is managed elsewhere)
    + kind: ``rsa`` or ``ed25519``, for a key generated here
    + rsa_bits: the size of a generated RSA key
    + owner: the user the host's key file belongs to (the signer: opendkim, chasquid...)

    With a local key, the host gets it. Without one, the host's key is read back (a new
    controller); with neither, a key is generated on the controller when the operation runs,
    never at ``--dry``. The key never appears in a command line or an operation's label.
    """
    local = read_local_key(Path(local_path))
    if remote_path is None:
        if local is None:
            yield FunctionCommand(_generate, (kind, rsa_bits, local_path), {})
        return
    if local is not None and in_place(remote_path, "f", "600", owner,
                                      sha256=hashlib.sha256(local).hexdigest()):
        host.noop(f"DKIM key {remote_path} is in place")  # read with facts.read_paths
        return
    remote_sha = host.get_fact(Sha256File, path=remote_path)
    if local is None and remote_sha is not None:
        yield FunctionCommand(_fetch, (remote_path, local_path), {})
        return
    if local is None:
        yield FunctionCommand(_generate, (kind, rsa_bits, local_path), {})
    elif remote_sha == hashlib.sha256(local).hexdigest():
        info = host.get_fact(File, path=remote_path) or {}
        if info.get("user") != owner or info.get("mode") != 600:
            yield FunctionCommand(_set_owner, (remote_path, owner), {})
        else:
            host.noop(f"DKIM key {remote_path} is in place")
        return
    yield FunctionCommand(_upload, (local_path, remote_path, owner), {})


def _generate(kind: str, rsa_bits: int, local_path: str):
    save_local_key(Path(local_path), generate_key(kind, rsa_bits))
    logger.info(f"    generated a new {kind} DKIM key in {local_path}")


def _upload(local_path: str, remote_path: str, owner: str):
    directory = PurePosixPath(remote_path).parent
    # the key's own directory is 0700 and root's until the key is in place, then the signer's
    run_or_fail(StringCommand("mkdir -p -m 0755", QuoteString(str(directory.parent)),
                              "&& mkdir -p -m 0700", QuoteString(str(directory)),
                              "&& chown root", QuoteString(str(directory)),
                              "&& chmod 0700", QuoteString(str(directory))))
    pem = Path(local_path).read_bytes()
    if not host.put_file(io.BytesIO(pem), remote_path):
        raise OperationError(f"could not upload the DKIM key to {remote_path}")
    _set_owner(remote_path, owner)


def _set_owner(remote_path: str, owner: str):
    directory = str(PurePosixPath(remote_path).parent)
    run_or_fail(StringCommand("chmod 0600", QuoteString(remote_path), "&& chown",
                              QuoteString(owner), QuoteString(remote_path),
                              QuoteString(directory)))


def _fetch(remote_path: str, local_path: str):
    buffer = io.BytesIO()
    if not host.get_file(remote_path, buffer):
        raise OperationError(f"could not read the DKIM key {remote_path} back from the host")
    save_local_key(Path(local_path), buffer.getvalue())
    logger.info(f"    read the host's DKIM key back into {local_path}")

