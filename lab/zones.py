"""The lab's DNS: the zones Knot serves, and starting Knot on the bridge address.

Zones (all updatable with the TSIG key ``mailhost-lab``, the RFC 2136 provider's target):

- ``example.test``: the lab mail domain; SOA and NS only, the deploy adds the mail records
- ``shop.test``: a second mail domain (the fleet's third VPS, mail.shop.test), likewise
- ``example.net``: the receiver's domain (MX, A/AAAA of mx.example.net, SPF, DMARC), and the
  lab relay's name relay.example.net (A/AAAA, and the SPF record a sender includes)
- ``lab.test``: the lab's own names (ns.lab.test = Knot, acme.lab.test = Pebble)
- ``bl.lab.test``: an empty DNSBL zone for later checks
- ``old.example``: the old provider's imap.old.example (lab/old_provider.py), and
  other.old.example, the same server under a name its certificate does not hold
- the reverse zones of 198.51.100.0/24 and the lane's /64 of 2001:db8::/32, with PTRs for
  every host of the lane

``example.test`` and ``shop.test`` are DNSSEC-signed by Knot (SIGNED_ZONES: keys made at
start, updates signed as they land). There is no root or parent in the lab: a validating
resolver is given the zone's DS as a trust anchor (``trust_anchors``, in ``scripts/lab
status --json`` and in the VPS's unbound snippet, vps.write_resolver_snippet); the other zones
are unsigned.
"""

from __future__ import annotations

import dns.name
import dns.reversename

from .common import (
    ACME_NAME,
    ACME_TSIG_KEY_NAME,
    DNS_PORT,
    DNSBL_ZONE,
    FLEET,
    HOST4,
    HOST6,
    LAB_DOMAIN,
    LAB_NET4,
    LAB_NET6,
    MAIL_DOMAINS,
    NS_NAME,
    POWERDNS_API_PORT,
    POWERDNS_PORT,
    RX4,
    RX6,
    RX_DOMAIN,
    RX_HOSTNAME,
    TSIG_KEY_NAME,
    LabError,
    Paths,
    Proc,
    log_tail,
    spawn,
)
from .old_provider import OLD4, OLD6, OLD_DOMAIN, OLD_HOSTNAME, UNCERTIFIED_NAME
from .relay import RELAY4, RELAY6, RELAY_HOSTNAME, RELAY_SPF

SIGNED_ZONES = MAIL_DOMAINS
REVERSE4 = "100.51.198.in-addr.arpa"
# the lane's /64: 0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa (2001:db8::/64) in lane 0
REVERSE6 = dns.reversename.from_address(HOST6).split(19)[1].to_text(omit_final_dot=True)
PTRS = {HOST4: NS_NAME, HOST6: NS_NAME, RX4: RX_HOSTNAME, RX6: RX_HOSTNAME,
        RELAY4: RELAY_HOSTNAME, RELAY6: RELAY_HOSTNAME, OLD4: OLD_HOSTNAME, OLD6: OLD_HOSTNAME,
        **{address: vps.hostname for vps in FLEET for address in (vps.ipv4, vps.ipv6)}}


def _head(zone: str) -> str:
    return (
        f"$ORIGIN {zone}.\n$TTL 300\n"
        f"@ IN SOA {NS_NAME}. hostmaster.{zone}. 1 3600 600 604800 300\n"
        f"@ IN NS {NS_NAME}.\n"
    )


def _ptrs(zone: str) -> str:
    origin = dns.name.from_text(zone)
    lines = []
    for address, target in PTRS.items():
        name = dns.reversename.from_address(address)
        if name.is_subdomain(origin):
            lines.append(f"{name.relativize(origin)} IN PTR {target}.\n")
    return "".join(lines)


