"""Blocklists (DNSBL): the host's IPv4 (reversed octets), IPv6 (reversed nibbles) and each mail
domain, looked up in the configured zones through the recursive resolver.

An answer in 127.0.0.0/8 means listed, except 127.255.255.0/24, which Spamhaus and others use
for "query refused" (an open or public resolver, over quota): that is "could not check".
"""

from __future__ import annotations

import ipaddress

import dns.exception
import dns.reversename

from mailhost.checks import FAILED, OK, WARNING, CheckResult, guarded
from mailhost.lookup import CheckResolver
from mailhost.settings import Settings

ADVICE = ("your {what} is listed in {zone}: look it up on the list's website (Spamhaus: "
          "https://check.spamhaus.org) for the reason and the removal request; find what sent "
          "spam first (an open relay, a leaked password) or it is listed again")


def query_name(item: str, zone: str) -> str:
    """What to ask: reversed IPv4 octets, reversed IPv6 nibbles, or the domain, under zone."""
    try:
        address = ipaddress.ip_address(item)
    except ValueError:
        return f"{item}.{zone}"
    reverse = dns.reversename.from_address(str(address)).to_text().rstrip(".")
    return reverse.removesuffix(".in-addr.arpa").removesuffix(".ip6.arpa") + "." + zone


def classify(answers: list[str]) -> tuple[str, str]:
    """(status, found) for a DNSBL's A answers: [] is not listed."""
    if not answers:
        return OK, "not listed"
    codes = [ipaddress.IPv4Address(a) for a in answers]
    if any(code in ipaddress.ip_network("127.255.255.0/24") for code in codes):
        return WARNING, f"could not check: the list refused the query ({', '.join(answers)})"
    if all(code in ipaddress.ip_network("127.0.0.0/8") for code in codes):
        return FAILED, f"listed ({', '.join(answers)})"
    return WARNING, f"could not check: unexpected answer {', '.join(answers)}"


def lookup_check(resolver: CheckResolver, item: str, what: str, zone: str) -> CheckResult:
    name = f"blocklist: {item} in {zone}"
    expected = "not listed"
    advice = ADVICE.format(what=what, zone=zone)

    def check():
        qname = query_name(item, zone)
        try:
            answers = [r.address for r in resolver.values(qname, "A", recursive=True)]
        except dns.exception.DNSException as error:
            return CheckResult(name, WARNING, expected, f"could not check: {error}",
                               "point check_resolver at a resolver the list answers")
        status, found = classify(answers)
        if status == FAILED:
            reasons = [b"".join(r.strings).decode(errors="replace")
                       for r in _texts(resolver, qname)]
            found += f": {' | '.join(reasons)}" if reasons else ""
        advice_text = {OK: "", FAILED: advice,
                       WARNING: "DNSBLs refuse queries from public resolvers: point "
                                "check_resolver at your own resolver"}[status]
        return CheckResult(name, status, expected, found, advice_text)
    return guarded(name, expected, advice, check)


def _texts(resolver: CheckResolver, qname: str) -> list:
    try:
        return resolver.values(qname, "TXT", recursive=True)
    except dns.exception.DNSException:
        return []


def checks(settings: Settings, resolver: CheckResolver) -> list[CheckResult]:
    found = []
    addresses = [str(settings.ipv4)] + ([str(settings.ipv6)] if settings.ipv6 else [])
    for zone in settings.dnsbl_zones:
        for address in addresses:
            found.append(lookup_check(resolver, address, f"address {address}", zone))
    for zone in settings.dnsbl_domain_zones:
        for domain in settings.mail_domains:
            found.append(lookup_check(resolver, domain, f"domain {domain}", zone))
    return found
