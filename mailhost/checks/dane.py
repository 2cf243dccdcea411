"""DANE (RFC 7672), from the controller, with ``dane = "auto"``: the TLSA record at
``_25._tcp.MAIL_HOSTNAME`` matches the certificate the host presents on port 25 over IPv4 and
IPv6, and its signature validates up to the zone's DNSKEY set (dnspython, asking the zone's
authoritative servers; whether the parent holds the DS is the registrar's part, see
docs/keys-and-certificates.md).

No TLSA is a warning, not a failure: the zone may be unsigned (the deploy publishes none then),
or the host still runs on its first, self-signed certificate (the TLSA follows on the deploy
after certbot's). A TLSA that does not match is a failure: senders enforcing DANE refuse mail.
"""

from __future__ import annotations

import hashlib

import dns.dnssec
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailhost.checks import WARNING, CheckResult, guarded, result
from mailhost.checks.smtp import addresses, open_smtp, unverified_context
from mailhost.keys import dane
from mailhost.lookup import CheckResolver
from mailhost.settings import Settings

SMTP_PORT = 25
TIMEOUT = 5.0
REDEPLOY = ("run the deploy (pyinfra INVENTORY deploy.py): it publishes the TLSA of the key "
            "certbot keeps (--reuse-key)")


def checks(settings: Settings, resolver: CheckResolver) -> list[CheckResult]:
    """The TLSA against port 25 on each address, and the TLSA's signature ([] with dane off)."""
    if settings.dane == "off":
        return []
    name = dane.tlsa_name(settings.mail_hostname)
    found = [match_check(settings, resolver, name, address) for address in addresses(settings)]
    found.append(signature_check(resolver, name))
    return found


def presented_tlsa(settings: Settings, address: str) -> str:
    """The ``3 1 1`` value of the certificate the host presents after STARTTLS on 25."""
    with open_smtp(settings, address, SMTP_PORT, unverified_context()) as client:
        der = client.sock.getpeercert(binary_form=True)
    spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"{dane.USAGE_SELECTOR_MATCHING} {hashlib.sha256(spki).hexdigest()}"


def match_check(settings: Settings, resolver: CheckResolver, name: str,
                address: str) -> CheckResult:
    check_name = f"dane: TLSA {name} matches port 25 on {address}"
    expected = "a TLSA 3 1 1 record matching the key of the certificate served on port 25"

    def check():
        published = [r.to_text() for r in resolver.values(name, "TLSA")]
        if not published:
            return CheckResult(check_name, WARNING, expected, "no TLSA published",
                               "DANE needs a DNSSEC-signed zone (and its DS at the registrar) "
                               "and certbot's certificate; then " + REDEPLOY, required=False)
        served = presented_tlsa(settings, address)
        return result(check_name, served in published, expected,
                      f"served {served}; published {' | '.join(published)}",
                      "senders enforcing DANE refuse mail to this host now: " + REDEPLOY)
    return guarded(check_name, expected, REDEPLOY, check)


def signed_answer(resolver: CheckResolver, name: dns.name.Name, rtype: int):
    """(RRset, its RRSIG set or None) from the authoritative server of ``name``."""
    server = resolver.for_name(name.to_text())
    query = dns.message.make_query(name, rtype, want_dnssec=True)
    answer = dns.query.tcp(query, server.nameservers[0], timeout=TIMEOUT, port=server.port)
    rrset = answer.get_rrset(answer.answer, name, dns.rdataclass.IN, rtype)
    signature = answer.get_rrset(answer.answer, name, dns.rdataclass.IN, dns.rdatatype.RRSIG,
                                 rtype)
    return rrset, signature


def signature_check(resolver: CheckResolver, name: str) -> CheckResult:
    check_name = f"dane: TLSA {name} signed (DNSSEC)"
    expected = "the TLSA's RRSIG validates with the zone's DNSKEY set, which signs itself"
    advice = ("sign the zone at your DNS provider (DNSSEC) and publish its DS at the "
              "registrar; without signatures no sender uses the TLSA")

    def check():
        owner = dns.name.from_text(name)
        tlsa, tlsa_sig = signed_answer(resolver, owner, dns.rdatatype.TLSA)
        if tlsa is None:
            return CheckResult(check_name, WARNING, expected, "no TLSA published", advice,
                               required=False)
        if tlsa_sig is None:
            return result(check_name, False, expected, "the TLSA has no RRSIG", advice)
        apex = tlsa_sig[0].signer
        keys, keys_sig = signed_answer(resolver, apex, dns.rdatatype.DNSKEY)
        if keys is None or keys_sig is None:
            return result(check_name, False, expected, f"{apex} serves no signed DNSKEY set",
                          advice)
        try:
            dns.dnssec.validate(keys, keys_sig, {apex: keys})
            dns.dnssec.validate(tlsa, tlsa_sig, {apex: keys})
        except dns.dnssec.ValidationFailure as error:
            return result(check_name, False, expected, f"does not validate: {error}", advice)
        return result(check_name, True, expected,
                      f"validates with {apex} DNSKEY (key tag "
                      f"{', '.join(str(s.key_tag) for s in tlsa_sig)})", advice)
    return guarded(check_name, expected, advice, check)