def zones() -> dict[str, str]:
    """Zone name -> zone file text for every zone the lab DNS serves."""
    return {
        **{domain: _head(domain) for domain in MAIL_DOMAINS},
        RX_DOMAIN: _head(RX_DOMAIN)
        + "@ IN MX 10 mx\n"
        + f"mx IN A {RX4}\nmx IN AAAA {RX6}\n"
        + '@ IN TXT "v=spf1 mx -all"\n'
        + '_dmarc IN TXT "v=DMARC1; p=reject"\n'
        + f'{RELAY_HOSTNAME}. IN A {RELAY4}\n{RELAY_HOSTNAME}. IN AAAA {RELAY6}\n'
        + f'{RELAY_HOSTNAME}. IN TXT "{RELAY_SPF}"\n',
        LAB_DOMAIN: _head(LAB_DOMAIN)
        + f"{NS_NAME}. IN A {HOST4}\n{NS_NAME}. IN AAAA {HOST6}\n"
        + f"{ACME_NAME}. IN A {HOST4}\n{ACME_NAME}. IN AAAA {HOST6}\n"
        + f"{DNSBL_ZONE}. IN NS {NS_NAME}.\n",
        DNSBL_ZONE: _head(DNSBL_ZONE),
        OLD_DOMAIN: _head(OLD_DOMAIN) + f"imap IN A {OLD4}\nimap IN AAAA {OLD6}\n"
        + f"{UNCERTIFIED_NAME}. IN A {OLD4}\n",
        REVERSE4: _head(REVERSE4) + _ptrs(REVERSE4),
        REVERSE6: _head(REVERSE6) + _ptrs(REVERSE6),
    }


def acme_names() -> list[str]:
    """The names a VPS's certificate may hold: each VPS's hostname, each domain's MTA-STS
    policy host."""
    return [vps.hostname for vps in FLEET] + [f"mta-sts.{domain}" for domain in MAIL_DOMAINS]


def start_powerdns(paths: Paths, api_key: str) -> Proc:
    """The powerdns world: PowerDNS Authoritative on the bridge (DNS POWERDNS_PORT, its HTTP
    API POWERDNS_API_PORT) as the mail zones' primary, fresh; every change NOTIFYs Knot,
    which serves them to the VPS, the receiver and Pebble as its secondary."""
    import shutil

    from .powerdns import PowerDnsServer

    if paths.powerdns.exists():
        shutil.rmtree(paths.powerdns)
    server = PowerDnsServer({domain: _head(domain) for domain in MAIL_DOMAINS}, address=HOST4,
                            port=POWERDNS_PORT, api_port=POWERDNS_API_PORT, api_key=api_key,
                            notify=[f"{HOST4}:{DNS_PORT}"], workdir=paths.powerdns,
                            api_allow_from=[LAB_NET4, LAB_NET6])  # the VPS's certbot hook
    command = server.prepare()
    log = paths.logs / "pdns.log"
    proc = spawn(command, log)
    try:
        server.wait_ready(timeout=20)
    except Exception as error:
        proc.stop()
        raise LabError(f"pdns_server did not start: {error}; log {log}:\n{log_tail(log)}") \
            from error
    return proc


def start_knot(paths: Paths, tsig_secret: str, acme_secret: str | None = None,
               secondary: bool = False) -> Proc:
    """Start knotd on the bridge (port 53, IPv4 and IPv6) with fresh zones; return its PID.
    With ``acme_secret``, key ACME_TSIG_KEY_NAME may only write the mail hosts'
    _acme-challenge TXT records (the key a VPS's certbot gets for DNS-01): at each VPS's
    hostname and each domain's MTA-STS policy host (``acme_names``). ``secondary``: the mail
    zones come from PowerDNS (start_powerdns) by AXFR, and are signed here."""
    import shutil

    from .knot import KnotServer, TsigKey

    if paths.knot.exists():
        shutil.rmtree(paths.knot)  # every start serves the zones as written above
    acme_key = TsigKey(ACME_TSIG_KEY_NAME, acme_secret) if acme_secret else None
    server = KnotServer(zones(), key=TsigKey(TSIG_KEY_NAME, tsig_secret), listen=[HOST4, HOST6],
                        port=DNS_PORT, workdir=paths.knot, acme_key=acme_key,
                        acme_names=[f"_acme-challenge.{name}." for name in acme_names()],
                        signed_zones=SIGNED_ZONES,
                        primaries={domain: f"{HOST4}@{POWERDNS_PORT}" for domain in MAIL_DOMAINS}
                        if secondary else None)
    command = server.prepare()
    log = paths.logs / "knotd.log"
    proc = spawn(command, log)  # detached: it outlives `lab up`
    try:
        server.wait_ready(timeout=20)
    except Exception as error:
        proc.stop()
        raise LabError(f"knotd did not start: {error}; log {log}:\n{log_tail(log)}") from error
    return proc


def trust_anchors(timeout: float = 10.0) -> dict[str, list[str]]:
    """Each signed lab zone's DS records as Knot serves its keys now ({} if Knot is down)."""
    from .knot import KnotError, zone_ds

    try:
        return {zone: zone_ds(HOST4, zone, DNS_PORT, timeout) for zone in SIGNED_ZONES}
    except KnotError:
        return {}
