"""The SPF record of a mail domain, and its DNS lookup count (RFC 7208 4.6.4)."""

from __future__ import annotations

MAX_DNS_LOOKUPS = 10


def spf_lookup_count(includes) -> int:
    """Lookups our record itself needs: one per include (ip4/ip6 terms cost none).

    Nested lookups inside the included records are counted by the verification step, which
    resolves them (checkdmarc); this count is what the settings alone can prove.
    """
    return len(includes)


def spf_record(ipv4s, ipv6s, includes, all_qualifier: str) -> str:
    """``v=spf1 ip4:... ip6:... include:... ~all``: the host's addresses written explicitly."""
    terms = ["v=spf1"]
    terms += [f"ip4:{address}" for address in ipv4s]
    terms += [f"ip6:{address}" for address in ipv6s]
    terms += [f"include:{domain}" for domain in includes]
    terms.append(all_qualifier)
    return " ".join(terms)
