"""The mail DNS records a set of hosts needs: pure functions of their settings and DKIM keys.

For each mail host: A and AAAA of its hostname (never proxied). For each mail domain: MX, the
SPF TXT (every serving host's IPv4 and IPv6 written explicitly, plus includes), DKIM TXT at
``SELECTOR._domainkey``, DMARC TXT at ``_dmarc``, TLS-RPT TXT at ``_smtp._tls``, CAA, and the
SRV records that let mail clients find submission and IMAP (RFC 6186, RFC 8314).
When several hosts serve one domain, MX and SPF list them all; the other records follow the
first of them in inventory order.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailhost.dkim import DkimPublicKeys, record_name
from mailhost.dnsplan import Ownership
from mailhost.records import RecordSet, zone_of
from mailhost.settings import Settings
from mailhost.spf import spf_record


@dataclass(frozen=True)
class MailHost:
    """One host's settings and the public halves of its domains' DKIM keys."""

    settings: Settings
    dkim: dict[str, DkimPublicKeys]


@dataclass(frozen=True)
class ZoneRecords:
    zone: str
    desired: list[RecordSet]
    ownership: Ownership


def dmarc_record(settings: Settings) -> str:
    tags = [f"v=DMARC1; p={settings.dmarc_policy}"]
    if settings.dmarc_subdomain_policy:
        tags.append(f"sp={settings.dmarc_subdomain_policy}")
    if settings.dmarc_pct != 100:
        tags.append(f"pct={settings.dmarc_pct}")
    if settings.dmarc_rua:
        tags.append("rua=" + ",".join(settings.dmarc_rua))
    if settings.dmarc_ruf:
        tags.append("ruf=" + ",".join(settings.dmarc_ruf))
    if settings.dmarc_adkim != "r":
        tags.append(f"adkim={settings.dmarc_adkim}")
    if settings.dmarc_aspf != "r":
        tags.append(f"aspf={settings.dmarc_aspf}")
    return "; ".join(tags)


def tlsrpt_record(settings: Settings) -> str:
    return "v=TLSRPTv1; rua=" + ",".join(settings.tlsrpt_rua)


def caa_values(settings: Settings) -> list[str]:
    values = [f'0 issue "{issuer}"' for issuer in settings.caa_issuers]
    values.append('0 issuewild ";"')
    if settings.caa_iodef:
        values.append(f'0 iodef "{settings.caa_iodef}"')
    return values


# (service label, port, offered): RFC 6186 and 8314; a service not offered has target "."
CLIENT_SERVICES = [("_submissions._tcp", 465, lambda s: True),
                   ("_submission._tcp", 587, lambda s: True),
                   ("_imaps._tcp", 993, lambda s: True),
                   ("_imap._tcp", 143, lambda s: s.imap_starttls),
                   ("_pop3._tcp", 110, lambda s: False)]
NOT_OFFERED = "0 0 0 ."


def srv_records(domain: str, hosts: list[MailHost]) -> list[RecordSet]:
    """Where a mail client of DOMAIN finds each service: every serving host that offers it
    (priority 0, weight 1), or "." when none does."""
    ttl = hosts[0].settings.dns_ttl
    records = []
    for label, port, offered in CLIENT_SERVICES:
        values = [f"0 1 {port} {h.settings.mail_hostname}" for h in hosts if offered(h.settings)]
        records.append(RecordSet(f"{label}.{domain}", "SRV", ttl, tuple(values or [NOT_OFFERED])))
    return records


def host_records(settings: Settings) -> list[RecordSet]:
    ttl = settings.dns_ttl
    records = [RecordSet(settings.mail_hostname, "A", ttl, (str(settings.ipv4),))]
    if settings.ipv6:
        records.append(RecordSet(settings.mail_hostname, "AAAA", ttl, (str(settings.ipv6),)))
    return records


def domain_records(domain: str, hosts: list[MailHost]) -> list[RecordSet]:
    """The records of one mail domain, served by ``hosts`` (the first one sets the policy)."""
    first = hosts[0].settings
    ttl = first.dns_ttl
    mx = [f"10 {h.settings.mail_hostname}" for h in hosts]
    spf = spf_record(
        _unique(str(h.settings.ipv4) for h in hosts),
        _unique(str(h.settings.ipv6) for h in hosts if h.settings.ipv6),
        _unique(i for h in hosts for i in h.settings.spf_include),
        first.spf_all,
    )
    keys = hosts[0].dkim[domain]
    records = [
        RecordSet(domain, "MX", ttl, tuple(mx)),
        RecordSet(domain, "TXT", ttl, (spf,)),
        RecordSet(record_name(first.dkim_selector, domain), "TXT", ttl, (keys.rsa_txt(),)),
        RecordSet(f"_dmarc.{domain}", "TXT", ttl, (dmarc_record(first),)),
    ]
    if first.dkim_ed25519:
        records.append(RecordSet(record_name(first.ed25519_selector, domain), "TXT", ttl,
                                 (keys.ed25519_txt(),)))
    if first.tlsrpt_rua:
        records.append(RecordSet(f"_smtp._tls.{domain}", "TXT", ttl, (tlsrpt_record(first),)))
    if first.caa_issuers:
        records.append(RecordSet(domain, "CAA", ttl, tuple(caa_values(first))))
    return records + srv_records(domain, hosts)


def desired_by_zone(hosts: list[MailHost]) -> list[ZoneRecords]:
    """Every record the hosts need, grouped by zone, with what this tool owns in each zone."""
    records: list[RecordSet] = []
    extra_owned: set[tuple[str, str]] = set()
    apexes: set[str] = set()
    mx_keep: set[tuple[str, str]] = set()
    zones_of_host = {}
    for host in hosts:
        records += host_records(host.settings)
        extra_owned |= {(host.settings.mail_hostname, "A"), (host.settings.mail_hostname, "AAAA")}
        zones_of_host[host.settings.mail_hostname] = host.settings.zones
    for domain in _unique(d for h in hosts for d in h.settings.mail_domains):
        serving = [h for h in hosts if domain in h.settings.mail_domains]
        records += domain_records(domain, serving)
        extra_owned.add((record_name(serving[0].settings.ed25519_selector, domain), "TXT"))
        apexes.add(domain)
        mx_keep |= {(domain, v) for h in serving for v in h.settings.mx_keep}

    all_zones = _unique(z for h in hosts for z in h.settings.zones)
    by_zone: dict[str, list[RecordSet]] = {}
    for record in _merge(records):
        by_zone.setdefault(zone_of(record.name, all_zones), []).append(record)
    result = []
    for zone, zone_records in sorted(by_zone.items()):
        keys = {r.key for r in zone_records}
        keys |= {k for k in extra_owned if zone_of(k[0], all_zones) == zone}
        shared = frozenset(a for a in apexes if zone_of(a, all_zones) == zone)
        keep = frozenset(k for k in mx_keep if k[0] in shared)
        result.append(ZoneRecords(zone, zone_records, Ownership(frozenset(keys), shared, keep)))
    return result


def _merge(records: list[RecordSet]) -> list[RecordSet]:
    """One RecordSet per key (two hosts can share an A only by mistake: union the values)."""
    merged: dict[tuple[str, str], RecordSet] = {}
    for record in records:
        if record.key in merged:
            previous = merged[record.key]
            record = previous.with_values(previous.values + record.values)
        merged[record.key] = record
    return list(merged.values())


def _unique(items) -> list:
    return list(dict.fromkeys(items))
