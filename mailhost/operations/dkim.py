"""The DKIM key operations: one private key, the same on the controller and on the host; a
domain's keys and rotation state as one deploy's rotation step leaves them."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path, PurePosixPath

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, OperationError, QuoteString, StringCommand, operation
from pyinfra.facts.files import File, Sha256File
from pyinfra.operations import files

from mailhost.facts import in_place
from mailhost.keys.dkim import (
    generate_key,
    host_key_path,
    host_state_path,
    kinds_for,
    local_key_path,
    local_state_path,
    read_local_key,
    save_local_key,
    selector_for,
    state_text,
)
from mailhost.keys.rotation import Step
from mailhost.operations import run_or_fail
from mailhost.operations.files import put_text
from mailhost.settings import Settings


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



@operation()
def local_file(path: str, text: str):
    """
    A file on the controller (0600, beside the DKIM keys) holds TEXT, written when applied.

    + path: the file on the controller
    + text: what it holds (never a secret: it is compared, and may appear in a diff)
    """
    current = Path(path).read_text() if Path(path).exists() else None
    if current == text:
        host.noop(f"{path} is up to date")
        return
    yield FunctionCommand(_write_local, (path, text), {})


@operation()
def forget_local_key(local_path: str):
    """
    Delete a retired DKIM private key from the controller.

    + local_path: the key in the secrets directory
    """
    if not Path(local_path).exists():
        host.noop(f"{local_path} is gone already")
        return
    yield FunctionCommand(_delete_local, (local_path,), {})


def _write_local(path: str, text: str):
    save_local_key(Path(path), text.encode())


def _delete_local(path: str):
    Path(path).unlink(missing_ok=True)
    logger.info(f"    deleted the retired DKIM key {path}")


def domain_keys(settings: Settings, domain: str, step: Step, owner: str) -> None:
    """Every key a domain's rotation step publishes, on the controller and the host (an ed25519
    key keeps its selector); the retired keys of the step deleted on both; the state saved on
    both (the host's copy is what a new controller recovers it from).

    + owner: the user that signs (owns the keys on the host)
    """
    on_host = settings.mail_manage_host
    wanted = [("rsa", s) for s in step.rotation.published]
    wanted += [(k, selector_for(settings, k)) for k in kinds_for(settings) if k != "rsa"]
    for kind, selector in wanted:
        key(name=f"DKIM {kind} key {selector} of {domain}",
            local_path=str(local_key_path(settings, domain, kind, selector)),
            remote_path=host_key_path(settings, domain, kind, selector) if on_host else None,
            kind=kind, rsa_bits=settings.rsa_bits, owner=owner)
    for selector in step.remove:
        if on_host:
            files.file(name=f"Retired DKIM key {selector} of {domain} deleted on the host",
                       path=host_key_path(settings, domain, "rsa", selector), present=False)
        forget_local_key(name=f"Retired DKIM key {selector} of {domain} deleted here",
                         local_path=str(local_key_path(settings, domain, "rsa", selector)))
    text = state_text(step, settings, domain)
    local_file(name=f"DKIM rotation state of {domain}",
               path=str(local_state_path(settings, domain)), text=text)
    if on_host:
        put_text(host_state_path(domain), text, mode="600",
                 name=f"DKIM rotation state of {domain} on the host")
