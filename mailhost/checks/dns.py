"""DNS checks, asked of the zone's authoritative servers: A/AAAA, MX, SPF, DKIM, DMARC, TLS-RPT,
CAA, each compared with what the settings (and the DKIM key on the host) ask for; the records of
parked domains; the consent of report domains in other organizations."""

from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import replace

import checkdmarc.dmarc
import checkdmarc.spf
import checkdmarc.utils
import dns.exception as _dns_exception
import spf as pyspf

from mailhost.checks import OK, WARNING, CheckResult, guarded, result
from mailhost.dns.spf import MAX_DNS_LOOKUPS
from mailhost.keys import rotation
from mailhost.keys.dkim import (
    kinds_for,
    public_half,
    record_name,
    rotation_state,
    selector_for,
    signing_selector,
)
from mailhost.lookup import CheckResolver
from mailhost.settings import Settings
from mailhost.zones.desired import (
    NULL_MX,
    PARKED_SPF,
    caa_values,
    dmarc_record,
    parked_dmarc_record,
    report_consent_name,
    report_consents,
    tlsrpt_record,
)
from mailhost.zones.plan import caa_beside

MAX_VOID_LOOKUPS = 2
REDEPLOY = ("run the deploy (pyinfra INVENTORY deploy.py) to publish it again; if someone "
            "edits this record by hand, stop them: the deploy owns it")


def checks(settings: Settings, resolver: CheckResolver, host=None) -> list[CheckResult]:
    """Every DNS check of one host and its mail domains."""
    found = [address_check(settings, resolver, "A", str(settings.ipv4))]
    if settings.ipv6:
        found.append(address_check(settings, resolver, "AAAA", str(settings.ipv6)))
    for domain in settings.mail_domains:
        found.append(mx_check(settings, resolver, domain))
        found.append(spf_record_check(resolver, domain))
        for address in _addresses(settings):
            found.append(spf_pass_check(settings, resolver, domain, address))
        for kind in kinds_for(settings):
            found.append(dkim_check(settings, resolver, domain, kind, host))
            if kind == "rsa":
                found[-1] = with_rotation(found[-1], settings, domain)
        found.append(dmarc_check(settings, resolver, domain))
        if settings.tlsrpt_rua:
            found.append(tlsrpt_check(settings, resolver, domain))
        if settings.caa_issuers:
            found.append(caa_check(settings, resolver, domain))
    for domain in settings.parked_domains:
        found.append(parked_check(settings, resolver, domain))
    domains = [*settings.mail_domains, *settings.parked_domains]
    for domain, reports_to in report_consents(settings, domains):
        found.append(report_consent_check(resolver, domain, reports_to))
    return found


def _addresses(settings: Settings) -> list[str]:
    return [str(settings.ipv4)] + ([str(settings.ipv6)] if settings.ipv6 else [])


def address_check(settings, resolver, rtype, address) -> CheckResult:
    name = f"dns: {rtype} {settings.mail_hostname}"

    def check():
        values = sorted(r.address for r in resolver.values(settings.mail_hostname, rtype))
        return result(name, values == [address], address, ", ".join(values) or "no record",
                      f"the {rtype} record of {settings.mail_hostname} must be {address}: "
                      + REDEPLOY)
    return guarded(name, address, REDEPLOY, check)


def mx_check(settings, resolver, domain) -> CheckResult:
    name = f"dns: MX {domain}"
    expected = f"an MX to {settings.mail_hostname}"

    def check():
        records = sorted((r.preference, r.exchange.to_text().rstrip(".").lower())
                         for r in resolver.values(domain, "MX"))
        found = ", ".join(f"{p} {e}" for p, e in records) or "no MX record"
        return result(name, settings.mail_hostname in [e for _, e in records], expected, found,
                      f"mail for {domain} must go to {settings.mail_hostname}: " + REDEPLOY)
    return guarded(name, expected, REDEPLOY, check)


def spf_record_check(resolver, domain) -> CheckResult:
    """One SPF record that parses, within 10 DNS lookups and 2 void lookups (RFC 7208 4.6.4)."""
    name = f"dns: SPF {domain} parses"
    expected = (f"one valid v=spf1 record, at most {MAX_DNS_LOOKUPS} DNS lookups and "
                f"{MAX_VOID_LOOKUPS} void lookups")
    advice = ("receivers treat this SPF record as an error (permerror): fix or drop the "
              "includes (spf_include) that need too many lookups or point at names without "
              "records, then " + REDEPLOY)

    def check():
        checkdmarc.utils.DNS_CACHE.clear()  # checkdmarc caches answers: ask again
        spf = checkdmarc.spf.check_spf(domain, resolver=resolver, retries=0)
        if not spf.get("record"):
            return result(name, False, expected, spf.get("error", "no SPF record"), advice)
        lookups, void = spf.get("dns_lookups"), spf.get("void_dns_lookups")
        found = f"{spf['record']} ({lookups} lookups, {void} void)"
        if not spf["valid"]:
            found += f": {spf.get('error')}"
        passed = (spf["valid"] and lookups is not None and lookups <= MAX_DNS_LOOKUPS
                  and (void or 0) <= MAX_VOID_LOOKUPS)
        return result(name, passed, expected, found, advice)
    return guarded(name, expected, advice, check)


