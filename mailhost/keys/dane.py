"""DANE (RFC 7672) for the mail host's port 25: the TLSA record and when it is published.

The record is ``_25._tcp.MAIL_HOSTNAME TLSA 3 1 1 <SHA-256 of the server key's
SubjectPublicKeyInfo>`` (DANE-EE, the key only: it survives renewals, which reuse the key,
certbot ``--reuse-key``). Its key is certbot's (paths.live_certificate_dir): until the first
certificate exists the MTA serves the self-signed fallback, whose key certbot does not keep. On
that first deploy the zone's records are written without the TLSA, and a second DNS operation
right after certbot publishes it (``TLSA_PENDING`` in the plan shown; deploy.py, run.tlsa_preview).

It is published only in a DNSSEC-signed zone (the provider's ``dnssec_signed``): without
signatures a TLSA proves nothing, and senders ignore it.

A key rollover (``scripts/rotate-tls-key``: a compromised key, or a new one wanted) moves the
certificate to a new key without a moment where the TLSA does not match, in three deploys:

1. **publish**: the next key is made on the host (paths.NEXT_KEY, never leaving it) and its TLSA
   is published beside the current one (``3 1 1 current`` + ``3 1 1 next``).
2. **seen**: a deploy that finds the next TLSA answered by every authoritative server records
   when (paths.NEXT_KEY_SEEN).
3. **switch**: at least twice the TTL later (every cache that held the old TLSA set has the
   new one), certbot renews the certificate over the next key (host/tls.switch_key), and the
   TLSA of the old key is removed by the DNS operation that follows.

A run never goes through two phases at once, so each shows in ``--dry`` first.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from mailhost.paths import live_certificate_dir

USAGE_SELECTOR_MATCHING = "3 1 1"  # DANE-EE, SubjectPublicKeyInfo, SHA-256
# the value shown in a plan before the certificate's key exists
TLSA_PENDING = f"{USAGE_SELECTOR_MATCHING} <key of the certificate obtained later in this run>"
NEXT_PENDING = f"{USAGE_SELECTOR_MATCHING} <next key, made on the host in this run>"
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


# --- key rollover ---


@dataclass(frozen=True)
class Rollover:
    """One deploy's step of a host's key rollover."""

    next_key: bool = False  # a next key exists on the host, or this run makes it
    make: bool = False  # this run makes the next key
    seen: datetime | None = None  # when its TLSA was first answered by every server
    mark_seen: bool = False  # this run records ``seen``
    switch: bool = False  # this run moves the certificate to the next key
    waiting: str = ""  # what the next step waits for, said in --dry


def rollover_step(has_next: bool, seen: datetime | None, asked: bool, visible, now: datetime,
                  ttl: int) -> Rollover:
    """At most one phase per deploy.

    + has_next: the host has a next key
    + seen: when its TLSA was recorded as answered everywhere (None: not yet)
    + asked: a rollover was asked for (scripts/rotate-tls-key)
    + visible: () -> whether every authoritative server answers the next key's TLSA now
    + ttl: the TLSA record's TTL, seconds
    """
    answered = "the next key's TLSA to be answered by every authoritative server"
    if not has_next:
        return Rollover(True, make=True, waiting=answered) if asked else Rollover()
    if seen is None:
        if not visible():
            return Rollover(True, waiting=answered)
        due = now + timedelta(seconds=2 * ttl)
        return Rollover(True, seen=now, mark_seen=True,
                        waiting=f"the switch after {due:%Y-%m-%d %H:%M} UTC")
    due = seen + timedelta(seconds=2 * ttl)
    if now >= due:
        return Rollover(True, seen=seen, switch=True)
    return Rollover(True, seen=seen, waiting=f"the switch after {due:%Y-%m-%d %H:%M} UTC")


def next_tlsa_answered(settings, upcoming: str) -> bool:
    """Whether every authoritative server of the zone (as the checks find them) answers the
    next key's TLSA; also when none answers any TLSA there (an unsigned zone publishes none:
    no sender holds one to wait for, and a leaked key is still replaced). Any DNS error: not
    (yet). What a rollover waits for, as dkim.published_everywhere for a DKIM key."""
    from dns.exception import DNSException

    from mailhost.lookup import every_server_answers, zone_resolver

    name = tlsa_name(settings.mail_hostname)
    if every_server_answers(settings, name, "TLSA", lambda r: r.to_text() == upcoming):
        return True
    try:
        return zone_resolver(settings).values(name, "TLSA") == []
    except DNSException:
        return False


def describe(mail_hostname: str, step: Rollover) -> str:
    """The --dry line of a host's key rollover."""
    then = f"; next: {step.waiting}" if step.waiting else ""
    if not step.next_key:
        return (f"DANE {mail_hostname}: rollover asked{then}" if step.waiting else
                f"DANE {mail_hostname}: key steady (scripts/rotate-tls-key starts a rollover)")
    now = ("make the next key and publish its TLSA beside the current one" if step.make else
           "record that every authoritative server answers the next TLSA" if step.mark_seen else
           "renew the certificate over the next key, then remove the old TLSA" if step.switch
           else "")
    return f"DANE {mail_hostname}: key rollover" + (f"; now: {now}" if now else "") + then


def seen_text(step: Rollover) -> str:
    return f"{step.seen.isoformat()}\n"


def parse_seen(lines: list[str] | None) -> datetime | None:
    """NEXT_KEY_SEEN's time (None: no file, or not a time: then it is recorded again)."""
    try:
        return datetime.fromisoformat(lines[0].strip()) if lines else None
    except ValueError:
        return None


def rollover_request(secrets_dir: str, mail_hostname: str) -> Path:
    """The controller's mark that a rollover is asked for (scripts/rotate-tls-key writes it,
    the deploy that makes the next key removes it)."""
    return Path(secrets_dir) / "tls" / f"{mail_hostname}.rollover-asked"


def tlsa_values(current: str | None, upcoming: str | None, step: Rollover | None,
                after_switch: bool = False) -> tuple[str, ...]:
    """The TLSA values of a host: its certificate key's and a rollover's next key's.

    + current / upcoming: the TLSA values of the keys on the host now (None: no such key)
    + step: this run's rollover step of the host (None: none computed in this run)
    + after_switch: as they will be once this run's switch is done (the plan shown before it)
    """
    if upcoming is None and step is not None and step.make:
        upcoming = NEXT_PENDING
    if after_switch and step is not None and step.switch and upcoming:
        return (upcoming,)
    return tuple(v for v in dict.fromkeys((current, upcoming)) if v)
