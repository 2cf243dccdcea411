"""MTA-STS (RFC 8461): the policy a mail domain serves at
``https://mta-sts.DOMAIN/.well-known/mta-sts.txt`` and the records that announce it. nginx on
the mail host serves it (mailhost.host.nginx); the checks parse it back (mailhost.checks.mta_sts).

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


def mx_hosts(hosts: list) -> list[str]:
    """Every MX a policy must name, in order: the serving hosts' names, then the other
    servers' MX kept beside ours (``mx_keep``: a sender enforcing the policy would refuse to
    deliver to an MX it does not name). ``hosts``: the serving hosts' settings."""
    names = [h.mail_hostname for h in hosts]
    names += [value.split()[1] for h in hosts for value in h.mx_keep]
    return list(dict.fromkeys(names))


def policy_of(settings, mx: dict[str, tuple[str, ...]] | None = None) -> dict[str, str]:
    """The policy text of each mail domain the host serves ({} with mta_sts_mode "off"):
    every MX of the domain (``mx``: by domain, from the whole inventory, settings.fleet; the
    host's own name when missing) and the kept MX."""
    if settings.mta_sts_mode == "off":
        return {}
    mx = mx or {}
    return {domain: policy_text(
                settings.mta_sts_mode,
                list(dict.fromkeys([*mx.get(domain, ()), *mx_hosts([settings])])),
                settings.mta_sts_max_age)
            for domain in settings.mail_domains}


def parse_policy(text: str) -> dict[str, list[str]]:
    """A policy's fields (RFC 8461 3.2: ``key: value`` lines, CRLF or LF), each key's values in
    order; a line that is not ``key: value`` raises ValueError."""
    fields: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        key, colon, value = line.partition(":")
        if not colon or not key.strip():
            raise ValueError(f"policy line {line!r} is not 'key: value'")
        fields.setdefault(key.strip(), []).append(value.strip())
    return fields


def mx_matches(pattern: str, mx_host: str) -> bool:
    """Whether an ``mx:`` pattern names an MX host (RFC 8461 4.1: ``*.`` stands for exactly
    one leftmost label)."""
    pattern, mx_host = pattern.lower().rstrip("."), mx_host.lower().rstrip(".")
    if pattern.startswith("*."):
        label, dot, rest = mx_host.partition(".")
        return bool(label) and bool(dot) and rest == pattern[2:]
    return pattern == mx_host


def policy_host(domain: str) -> str:
    return f"mta-sts.{domain}"


def record_name(domain: str) -> str:
    return f"_mta-sts.{domain}"


def record_keys(domain: str) -> set[tuple[str, str]]:
    """The (name, type) keys of a domain's MTA-STS records: its policy host's addresses and
    the ``_mta-sts`` TXT."""
    host = policy_host(domain)
    return {(host, "A"), (host, "AAAA"), (record_name(domain), "TXT")}
