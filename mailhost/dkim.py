"""DKIM keys live on the controller.

A key is generated locally on the first real run (never during ``--dry``: generation happens
only when operations execute), kept in ``secrets_dir/dkim/DOMAIN/SELECTOR.KIND.pem`` (0600),
and uploaded to the host. When the local key is missing but the host has one, the host's key
is read back instead of generating a new one: rebuilding a VPS never changes the DKIM record.

This module is the one place for a DKIM record's name (``record_name``) and for reading a
public half (``public_half``: the controller's key first, else the host's).
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailhost.paths import HOST_DKIM_DIR
from mailhost.settings import Settings

KINDS = ("rsa", "ed25519")
PENDING = "<new key, generated when applied>"


@dataclass(frozen=True)
class DkimPublicKeys:
    """The public halves (the ``p=`` values) of one domain's keys; None when not generated yet."""

    rsa: str | None
    ed25519: str | None = None

    def rsa_txt(self) -> str:
        return f"v=DKIM1; k=rsa; p={self.rsa or PENDING}"

    def ed25519_txt(self) -> str:
        return f"v=DKIM1; k=ed25519; p={self.ed25519 or PENDING}"

    @property
    def pending(self) -> bool:
        return self.rsa is None


def selector_for(settings: Settings, kind: str) -> str:
    return settings.dkim_selector if kind == "rsa" else settings.ed25519_selector


def record_name(selector: str, domain: str) -> str:
    """The name of a DKIM TXT record: ``SELECTOR._domainkey.DOMAIN``."""
    return f"{selector}._domainkey.{domain}"


def record_name_for(settings: Settings, domain: str, kind: str) -> str:
    return record_name(selector_for(settings, kind), domain)


def kinds_for(settings: Settings) -> list[str]:
    return ["rsa", "ed25519"] if settings.dkim_ed25519 else ["rsa"]


def local_key_path(settings: Settings, domain: str, kind: str) -> Path:
    filename = f"{selector_for(settings, kind)}.{kind}.pem"
    return Path(settings.secrets_dir) / "dkim" / domain / filename


def domains_with_keys(settings: Settings) -> list[str]:
    """The domains whose DKIM keys the controller keeps (every mail domain ever deployed)."""
    root = Path(settings.secrets_dir) / "dkim"
    return sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []


def host_key_path(settings: Settings, domain: str, kind: str) -> str:
    return f"{HOST_DKIM_DIR}/{domain}/{selector_for(settings, kind)}.{kind}.pem"


# a key path on the host -> the base64 DER public half of the key there (None: no key)
HostKeyReader = Callable[[str], "str | None"]


def public_half(settings: Settings, domain: str, kind: str,
                read_host_key: HostKeyReader | None = None) -> tuple[str | None, str]:
    """The ``p=`` value of a domain's key and where it was read: the controller's key first
    (the one a deploy uploads), else the host's (a new controller: the deploy reads it back),
    else None. Without ``read_host_key`` only the controller's key is read."""
    local = local_key_path(settings, domain, kind)
    private = read_local_key(local)
    if private is not None:
        return public_value(private), str(local)
    remote = host_key_path(settings, domain, kind)
    der = read_host_key(remote) if read_host_key is not None else None
    if der:
        return public_value_from_spki(base64.b64decode(der)), remote
    return None, str(local) if read_host_key is None else remote


def generate_key(kind: str, rsa_bits: int = 2048) -> bytes:
    """A new private key as PKCS#8 PEM."""
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_value(private_pem: bytes) -> str:
    """The DKIM ``p=`` value of a private key (RSA: SubjectPublicKeyInfo; ed25519: raw 32 bytes)."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    return public_value_from_spki(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def public_value_from_spki(der: bytes) -> str:
    """The ``p=`` value from a DER SubjectPublicKeyInfo (what ``openssl pkey -pubout`` prints)."""
    public = serialization.load_der_public_key(der)
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode()
    return base64.b64encode(der).decode()


def read_local_key(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def save_local_key(path: Path, private_pem: bytes) -> None:
    """Write a key 0600 in a 0700 directory, atomically: a crash never leaves half a key."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for directory in (path.parent, path.parent.parent, path.parent.parent.parent):
        os.chmod(directory, 0o700)  # DOMAIN/, dkim/ and the secrets directory itself
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".new-")
    try:
        os.fchmod(handle, 0o600)
        os.write(handle, private_pem)
        os.fsync(handle)
    finally:
        os.close(handle)
    os.replace(temporary, path)
