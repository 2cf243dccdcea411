"""DKIM keys live on the controller.

A key is generated locally on the first real run (never during ``--dry``: generation happens
only when operations execute), kept in ``secrets_dir/dkim/DOMAIN/SELECTOR.KIND.pem`` (0600),
and uploaded to the host. When the local key is missing but the host has one, the host's key
is read back instead of generating a new one: rebuilding a VPS never changes the DKIM record.

This module is the one place for a DKIM record's name (``record_name``) and for reading a
public half (``public_half``: the controller's key first, else the host's).

Rotation (mailhost.keys.rotation, RSA keys only; the ed25519 key keeps its selector): the state of
a domain lives beside its keys, ``secrets_dir/dkim/DOMAIN/rotation.json``, and a copy on the
host (``HOST_DKIM_DIR/DOMAIN/rotation.json``) from which a new controller recovers it.
``rotation_step`` is one deploy's step for a domain (kept by the run: steps.KeySteps);
``signing_selector`` is the selector the MTA signs with (this run's step, else the state file,
else ``dkim_selector``).
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailhost.keys import rotation
from mailhost.paths import HOST_DKIM_DIR
from mailhost.settings import DOCUMENTATION_NETWORKS, Settings

KINDS = ("rsa", "ed25519")
DKIM_PENDING = "<new key, generated when applied>"


@dataclass(frozen=True)
class DkimPublicKeys:
    """The public halves (the ``p=`` values) of one domain's keys; None when not generated yet."""

    rsa: str | None
    ed25519: str | None = None
    # with rotation: every published RSA selector and its p= value (None: generated when
    # applied), the signing one included, and the selectors whose records this run removes
    rsa_published: tuple[tuple[str, str | None], ...] = ()
    removed: tuple[str, ...] = ()

    def rsa_txt(self) -> str:
        return f"v=DKIM1; k=rsa; p={self.rsa or DKIM_PENDING}"

    def rsa_records(self, selector: str) -> list[tuple[str, str]]:
        """(selector, TXT value) of every published RSA key; ``selector`` without rotation."""
        if not self.rsa_published:
            return [(selector, self.rsa_txt())]
        return [(s, f"v=DKIM1; k=rsa; p={p or DKIM_PENDING}") for s, p in self.rsa_published]

    def ed25519_txt(self) -> str:
        return f"v=DKIM1; k=ed25519; p={self.ed25519 or DKIM_PENDING}"

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


def local_key_path(settings: Settings, domain: str, kind: str,
                   selector: str | None = None) -> Path:
    filename = f"{selector or selector_for(settings, kind)}.{kind}.pem"
    return Path(settings.secrets_dir) / "dkim" / domain / filename


def domains_with_keys(settings: Settings) -> list[str]:
    """The domains whose DKIM keys the controller keeps (every mail domain ever deployed)."""
    root = Path(settings.secrets_dir) / "dkim"
    return sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []


def host_key_path(settings: Settings, domain: str, kind: str, selector: str | None = None) -> str:
    return f"{HOST_DKIM_DIR}/{domain}/{selector or selector_for(settings, kind)}.{kind}.pem"


# a key path on the host -> the base64 DER public half of the key there (None: no key)
HostKeyReader = Callable[[str], "str | None"]


def public_half(settings: Settings, domain: str, kind: str,
                read_host_key: HostKeyReader | None = None,
                selector: str | None = None) -> tuple[str | None, str]:
    """The ``p=`` value of a domain's key and where it was read: the controller's key first
    (the one a deploy uploads), else the host's (a new controller: the deploy reads it back),
    else None. Without ``read_host_key`` only the controller's key is read.

    + selector: the key of this selector (default: the kind's selector of the settings)"""
    local = local_key_path(settings, domain, kind, selector)
    private = read_local_key(local)
    if private is not None:
        return public_value(private), str(local)
    remote = host_key_path(settings, domain, kind, selector)
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
    """The DKIM ``p=`` value of a private key (RSA: SubjectPublicKeyInfo; ed25519: raw 32 bytes).

    RSA's consistency check (about 70 ms a key, paid on every run) is skipped: only the public
    half (n, e) is read here, of a key this tool made; the signer on the host (OpenDKIM,
    chasquid) loads the key with its own checks."""
    key = serialization.load_pem_private_key(private_pem, password=None,
                                             unsafe_skip_rsa_key_validation=True)
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


# --- rotation (RSA keys) ---

# the lab's clock (tests only): honoured only for a host on a documentation address (only a
# lab has one: the settings accept it only with lab_allowances)
LAB_CLOCK = "MAILHOST_LAB_NOW"


def rotation_policy(settings: Settings) -> rotation.Policy:
    return rotation.Policy(settings.dkim_selector, settings.dkim_rotate_days,
                           settings.dkim_retire_days, settings.dns_ttl)