_PYSPF_DNS = threading.Lock()  # pyspf reads one module-level DNS function


def spf_result(resolver: CheckResolver, address: str, sender: str, helo: str) -> tuple[str, str]:
    """pyspf's (result, explanation) for a message from ``address``, asking ``resolver``."""
    def lookup(name, qtype, strict=True, timeout=None):
        found = []
        try:
            answers = resolver.values(name, qtype)
        except _dns_exception.DNSException as error:
            raise pyspf.TempError(f"DNS {error}") from None
        for rdata in answers:
            if qtype in ("A", "AAAA"):
                found.append(((name, qtype), rdata.address))
            elif qtype == "MX":
                found.append(((name, qtype), (rdata.preference, rdata.exchange)))
            elif qtype == "PTR":
                found.append(((name, qtype), rdata.target.to_text(True)))
            elif qtype in ("TXT", "SPF"):
                found.append(((name, qtype), rdata.strings))
        return found

    with _PYSPF_DNS:
        saved, pyspf.DNSLookup = pyspf.DNSLookup, lookup
        try:
            outcome, explanation = pyspf.check2(i=address, s=sender, h=helo)
        finally:
            pyspf.DNSLookup = saved
    return outcome, explanation


def spf_pass_check(settings, resolver, domain, address) -> CheckResult:
    name = f"dns: SPF {domain} passes {address}"
    advice = (f"receivers will not accept mail from {address} as {domain}: the SPF record "
              f"must list ip{6 if ':' in address else 4}:{address}; " + REDEPLOY)

    def check():
        outcome, explanation = spf_result(resolver, address, f"postmaster@{domain}",
                                          settings.mail_hostname)
        found = outcome + (f" ({explanation})" if explanation else "")
        return result(name, outcome == "pass", "pass", found, advice)
    return guarded(name, "pass", advice, check)


def fingerprint(public: str) -> str:
    """A short name for a DKIM public key (sha256 of its p= value)."""
    return "sha256:" + hashlib.sha256(base64.b64decode(public)).hexdigest()[:16]


def dkim_tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        key, _, value = part.strip().partition("=")
        if key:
            tags[key.strip()] = "".join(value.split())
    return tags


def signing_of(settings, domain, kind) -> str:
    """The selector the host signs with: RSA's follows the rotation (mailhost.keys.dkim)."""
    return signing_selector(settings, domain) if kind == "rsa" else selector_for(settings, kind)


def key_of_host(settings, domain, kind, host) -> tuple[str | None, str]:
    """The public half of the signing key and where it was read (dkim.public_half: the
    controller's key, else the host's when the host is managed here)."""
    from mailhost.facts import DkimPublicKey

    read = None if host is None else (lambda path: host.get_fact(DkimPublicKey, path=path))
    return public_half(settings, domain, kind, read, signing_of(settings, domain, kind))


def dkim_check(settings, resolver, domain, kind, host) -> CheckResult:
    """The signing selector's record is published and holds the key the host signs with."""
    record = record_name(signing_of(settings, domain, kind), domain)
    name = f"dns: DKIM {record}"
    advice = (f"the DKIM record at {record} does not match the key the host signs with: "
              f"receivers will fail every signature; " + REDEPLOY)

    def check():
        public, where = key_of_host(settings, domain, kind, host)
        if public is None:
            return result(name, False, f"the key of {where}", f"no key at {where}",
                          "run the deploy: it generates and uploads the key")
        expected = f"{kind} key {fingerprint(public)} (from {where})"
        records = [dkim_tags(t) for t in resolver.texts(record)]
        records = [t for t in records if t.get("v", "DKIM1") == "DKIM1" and "p" in t]
        if len(records) != 1:
            return result(name, False, expected, f"{len(records)} DKIM records", advice)
        found_key = records[0]["p"]
        found = f"{records[0].get('k', 'rsa')} key {fingerprint(found_key)}"
        return result(name, found_key == public and records[0].get("k", "rsa") == kind,
                      expected, found, advice)
    return guarded(name, "the host's key", advice, check)


def with_rotation(outcome: CheckResult, settings, domain) -> CheckResult:
    """The RSA key's check, with the rotation's phase: a warning (not a failure: the next
    deploys finish it) while a rotation is under way and the signing key's record is right."""
    state = rotation_state(settings, domain)
    if state is None or outcome.status != OK:
        return outcome
    found = f"{outcome.found}; rotation: {state.phase}"
    if state.phase == rotation.STEADY:
        return replace(outcome, found=found)
    return replace(outcome, status=WARNING, found=f"{found} (published: "
                   f"{', '.join(state.published)})",
                   advice="a key rotation is under way: each deploy advances it one phase "
                          "(--dry shows the next step); deploy again later to finish it")


