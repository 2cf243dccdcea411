"""MTA-STS (RFC 8461): the policy a mail domain serves at
``https://mta-sts.DOMAIN/.well-known/mta-sts.txt`` and the records that announce it (the web
server on the mail host is not built yet).

The policy names every host serving the domain as an ``mx:`` pattern. Its ``id`` is derived
from the policy text, so it changes exactly when the text does, and receivers fetch the new
policy then and only then.
"""

from __future__ import annotations

import hashlib

POLICY_PATH = "/.well-known/mta-sts.txt"


def policy_text(mode: str, mx_hosts: list[str], max_age: int) -> str:
    """The policy file (RFC 8461 3.2), CRLF line ends, ``mx`` in the given order."""
    lines = ["version: STSv1", f"mode: {mode}", *[f"mx: {h}" for h in mx_hosts],
             f"max_age: {max_age}"]
    return "".join(line + "\r\n" for line in lines)


def policy_id(text: str) -> str:
    """1 to 32 letters and digits (RFC 8461 3.1): the first 20 hex digits of the text's SHA-256."""
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def txt_record(text: str) -> str:
    """The ``_mta-sts`` TXT value announcing the policy ``text``."""
    return f"v=STSv1; id={policy_id(text)}"


def policy_host(domain: str) -> str:
    return f"mta-sts.{domain}"


def record_name(domain: str) -> str:
    return f"_mta-sts.{domain}"
