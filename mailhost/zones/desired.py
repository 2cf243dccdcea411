"""The mail DNS records a set of hosts needs: pure functions of their settings and DKIM keys.

For each mail host: A and AAAA of its hostname (never proxied). For each mail domain: MX, the
SPF TXT (every serving host's IPv4 and IPv6 written explicitly, plus includes), DKIM TXT at
``SELECTOR._domainkey``, DMARC TXT at ``_dmarc``, TLS-RPT TXT at ``_smtp._tls``, CAA, and the
SRV records that let mail clients find submission, IMAP (RFC 6186, RFC 8314) and ManageSieve
(RFC 5804); with ``mail_client_autoconfig``, the addresses of autoconfig.DOMAIN and
autodiscover.DOMAIN (Thunderbird's and Outlook's files, mailhost.dns.autoconfig).
When several hosts serve one domain, MX and SPF list them all; the other records follow the
first of them in inventory order. A host that is a domain's backup MX (``backup_mx_for``) is in
its MX at preference 20, below the mail hosts' 10, and in its MTA-STS policy.

A parked domain (``parked_domains``) gets the records that say it sends and receives no mail
(M3AAWG's parked-domain practice): null MX (RFC 7505), ``v=spf1 -all``, DMARC ``p=reject`` and an
empty DKIM key for every selector; the records it had as a mail domain are deleted.

A DMARC report address outside the reporting domain's organization needs that domain's consent
(RFC 7489 7.1): ``DOMAIN._report._dmarc.REPORTDOMAIN TXT "v=DMARC1"``, published here when the
report domain is in a zone this tool writes (the checks report it missing otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from publicsuffixlist import PublicSuffixList

from mailhost.dns import autoconfig, mta_sts
from mailhost.dns.records import RecordSet, zone_of
from mailhost.dns.spf import spf_record
from mailhost.keys import dane
from mailhost.keys.dkim import DKIM_PENDING, DkimPublicKeys, record_name, selector_for
from mailhost.settings import Settings
from mailhost.zones.plan import Ownership


@dataclass(frozen=True)
class MailHost:
    """One host's settings and the public halves of its domains' DKIM keys."""

    settings: Settings
    dkim: dict[str, DkimPublicKeys]
    # the TLSA values of its certificate's key and a rollover's next key (mailhost.keys.dane)
    tlsa: tuple[str, ...] = ()
    # False: not deployed in this run (--limit, unreachable): a DKIM key the controller does
    # not hold is unknown, and its record is left as it is (neither desired nor owned)
    in_run: bool = True


@dataclass(frozen=True)
class ZoneRecords:
    zone: str
    desired: list[RecordSet]
    ownership: Ownership
    notices: tuple[str, ...] = ()  # what the plan shows beside its changes
    # (domain, its host's addresses) of each mail domain whose mta_sts_mode is "off": the plan
    # reads its MTA-STS records (not owned) to say when they were left behind
    mta_sts_off: tuple[tuple[str, tuple[str, ...]], ...] = ()


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


NULL_MX = "0 ."
PARKED_SPF = "v=spf1 -all"
EMPTY_DKIM_KEY = "v=DKIM1; p="


def parked_dmarc_record(settings: Settings) -> str:
    """Reject everything that claims the domain, in it and below it; reports if asked."""
    tags = ["v=DMARC1", "p=reject", "sp=reject", "adkim=s", "aspf=s"]
    if settings.dmarc_rua:
        tags.append("rua=" + ",".join(settings.dmarc_rua))
    return "; ".join(tags)


def parked_records(domain: str, settings: Settings) -> list[RecordSet]:
    ttl = settings.dns_ttl
    return [
        RecordSet(domain, "MX", ttl, (NULL_MX,)),
        RecordSet(domain, "TXT", ttl, (PARKED_SPF,)),
        RecordSet(f"_dmarc.{domain}", "TXT", ttl, (parked_dmarc_record(settings),)),
        RecordSet(record_name("*", domain), "TXT", ttl, (EMPTY_DKIM_KEY,)),
    ]


def mail_domain_keys(domain: str, settings: Settings) -> set[tuple[str, str]]:
    """Every key a mail domain's records use: what a parked domain deletes when found."""
    return {(domain, "MX"), (domain, "TXT"), (f"_dmarc.{domain}", "TXT"),
            (f"_smtp._tls.{domain}", "TXT"),
            *((f"{label}.{domain}", "SRV") for label, _port, _offered in CLIENT_SERVICES),
            *mta_sts_keys(domain, settings), *autoconfig_keys(domain, settings),
            *((record_name(selector_for(settings, kind), domain), "TXT")
              for kind in ("rsa", "ed25519"))}


