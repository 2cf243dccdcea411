"""DNS records: the RecordSet value type shared by the plan and every provider.

Conventions, the same everywhere in this package:
- names are absolute, lowercase, without the trailing dot: ``_dmarc.example.com``;
- values are in presentation form without provider quoting:
  A ``198.51.100.10``, AAAA in compressed form, MX ``10 mail.example.com`` (null MX ``0 .``),
  TXT the whole logical string unquoted and unsplit (providers split at 255 bytes),
  CAA ``0 issue "letsencrypt.org"``, SRV ``0 1 993 mail.example.com`` (target ``.``: the
  service is not offered, RFC 2782);
- a RecordSet holds every value of one (name, type), sorted, and one TTL.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

TXT_CHUNK = 255


def zone_of(name: str, zones) -> str | None:
    """The longest zone that contains ``name``, or None."""
    matches = [z for z in zones if name == z or name.endswith("." + z)]
    return max(matches, key=len) if matches else None


def normalize_name(name: str) -> str:
    """Lowercase, no trailing dot."""
    return name.strip().rstrip(".").lower()


def normalize_value(rtype: str, value: str) -> str:
    """Bring a value to the canonical form described in the module docstring."""
    value = value.strip()
    if rtype == "A":
        return str(ipaddress.IPv4Address(value))
    if rtype == "AAAA":
        return str(ipaddress.IPv6Address(value))
    if rtype == "MX":
        priority, target = value.split()
        return f"{int(priority)} {normalize_name(target) or '.'}"  # "0 .": null MX (RFC 7505)
    if rtype in ("CNAME", "NS", "PTR"):
        return normalize_name(value)
    if rtype == "SRV":
        priority, weight, port, target = value.split()
        target = normalize_name(target) or "."  # "." (the root): the service is not offered
        return f"{int(priority)} {int(weight)} {int(port)} {target}"
    return value


@dataclass(frozen=True)
class RecordSet:
    """All values of one name and type, with one TTL."""

    name: str
    rtype: str
    ttl: int
    values: tuple[str, ...]
    proxied: bool = field(default=False)  # Cloudflare only; a mail record must never be proxied
    # Cloudflare only: per-record TTLs where the values of one name differ, as (value, ttl)
    value_ttls: tuple[tuple[str, int], ...] = field(default=(), compare=False)

    def __post_init__(self):
        object.__setattr__(self, "name", normalize_name(self.name))
        object.__setattr__(self, "rtype", self.rtype.upper())
        normalized = sorted({normalize_value(self.rtype, v) for v in self.values})
        object.__setattr__(self, "values", tuple(normalized))
        object.__setattr__(self, "value_ttls", tuple(
            (normalize_value(self.rtype, v), int(t)) for v, t in self.value_ttls
        ))

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.rtype)

    def with_values(self, values) -> RecordSet:
        """The same set holding only ``values``, with their own TTL where it is known."""
        ttls = {v: t for v, t in self.value_ttls if v in values}
        ttl = min(ttls.values()) if ttls else self.ttl
        return RecordSet(self.name, self.rtype, ttl, tuple(values), self.proxied)


def split_txt(value: str) -> list[str]:
    """Split a TXT value into strings of at most 255 bytes (RFC 1035 character-strings)."""
    data = value.encode()
    parts, start = [], 0
    while start < len(data):
        end = min(start + TXT_CHUNK, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # never cut a UTF-8 character
            end -= 1
        parts.append(data[start:end].decode())
        start = end
    return parts or [""]


def quote_txt(value: str) -> str:
    """Presentation form of a TXT value: quoted 255-byte strings separated by spaces."""
    return " ".join(
        '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"' for part in split_txt(value)
    )


def unquote_txt(text: str) -> str:
    """Inverse of quote_txt; accepts an unquoted value as is."""
    text = text.strip()
    if not text.startswith('"'):
        return text
    parts, current, i, inside = [], [], 0, False
    while i < len(text):
        char = text[i]
        if inside:
            if char == "\\" and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif char == '"':
                parts.append("".join(current))
                current, inside = [], False
            else:
                current.append(char)
        elif char == '"':
            inside = True
        i += 1
    return "".join(parts)


def display_value(rtype: str, value: str) -> str:
    """How a value is shown in a plan line."""
    return f'"{value}"' if rtype == "TXT" else value