def dmarc_check(settings, resolver, domain) -> CheckResult:
    name = f"dns: DMARC _dmarc.{domain}"
    wanted = {"p": settings.dmarc_policy, "sp": settings.dmarc_subdomain_policy
              or settings.dmarc_policy, "pct": str(settings.dmarc_pct)}
    expected = dmarc_record(settings)
    advice = "the DMARC record must parse and carry the configured policy; " + REDEPLOY

    def check():
        records = [t for t in resolver.texts(f"_dmarc.{domain}") if t.startswith("v=DMARC1")]
        if len(records) != 1:
            return result(name, False, expected, f"{len(records)} DMARC records", advice)
        checkdmarc.utils.DNS_CACHE.clear()
        try:
            tags = checkdmarc.dmarc.parse_dmarc_record(records[0], domain, resolver=resolver,
                                                       retries=0)["tags"]
        except checkdmarc.dmarc.DMARCError as error:
            return result(name, False, expected, f"{records[0]}: {error}", advice)
        found = {"p": tags["p"]["value"], "sp": tags["sp"]["value"],
                 "pct": dkim_tags(records[0]).get("pct", "100")}  # checkdmarc drops pct
        return result(name, found == wanted, expected, records[0], advice)
    return guarded(name, expected, advice, check)


def tlsrpt_check(settings, resolver, domain) -> CheckResult:
    name = f"dns: TLS-RPT _smtp._tls.{domain}"
    expected = tlsrpt_record(settings)

    def check():
        records = [t for t in resolver.texts(f"_smtp._tls.{domain}")
                   if t.startswith("v=TLSRPTv1")]
        found = " | ".join(records) or "no TLS-RPT record"
        return result(name, [_tags(r) for r in records] == [_tags(expected)], expected, found,
                      REDEPLOY)
    return guarded(name, expected, REDEPLOY, check)


def caa_check(settings, resolver, domain) -> CheckResult:
    name = f"dns: CAA {domain}"
    expected = sorted(caa_values(settings))

    def check():
        found = sorted(r.to_text() for r in resolver.values(domain, "CAA"))
        wanted = caa_beside(expected, found)  # other CAs may stay (the DNS part keeps them)
        return result(name, set(wanted) <= set(found), ", ".join(wanted),
                      ", ".join(found) or "none",
                      "these CAs must be allowed to issue for the domain (caa_issuers); "
                      + REDEPLOY)
    return guarded(name, ", ".join(expected), REDEPLOY, check)


def _tags(record: str) -> dict[str, str]:
    return dkim_tags(record)  # TLS-RPT tags are written like DKIM's: k=v; k=v



def parked_check(settings, resolver, domain) -> CheckResult:
    """A parked domain says it takes and sends no mail: null MX, SPF -all, DMARC reject."""
    name = f"dns: parked {domain}"
    dmarc = parked_dmarc_record(settings)
    expected = f"MX {NULL_MX}; {PARKED_SPF}; {dmarc}"

    def check():
        mx = sorted(f"{r.preference} {r.exchange.to_text().rstrip('.') or '.'}"
                    for r in resolver.values(domain, "MX"))
        spf = [t for t in resolver.texts(domain) if t.lower().startswith("v=spf1")]
        dmarcs = [t for t in resolver.texts(f"_dmarc.{domain}") if t.startswith("v=DMARC1")]
        found = (f"MX {', '.join(mx) or 'none'}; {' | '.join(spf) or 'no SPF'}; "
                 f"{' | '.join(dmarcs) or 'no DMARC'}")
        return result(name, mx == [NULL_MX] and spf == [PARKED_SPF] and dmarcs == [dmarc],
                      expected, found, "a parked domain must publish that it takes no mail; "
                      + REDEPLOY)
    return guarded(name, expected, REDEPLOY, check)


def report_consent_check(resolver, domain, reports_to) -> CheckResult:
    """RFC 7489 7.1: receivers send a domain's reports to another organization's address only
    when that organization publishes its consent."""
    record = report_consent_name(domain, reports_to)
    name = f"dns: DMARC reports of {domain} accepted by {reports_to}"
    expected = f'{record} TXT "v=DMARC1"'
    advice = (f"receivers drop {domain}'s DMARC reports to {reports_to} without this record: "
              f"publish it in {reports_to}'s zone (list that zone in dns_zones and the deploy "
              "publishes it), or send the reports to an address in the domain itself")

    def check():
        texts = [t for t in resolver.texts(record) if t.startswith("v=DMARC1")]
        return result(name, bool(texts), expected, " | ".join(texts) or "no record", advice)
    return guarded(name, expected, advice, check)