def report_domain(uri: str) -> str:
    return uri.rsplit("@", 1)[1].split("!", 1)[0].lower()


@cache
def public_suffix_list() -> PublicSuffixList:
    """The Public Suffix List bundled with publicsuffixlist (never fetched), read once."""
    return PublicSuffixList()


def organizational_domain(name: str) -> str:
    """A name's organizational domain (RFC 7489 3.2): one label below its public suffix."""
    name = name.lower().rstrip(".")
    return public_suffix_list().privatesuffix(name) or name


def needs_report_consent(domain: str, report_domain_: str) -> bool:
    """A report address in another organization needs its consent (RFC 7489 7.1)."""
    if domain.lower() == report_domain_.lower():  # the usual case: no list to read
        return False
    return organizational_domain(domain) != organizational_domain(report_domain_)


def report_consents(settings: Settings, domains: list[str]) -> list[tuple[str, str]]:
    """(reporting domain, report domain) pairs whose ``_report._dmarc`` record is needed."""
    uris = [*settings.dmarc_rua, *settings.dmarc_ruf]
    return list(dict.fromkeys(
        (domain, report_domain(uri)) for domain in domains for uri in uris
        if needs_report_consent(domain, report_domain(uri))))


def report_consent_name(domain: str, report_domain_: str) -> str:
    return f"{domain}._report._dmarc.{report_domain_}"


def our_spf_terms(settings: Settings) -> set[str]:
    """The SPF terms a host's records write (without qualifier, lowercase)."""
    terms = {f"ip4:{settings.ipv4}", *(f"include:{i.lower()}" for i in settings.spf_include)}
    return terms | ({f"ip6:{settings.ipv6}"} if settings.ipv6 else set())


# (service label, port, offered): RFC 6186 and 8314, and ManageSieve's (RFC 5804 1.8); a
# service not offered has target "."
CLIENT_SERVICES = (("_submissions._tcp", 465, lambda s: True),
                   ("_submission._tcp", 587, lambda s: True),
                   ("_imaps._tcp", 993, lambda s: True),
                   ("_imap._tcp", 143, lambda s: s.imap_starttls),
                   ("_pop3._tcp", 110, lambda s: False),
                   ("_sieve._tcp", 4190, lambda s: True))
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


def host_records(settings: Settings, tlsa: tuple[str, ...] = ()) -> list[RecordSet]:
    """A/AAAA of the host; its TLSA with ``dane = "auto"`` once its certificate's key exists
    (published only in a signed zone: zones.sync.ZoneSync.plan drops it otherwise)."""
    ttl = settings.dns_ttl
    records = [RecordSet(settings.mail_hostname, "A", ttl, (str(settings.ipv4),))]
    if settings.ipv6:
        records.append(RecordSet(settings.mail_hostname, "AAAA", ttl, (str(settings.ipv6),)))
    values = tuple(v for v in tlsa if v != dane.TLSA_PENDING)
    if settings.dane == "auto" and values:
        records.append(RecordSet(dane.tlsa_name(settings.mail_hostname), "TLSA", ttl, values))
    return records


PRIMARY_PREFERENCE, BACKUP_PREFERENCE = 10, 20


