"""Reverse DNS: each host address has a PTR naming the mail host, which resolves back to the
same address (forward-confirmed reverse DNS), as receivers check it, through the resolver."""

from __future__ import annotations

import ipaddress

import dns.reversename

from mailhost.checks import CheckResult, guarded, result
from mailhost.lookup import CheckResolver
from mailhost.settings import Settings


def checks(settings: Settings, resolver: CheckResolver) -> list[CheckResult]:
    addresses = [str(settings.ipv4)] + ([str(settings.ipv6)] if settings.ipv6 else [])
    return [ptr_check(settings, resolver, address) for address in addresses]


def ptr_check(settings: Settings, resolver: CheckResolver, address: str) -> CheckResult:
    name = f"rdns: PTR {address}"
    expected = f"{settings.mail_hostname}, which resolves to {address}"
    advice = (f"set the reverse DNS (PTR) of {address} to {settings.mail_hostname} at your VPS "
              "provider (its control panel or support): the PTR lives in the provider's reverse "
              "zone, not in your zone, so the deploy cannot set it. Many receivers refuse mail "
              "from an address without it")

    def check():
        reverse = dns.reversename.from_address(address)
        names = [r.target.to_text().rstrip(".").lower()
                 for r in resolver.values(reverse, "PTR", recursive=True)]
        if not names:
            return result(name, False, expected, "no PTR record", advice)
        forward = {n: resolver.addresses(n, recursive=True) for n in names}
        found = ", ".join(f"{n} -> {', '.join(a) or 'no address'}" for n, a in forward.items())
        wanted = ipaddress.ip_address(address)
        confirmed = any(ipaddress.ip_address(a) == wanted
                        for a in forward.get(settings.mail_hostname, []))
        return result(name, confirmed, expected, found, advice)
    return guarded(name, expected, advice, check)
