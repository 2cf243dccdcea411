"""DANE (RFC 7672) for the mail host's port 25: the TLSA record and when it is published.

The record is ``_25._tcp.MAIL_HOSTNAME TLSA 3 1 1 <SHA-256 of the server key's
SubjectPublicKeyInfo>`` (DANE-EE, the key only: it survives renewals, which reuse the key,
certbot ``--reuse-key``). Its key is certbot's (paths.live_certificate_dir): until the first
certificate exists the MTA serves the self-signed fallback, whose key certbot does not keep. On
that first deploy the zone's records are written without the TLSA, and a second DNS operation
right after certbot publishes it (``PENDING`` in the plan shown; deploy.py, run.tlsa_preview).

It is published only in a DNSSEC-signed zone (the provider's ``dnssec_signed``): without
signatures a TLSA proves nothing, and senders ignore it.
"""

from __future__ import annotations

import base64
import hashlib

from mailhost.paths import live_certificate_dir

USAGE_SELECTOR_MATCHING = "3 1 1"  # DANE-EE, SubjectPublicKeyInfo, SHA-256
# the value shown in a plan before the certificate's key exists
PENDING = f"{USAGE_SELECTOR_MATCHING} <key of the certificate obtained later in this run>"
SMTP_PORT = 25


def tlsa_name(mail_hostname: str) -> str:
    """Where senders look for the TLSA of the host's SMTP server."""
    return f"_{SMTP_PORT}._tcp.{mail_hostname}"


def tlsa_value(spki_der: bytes) -> str:
    """The TLSA value (presentation form) pinning a public key given as DER SPKI."""
    return f"{USAGE_SELECTOR_MATCHING} {hashlib.sha256(spki_der).hexdigest()}"


def tlsa_of_public_key(public_key_b64: str | None) -> str | None:
    """The TLSA value of a base64 DER public key as facts.DkimPublicKey reads it; None if none."""
    return tlsa_value(base64.b64decode(public_key_b64)) if public_key_b64 else None


def certificate_key_path(mail_hostname: str) -> str:
    """The private key certbot keeps for the host's certificate (the one DANE pins)."""
    return f"{live_certificate_dir(mail_hostname)}/privkey.pem"