def domain_records(domain: str, hosts: list[MailHost],
                   backups: list[MailHost] = ()) -> list[RecordSet]:
    """The records of one mail domain, served by ``hosts`` (the first one sets the policy) and
    held for them by ``backups`` (their ``backup_mx_for``), which are in its MX and MTA-STS
    policy only."""
    first = hosts[0].settings
    ttl = first.dns_ttl
    mx = [f"{PRIMARY_PREFERENCE} {h.settings.mail_hostname}" for h in hosts]
    mx += [f"{BACKUP_PREFERENCE} {h.settings.mail_hostname}" for h in backups]
    spf = spf_record(
        _unique(str(h.settings.ipv4) for h in hosts),
        _unique(str(h.settings.ipv6) for h in hosts if h.settings.ipv6),
        _unique(i for h in hosts for i in h.settings.spf_include),
        first.spf_all,
    )
    keys = hosts[0].dkim[domain]
    dkim = [RecordSet(record_name(selector, domain), "TXT", ttl, (txt,))
            for selector, txt in keys.rsa_records(first.dkim_selector)]  # two in a rotation
    if first.dkim_ed25519:
        dkim.append(RecordSet(record_name(first.ed25519_selector, domain), "TXT", ttl,
                              (keys.ed25519_txt(),)))
    if not hosts[0].in_run:  # unknown keys of a host not in this run: left as they are
        dkim = [r for r in dkim if DKIM_PENDING not in r.values[0]]
    records = [
        RecordSet(domain, "MX", ttl, tuple(mx)),
        RecordSet(domain, "TXT", ttl, (spf,)),
        *dkim,
        RecordSet(f"_dmarc.{domain}", "TXT", ttl, (dmarc_record(first),)),
    ]
    if first.tlsrpt_rua:
        records.append(RecordSet(f"_smtp._tls.{domain}", "TXT", ttl, (tlsrpt_record(first),)))
    if first.caa_issuers:
        records.append(RecordSet(domain, "CAA", ttl, tuple(caa_values(first))))
    return (records + srv_records(domain, hosts)
            + mta_sts_records(domain, hosts, backups) + autoconfig_records(domain, hosts))


def mta_sts_records(domain: str, hosts: list[MailHost],
                    backups: list[MailHost] = ()) -> list[RecordSet]:
    """With mta_sts_mode other than "off": the policy host's addresses (the first serving
    host serves the policy) and the ``_mta-sts`` TXT whose id follows the policy text (which
    names the backup MX hosts too)."""
    first = hosts[0].settings
    if first.mta_sts_mode == "off":
        return []
    text = mta_sts.policy_text(first.mta_sts_mode,
                               mta_sts.mx_hosts([h.settings for h in [*hosts, *backups]]),
                               first.mta_sts_max_age)
    name, ttl = mta_sts.policy_host(domain), first.dns_ttl
    records = [RecordSet(name, "A", ttl, (str(first.ipv4),)),
               RecordSet(mta_sts.record_name(domain), "TXT", ttl, (mta_sts.txt_record(text),))]
    if first.ipv6:
        records.append(RecordSet(name, "AAAA", ttl, (str(first.ipv6),)))
    return records


def mta_sts_keys(domain: str, settings: Settings) -> set[tuple[str, str]]:
    """The keys MTA-STS records use, owned unless mta_sts_mode is "off" (then an MTA-STS set
    up elsewhere is left alone; with "none" our AAAA goes when ipv6 is unset)."""
    return set() if settings.mta_sts_mode == "off" else mta_sts.record_keys(domain)


def autoconfig_records(domain: str, hosts: list[MailHost]) -> list[RecordSet]:
    """With mail_client_autoconfig: autoconfig.DOMAIN and autodiscover.DOMAIN at the first
    serving host, whose nginx serves the files (mailhost.dns.autoconfig)."""
    first = hosts[0].settings
    if not first.mail_client_autoconfig:
        return []
    records = []
    for name in (autoconfig.autoconfig_host(domain), autoconfig.autodiscover_host(domain)):
        records.append(RecordSet(name, "A", first.dns_ttl, (str(first.ipv4),)))
        if first.ipv6:
            records.append(RecordSet(name, "AAAA", first.dns_ttl, (str(first.ipv6),)))
    return records


