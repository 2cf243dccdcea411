"""The lab's Cloudflare: the API emulator serving example.test, writing through to Knot.

At start the emulator is seeded with what Knot holds for the zone (read by AXFR, except the
SOA and the apex NS, which Cloudflare manages itself); from then on every write made through
the API is mirrored into Knot by RFC 2136 (``Rfc2136Mirror``), so what the emulator holds is
what the lab DNS answers. Its DNSSEC status tells the truth about that DNS
(``dnssec_as_served``): Knot signs example.test, but the lab has no parent zone to hold its DS
(resolvers are given it as a trust anchor instead), so the status is "pending", as Cloudflare
reports a signed zone whose DS is not at the registrar: DANE's TLSA is not published through
the lab's Cloudflare. Secrets come from the lab's secrets file, never the command line::

    python -m lab.cloudflare.lab_server --listen 198.51.100.1:8443 --zone example.test \\
        --dns 198.51.100.1 --secrets .lab/secrets.toml
"""

from __future__ import annotations

import argparse
import signal
import threading
import tomllib

import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.tsigkeyring
import dns.zone

from ..common import TSIG_KEY_NAME
from ..knot import KnotError, zone_ds
from .emulator import CloudflareEmulator
from .mirror import Rfc2136Mirror

SKIPPED_AT_APEX = ("SOA", "NS")
# Knot's signatures and keys (the lab signs example.test): Cloudflare's API lists none of them
DNSSEC_TYPES = ("RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "CDS", "CDNSKEY")


def records_from_dns(zone: str, server: str, port: int, keyring) -> list[dict]:
    """The zone's records (AXFR with TSIG) as Cloudflare API bodies."""
    origin = dns.name.from_text(zone)
    transfer = dns.zone.from_xfr(dns.query.xfr(server, origin, port=port, keyring=keyring,
                                               keyalgorithm="hmac-sha256", lifetime=10))
    bodies = []
    for name, node in transfer.nodes.items():
        absolute = name.derelativize(origin).to_text().rstrip(".")
        for rdataset in node.rdatasets:
            rtype = dns.rdatatype.to_text(rdataset.rdtype)
            if (absolute == zone and rtype in SKIPPED_AT_APEX) or rtype in DNSSEC_TYPES:
                continue
            for rdata in rdataset:
                body = {"name": absolute, "type": rtype, "ttl": rdataset.ttl}
                if rtype == "MX":
                    body["priority"] = rdata.preference
                    body["content"] = rdata.exchange.derelativize(origin).to_text().rstrip(".")
                elif rtype in ("CNAME", "NS", "PTR"):
                    body["content"] = rdata.target.derelativize(origin).to_text().rstrip(".")
                elif rtype == "TXT":
                    body["content"] = b"".join(rdata.strings).decode()
                elif rtype == "TLSA":
                    body["data"] = {"usage": rdata.usage, "selector": rdata.selector,
                                    "matching_type": rdata.mtype, "certificate": rdata.cert.hex()}
                elif rtype == "CAA":
                    body["data"] = {"flags": rdata.flags, "tag": rdata.tag.decode(),
                                    "value": rdata.value.decode()}
                else:
                    body["content"] = rdata.to_text(origin=origin, relativize=False)
                bodies.append(body)
    return bodies


def dnssec_as_served(zone: str, server: str, port: int, timeout: float = 5.0):
    """(status, DS text or None): the DNSSEC status Cloudflare would report for ``zone`` as
    ``server`` serves it. "disabled": no key-signing DNSKEY; signed: "active" when a DS of its
    key is served at the parent side (asked of the same server, which serves every lab zone),
    else "pending" (Cloudflare signs but the registrar has no DS)."""
    try:
        key_ds = zone_ds(server, zone, port, timeout)
    except KnotError:
        return "disabled", None
    query = dns.message.make_query(zone + ".", "DS")
    answer = dns.query.tcp(query, server, port=port, timeout=timeout)
    served = {rdata.to_text().lower() for rrset in answer.answer
              if rrset.rdtype == dns.rdatatype.DS for rdata in rrset}
    matching = [ds for ds in key_ds if ds.lower() in served]
    return ("active", matching[0]) if matching else ("pending", key_ds[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--zone", required=True, action="append",
                        help="a zone of the account (several: repeat)")
    parser.add_argument("--dns", required=True, help="the DNS server to seed from and mirror to")
    parser.add_argument("--dns-port", type=int, default=53)
    parser.add_argument("--secrets", required=True,
                        help="TOML with cloudflare_api_token and tsig_secret")
    args = parser.parse_args(argv)
    with open(args.secrets, "rb") as file:
        secrets = tomllib.load(file)
    keyring = dns.tsigkeyring.from_text({TSIG_KEY_NAME: secrets["tsig_secret"]})
    host, _, port = args.listen.rpartition(":")
    emulator = CloudflareEmulator(secrets["cloudflare_api_token"], zones=args.zone,
                                  host=host, port=int(port))
    mirrors = []
    for zone in args.zone:
        seed = records_from_dns(zone, args.dns, args.dns_port, keyring)
        if seed:
            emulator.add_records(zone, seed)
        status, ds = dnssec_as_served(zone, args.dns, args.dns_port)
        emulator.set_dnssec(zone, status, ds)
        mirrors.append(Rfc2136Mirror(args.dns, args.dns_port, zone, TSIG_KEY_NAME,
                                     secrets["tsig_secret"]))
        print(f"cloudflare emulator: zone {zone} ({len(seed)} records from {args.dns}, "
              f"DNSSEC {status})", flush=True)
    # each mirror copies the writes of its own zone
    emulator.on_write = lambda *change: [mirror(*change) for mirror in mirrors]
    emulator.start()
    print(f"cloudflare emulator on {emulator.base_url}, mirroring writes by RFC 2136",
          flush=True)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    emulator.stop()


if __name__ == "__main__":
    main()
