"""Where the checks ask DNS: a zone's own authoritative servers for its names (no cache can hide
a mistake), a recursive resolver for every other name (PTR, blocklists, SPF includes)."""

from __future__ import annotations

import dns.dnssec
import dns.exception
import dns.inet
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from mailhost.dns.records import zone_of
from mailhost.settings import Settings

TIMEOUT = 5.0


def make_resolver(servers: list[str] | None = None, port: int = 53) -> dns.resolver.Resolver:
    """A resolver asking ``servers`` (None: the system's), without a cache."""
    resolver = dns.resolver.Resolver(configure=servers is None)
    if servers is not None:
        resolver.nameservers = list(servers)
        resolver.port = port
    resolver.cache = None
    resolver.timeout, resolver.lifetime = 2.0, TIMEOUT
    return resolver


class CheckResolver(dns.resolver.Resolver):
    """Sends a name inside one of ``authoritative``'s zones to that zone's servers, any other
    name to ``recursive``. Also what checkdmarc and pyspf are given."""

    def __init__(self, recursive: dns.resolver.Resolver,
                 authoritative: dict[str, dns.resolver.Resolver]):
        super().__init__(configure=False)
        self.recursive, self.authoritative = recursive, authoritative
        self.nameservers = recursive.nameservers
        self.port, self.lifetime, self.cache = recursive.port, TIMEOUT, None

    def for_name(self, name) -> dns.resolver.Resolver:
        zone = zone_of(str(name).rstrip(".").lower(), self.authoritative)
        return self.authoritative[zone] if zone else self.recursive

    def resolve(self, qname, rdtype="A", *args, **kwargs):
        return self.for_name(qname).resolve(qname, rdtype, *args, **kwargs)

    def values(self, name, rtype: str, recursive: bool = False) -> list:
        """The rdata at name/rtype ([] when the name or the type does not exist); recursive:
        as the world sees it, through the recursive resolver, whatever zone it is in."""
        try:
            return list((self.recursive if recursive else self).resolve(name, rtype))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []

    def texts(self, name: str) -> list[str]:
        """The TXT values at a name, each one's strings joined."""
        return [b"".join(r.strings).decode(errors="replace") for r in self.values(name, "TXT")]

    def addresses(self, name: str, recursive: bool = False) -> list[str]:
        return [r.address for rtype in ("A", "AAAA") for r in self.values(name, rtype, recursive)]


def zone_resolver(settings: Settings) -> CheckResolver:
    """The checks' resolver for one host: check_nameservers, the rfc2136 server, or the NS."""
    recursive = make_resolver([settings.check_resolver] if settings.check_resolver else None)
    authoritative = {}
    for zone in settings.zones:
        if settings.check_nameservers:
            servers, port = settings.check_nameservers, 53
        elif settings.dns_provider == "rfc2136":
            servers, port = _addresses_of(settings.dns_server, recursive), settings.dns_port
        else:
            names = [r.target.to_text() for r in recursive.resolve(zone, "NS")]
            servers, port = [a for n in names for a in _addresses_of(n, recursive)], 53
        authoritative[zone] = make_resolver(servers, port)
    return CheckResolver(recursive, authoritative)


def _addresses_of(name_or_address: str, recursive: dns.resolver.Resolver) -> list[str]:
    try:
        dns.inet.af_for_address(name_or_address)
        return [name_or_address]
    except ValueError:
        pass
    found = []
    for rtype in ("A", "AAAA"):
        try:
            found += [r.address for r in recursive.resolve(name_or_address, rtype)]
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            pass
    if not found:
        raise dns.exception.DNSException(f"{name_or_address} has no address")
    return found


def every_server_answers(settings: Settings, name: str, rtype: str, matches) -> bool:
    """Whether every authoritative server of the name's zone (as the checks find them)
    answers an rdata at name/rtype for which ``matches(rdata)`` holds; any DNS error: not (yet).
    What a key rotation waits for before it moves on (DKIM, DANE)."""
    try:
        zone_servers = zone_resolver(settings).for_name(name)
        for server in zone_servers.nameservers:
            answer = make_resolver([server], zone_servers.port).resolve(name, rtype)
            if not any(matches(rdata) for rdata in answer):
                return False
    except dns.exception.DNSException:
        return False
    return True


def signs_itself(server: str, port: int, zone: str, timeout: float = TIMEOUT) -> bool:
    """Whether ``server`` answers the zone's DNSKEY set with a signature that one of those keys
    validates (dnspython). Whether the parent publishes the DS is not seen here: the checks
    (mailhost.checks.dane) follow the chain through a resolver."""
    apex = dns.name.from_text(zone)
    query = dns.message.make_query(apex, dns.rdatatype.DNSKEY, want_dnssec=True)
    answer = dns.query.tcp(query, server, timeout=timeout, port=port)
    keys = answer.get_rrset(answer.answer, apex, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    signature = answer.get_rrset(answer.answer, apex, dns.rdataclass.IN, dns.rdatatype.RRSIG,
                                 dns.rdatatype.DNSKEY)
    if not keys or not signature:
        return False
    try:
        dns.dnssec.validate(keys, signature, {apex: keys})
    except dns.dnssec.ValidationFailure:
        return False
    return True


def zone_signed(settings: Settings, zone: str) -> bool:
    """Whether every authoritative server of the zone, found as the checks find them
    (check_nameservers, else the zone's NS), serves a DNSKEY set that signs itself; what a
    provider whose API cannot say (dns-lexicon's) publishes DANE's TLSA by. Any DNS error: no."""
    try:
        servers = zone_resolver(settings).for_name(zone)
        return bool(servers.nameservers) and all(
            signs_itself(server, servers.port, zone) for server in servers.nameservers)
    except (dns.exception.DNSException, OSError):
        return False