def autoconfig_keys(domain: str, settings: Settings) -> set[tuple[str, str]]:
    """The keys of the autoconfiguration records, owned while mail_client_autoconfig is on
    (then an AAAA goes when ipv6 is unset); turned off, they are left alone, as records made
    by hand at those names would be."""
    return autoconfig.record_keys(domain) if settings.mail_client_autoconfig else set()


def desired_by_zone(hosts: list[MailHost]) -> list[ZoneRecords]:
    """Every record the hosts need, grouped by zone, with what this tool owns in each zone."""
    records: list[RecordSet] = []
    extra_owned: set[tuple[str, str]] = set()
    apexes: set[str] = set()
    mx_keep: set[tuple[str, str]] = set()
    zones_of_host = {}
    for host in hosts:
        records += host_records(host.settings, host.tlsa)
        extra_owned |= {(host.settings.mail_hostname, "A"), (host.settings.mail_hostname, "AAAA")}
        # owned once its key is known: a rebuilt host's old TLSA is replaced (not deleted first)
        # by the operation after its new certificate (zones.sync.tlsa_records)
        if host.settings.dane == "auto" and host.tlsa:
            extra_owned.add((dane.tlsa_name(host.settings.mail_hostname), "TLSA"))
        zones_of_host[host.settings.mail_hostname] = host.settings.zones
    for domain in _unique(d for h in hosts for d in h.settings.mail_domains):
        serving = [h for h in hosts if domain in h.settings.mail_domains]
        backups = [h for h in hosts if domain in h.settings.backup_mx_for]
        records += domain_records(domain, serving, backups)
        if serving[0].in_run:  # else its unknown ed25519 key is left alone too
            extra_owned.add((record_name(serving[0].settings.ed25519_selector, domain), "TXT"))
        # a rotation's retired selectors: owned in the run that deletes their records
        extra_owned |= {(record_name(s, domain), "TXT") for s in serving[0].dkim[domain].removed}
        extra_owned |= mta_sts_keys(domain, serving[0].settings)
        extra_owned |= autoconfig_keys(domain, serving[0].settings)
        apexes.add(domain)
        mx_keep |= {(domain, v) for h in serving for v in h.settings.mx_keep}

    for host in hosts:
        for domain in host.settings.parked_domains:
            records += parked_records(domain, host.settings)
            extra_owned |= mail_domain_keys(domain, host.settings)
            apexes.add(domain)

    mail_hosts = frozenset(h.settings.mail_hostname for h in hosts)
    spf_terms = frozenset(term for h in hosts for term in our_spf_terms(h.settings))
    all_zones = _unique(z for h in hosts for z in h.settings.zones)
    for host in hosts:
        domains = [*host.settings.mail_domains, *host.settings.parked_domains]
        for domain, reports_to in report_consents(host.settings, domains):
            if zone_of(reports_to, all_zones) is not None:
                records.append(RecordSet(report_consent_name(domain, reports_to), "TXT",
                                         host.settings.dns_ttl, ("v=DMARC1",)))
    by_zone: dict[str, list[RecordSet]] = {}
    for record in _merge(records):
        by_zone.setdefault(zone_of(record.name, all_zones), []).append(record)
    result = []
    for zone, zone_records in sorted(by_zone.items()):
        keys = {r.key for r in zone_records}
        keys |= {k for k in extra_owned if zone_of(k[0], all_zones) == zone}
        shared = frozenset(a for a in apexes if zone_of(a, all_zones) == zone)
        keep = frozenset(k for k in mx_keep if k[0] in shared)
        result.append(ZoneRecords(zone, zone_records, Ownership(
            frozenset(keys), shared, keep, mail_hosts, spf_terms)))
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