def clock(settings: Settings) -> datetime:
    """Now, to the second; for a lab's host (a documentation address) ``MAILHOST_LAB_NOW``
    (ISO 8601) if set, so a test can walk a rotation's days in minutes."""
    in_lab = settings.lab_allowances and any(
        settings.ipv4 in network for network in DOCUMENTATION_NETWORKS if network.version == 4)
    lab_now = os.environ.get(LAB_CLOCK) if in_lab else None
    now = datetime.fromisoformat(lab_now) if lab_now else datetime.now(UTC)
    return now.replace(microsecond=0)


def local_state_path(settings: Settings, domain: str) -> Path:
    return Path(settings.secrets_dir) / "dkim" / domain / "rotation.json"


def host_state_path(domain: str) -> str:
    return f"{HOST_DKIM_DIR}/{domain}/rotation.json"


def load_rotation(settings: Settings, domain: str, host_text: str | None,
                  now: datetime) -> tuple[rotation.Rotation, bool]:
    """A domain's rotation state and whether a rotation was asked for: the controller's file,
    else the host's copy, else a new state whose only key is dkim_selector's (made ``now``)."""
    local = local_state_path(settings, domain)
    text = local.read_text() if local.exists() else host_text
    if not text:
        return rotation.start(settings.dkim_selector, now), False
    try:
        return rotation.from_json(text)
    except (ValueError, KeyError, TypeError) as error:
        where = local if local.exists() else host_state_path(domain)
        raise ValueError(f"DKIM rotation state {where} cannot be read ({error}): "
                         "restore it from a backup, or delete it to start again") from None


# (domain, selector, p= value) -> whether every authoritative server answers that key
Visibility = Callable[[str, str, str], bool]


def rotation_step(settings: Settings, domain: str, host_text: str | None,
                  read_host_key: HostKeyReader | None, visible: Visibility,
                  now: datetime | None = None) -> rotation.Step:
    """This deploy's step of a domain's rotation (deploy.py keeps it in the run's KeySteps,
    for the MTA modules and the DNS records).

    + host_text: the host's copy of the state file (None: none, or not read)
    + visible: asked only for a next key not yet seen published everywhere
    """
    now = now or clock(settings)
    state, force = load_rotation(settings, domain, host_text, now)
    upcoming, seen = state.next_key, set()
    if upcoming is not None and upcoming.seen is None:
        public = public_half(settings, domain, "rsa", read_host_key, upcoming.selector)[0]
        if public is not None and visible(domain, upcoming.selector, public):
            seen.add(upcoming.selector)
    return rotation.advance(state, rotation_policy(settings), now, seen, force=force)


def state_text(step: rotation.Step, settings: Settings, domain: str) -> str:
    """The state file after this step (a request to rotate stays until a key is made)."""
    local = local_state_path(settings, domain)
    asked = local.exists() and rotation.from_json(local.read_text())[1]
    return rotation.to_json(step.rotation, rotate_now=asked and step.generate is None)


def published_everywhere(settings: Settings) -> Visibility:
    """Whether every authoritative server of the record's zone answers a DKIM record with this
    key (lookup.every_server_answers)."""
    def visible(domain: str, selector: str, public: str) -> bool:
        from mailhost.lookup import every_server_answers

        def has_key(rdata) -> bool:
            text = "".join(b"".join(rdata.strings).decode(errors="replace").split())
            return f"p={public}" in text.split(";")
        return every_server_answers(settings, record_name(selector, domain), "TXT", has_key)
    return visible


def signing_selector(settings: Settings, domain: str, step: rotation.Step | None = None) -> str:
    """The selector the MTA signs a domain's mail with (RSA).

    + step: this run's rotation step of the domain (None: none computed, the saved state)"""
    state = rotation_state(settings, domain, step)
    return state.signing if state is not None else settings.dkim_selector


def rotation_state(settings: Settings, domain: str,
                   step: rotation.Step | None = None) -> rotation.Rotation | None:
    """The rotation as this run's ``step`` leaves it, else as the controller's file says
    (None: no state)."""
    if step is not None:
        return step.rotation
    local = local_state_path(settings, domain)
    return rotation.from_json(local.read_text())[0] if local.exists() else None


def request_rotation(settings: Settings, domain: str) -> Path:
    """Mark a domain's state so that the next deploy makes and publishes a new key now
    (a compromised key: scripts/rotate-dkim); the usual phases follow."""
    if domain not in settings.mail_domains:
        raise ValueError(f"domain = {domain}: expected one of mail_domains "
                         f"({', '.join(settings.mail_domains)})")
    path = local_state_path(settings, domain)
    if not path.exists():
        raise ValueError(f"domain = {domain}: no DKIM rotation state in {path}; expected a "
                         "domain deployed from this controller (deploy once, then ask again)")
    state = load_rotation(settings, domain, None, clock(settings))[0]
    save_local_key(path, rotation.to_json(state, rotate_now=True).encode())
    return path
