"""DANE: the TLSA value of a key, and the record planned only in a DNSSEC-signed zone (a real
Knot signing it, lab.knot), pending on a first deploy, owned only with dane = auto."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import dns.message
import dns.query
import dns.rdata
import dns.rdatatype
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sample import sample_settings

from lab.knot import KnotServer, minimal_zone
from mailhost import lookup
from mailhost.keys import dane
from mailhost.paths import NEXT_KEY
from mailhost.zones.providers.lexicon import LexiconProvider
from mailhost.zones.providers.rfc2136 import Rfc2136Provider
from mailhost.zones.sync import ZoneSync, records_by_zone, tlsa_records

ZONE = "example.test"
TLSA_NAME = "_25._tcp.mail.example.test"


def key_pair():
    """(PEM private key, base64 DER SubjectPublicKeyInfo) of a new P-256 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, base64.b64encode(spki).decode()


def test_tlsa_value_is_openssls_sha256_of_the_public_key(tmp_path):
    pem, spki = key_pair()
    (tmp_path / "key.pem").write_bytes(pem)
    digest = subprocess.run(
        f"openssl pkey -in {tmp_path / 'key.pem'} -pubout -outform DER | sha256sum",
        shell=True, capture_output=True, text=True, check=True).stdout.split()[0]
    assert dane.tlsa_of_public_key(spki) == f"3 1 1 {digest}"
    assert dane.tlsa_of_public_key(None) is None
    assert dane.tlsa_name("mail.example.test") == TLSA_NAME


@pytest.fixture
def signed_knot(knot_binary, tmp_path):
    with KnotServer({ZONE: minimal_zone(ZONE)}, workdir=tmp_path / "knot",
                    signed_zones=[ZONE]) as knot:
        yield knot


def provider_of(knot) -> Rfc2136Provider:
    key = knot.key
    return Rfc2136Provider(knot.address, knot.port, key.name, key.secret, key.algorithm)


def reader(spki, upcoming=None):
    """A host whose DKIM key is ``spki``, its certificate key ``certificate[0]`` (None: no
    certificate), a rollover's next key ``upcoming`` (None: no rollover)."""
    def read(host, path):
        if "letsencrypt" in path:
            return certificate[0]
        return upcoming if path == NEXT_KEY else spki
    return read


certificate = [None]


def sync_of(provider, settings, spki) -> ZoneSync:
    certificate[0] = spki
    (records,) = records_by_zone({"mail": settings}, reader(key_pair()[1]))
    return ZoneSync(records, provider, memory=Path(settings.secrets_dir) / "dns")


def plan_of(provider, settings, spki):
    return sync_of(provider, settings, spki).plan()


def tlsa_lines(plan):
    return [line for line in plan.lines() if "TLSA" in line]


def test_tlsa_planned_in_a_signed_zone_written_signed_and_then_no_change(signed_knot, tmp_path):
    settings = sample_settings(secrets_dir=str(tmp_path))
    provider = provider_of(signed_knot)
    assert provider.dnssec_signed(ZONE)
    _, spki = key_pair()
    sync = sync_of(provider, settings, spki)
    plan = sync.plan()
    value = dane.tlsa_of_public_key(spki)
    assert [line.split()[:3] for line in tlsa_lines(plan)] == [["+", "CREATE", "TLSA"]]
    assert value.split()[-1] in tlsa_lines(plan)[0]
    sync.apply(plan)
    query = dns.message.make_query(TLSA_NAME, dns.rdatatype.TLSA, want_dnssec=True)
    answer = dns.query.tcp(query, signed_knot.address, port=signed_knot.port, timeout=5)
    types = {rrset.rdtype for rrset in answer.answer}
    assert types == {dns.rdatatype.TLSA, dns.rdatatype.RRSIG}  # Knot signed the update
    assert tlsa_lines(plan_of(provider, settings, spki)) == []


def test_no_tlsa_in_an_unsigned_zone_and_the_plan_says_why(knot_world, tmp_path):
    settings = sample_settings(secrets_dir=str(tmp_path))
    provider = knot_world.provider()
    assert not provider.dnssec_signed(ZONE)
    plan = plan_of(provider, settings, key_pair()[1])
    assert [line for line in plan.lines() if "CREATE  TLSA" in line] == []
    assert any("no TLSA for _25._tcp.mail.example.test: zone example.test is not "
               "DNSSEC-signed" in line for line in plan.lines())


def test_dane_off_owns_no_tlsa_and_a_missing_key_is_pending_only_after_certbot(tmp_path):
    settings = sample_settings(secrets_dir=str(tmp_path))
    certificate[0] = None  # a first deploy: certbot's key does not exist yet
    (records,) = records_by_zone({"mail": settings}, reader(key_pair()[1]))
    assert (TLSA_NAME, "TLSA") not in records.ownership.keys  # left to the TLSA operation
    assert [r for r in records.desired if r.rtype == "TLSA"] == []
    pending = tlsa_records({"mail": settings}, reader(None), ZONE, pending=True)
    assert [r.values for r in pending.desired] == [(dane.TLSA_PENDING,)]
    assert pending.ownership.keys == {(TLSA_NAME, "TLSA")}
    assert tlsa_records({"mail": settings}, reader(None), ZONE).desired == []
    certificate[0] = key_pair()[1]
    (records,) = records_by_zone({"mail": settings}, reader(key_pair()[1]))
    assert (TLSA_NAME, "TLSA") in records.ownership.keys
    off = sample_settings(secrets_dir=str(tmp_path), dane="off")
    (records,) = records_by_zone({"mail": off}, reader(key_pair()[1]))
    assert (TLSA_NAME, "TLSA") not in records.ownership.keys
    assert tlsa_records({"mail": off}, reader(None), ZONE, pending=True) is None


def check_resolver(address: str, port: int):
    from mailhost.lookup import CheckResolver, make_resolver
    server = make_resolver([address], port)
    return CheckResolver(server, {ZONE: server})


def test_the_signature_check_validates_a_signed_tlsa_and_fails_an_unsigned_one(
        signed_knot, knot_world, tmp_path):
    from mailhost.checks import FAILED, OK, WARNING
    from mailhost.checks.dane import signature_check

    settings = sample_settings(secrets_dir=str(tmp_path))
    for knot in (signed_knot, knot_world.server):
        resolver = check_resolver(knot.address, knot.port)
        assert signature_check(resolver, TLSA_NAME).status == WARNING  # no TLSA yet
        assert not signature_check(resolver, TLSA_NAME).required
    sync = sync_of(provider_of(signed_knot), settings, key_pair()[1])
    sync.apply(sync.plan())
    signed = signature_check(check_resolver(signed_knot.address, signed_knot.port), TLSA_NAME)
    assert signed.status == OK and "validates with example.test. DNSKEY" in signed.found
    knot_world.add_foreign(TLSA_NAME, "TLSA", dane.tlsa_of_public_key(key_pair()[1]))
    bare = signature_check(check_resolver(knot_world.server.address, knot_world.server.port),
                           TLSA_NAME)
    assert (bare.status, bare.found) == (FAILED, "the TLSA has no RRSIG")


def test_through_lexicon_tlsa_follows_what_the_zone_servers_sign(powerdns_world, tmp_path):
    """lexicon cannot say whether a zone is signed: the zone's name servers are asked (here
    PowerDNS's own DNS port, as lookup.zone_signed asks the zone's NS); unsigned: no TLSA and
    the plan says why; signed by PowerDNS (a key made through its API): the TLSA is written through
    lexicon, served signed, and the next plan is empty."""
    server = powerdns_world.server

    def signed(zone):
        return lookup.signs_itself(server.address, server.port, zone)

    provider = LexiconProvider("powerdns", {"pdns_server": server.api_url},
                               {"auth_token": server.api_key}, signed=signed)
    settings = sample_settings(secrets_dir=str(tmp_path))
    _, spki = key_pair()
    plan = plan_of(provider, settings, spki)
    assert tlsa_lines(plan) == [f"  ! NOTICE   no TLSA for {TLSA_NAME}: zone example.test is "
                                "not DNSSEC-signed (lexicon powerdns); its name servers serve no "
                                "DNSKEY set that signs itself: sign the zone at powerdns (DNSSEC) "
                                "and publish its DS at the registrar"]
    server.api("POST", f"/servers/localhost/zones/{ZONE}./cryptokeys",
               {"keytype": "csk", "active": True, "algorithm": "ecdsa256"})
    server.api("PUT", f"/servers/localhost/cache/flush?domain={ZONE}.")  # the unsigned answers
    assert provider.dnssec_signed(ZONE)
    sync = sync_of(provider, settings, spki)
    plan = sync.plan()
    assert [line.split()[:4] for line in tlsa_lines(plan)] == [
        ["+", "CREATE", "TLSA", TLSA_NAME]]
    sync.apply(plan)
    query = dns.message.make_query(TLSA_NAME, dns.rdatatype.TLSA, want_dnssec=True)
    answer = dns.query.tcp(query, server.address, port=server.port, timeout=5)
    assert {rrset.rdtype for rrset in answer.answer} == {dns.rdatatype.TLSA,
                                                           dns.rdatatype.RRSIG}
    assert [rdata.to_text() for rrset in answer.answer if rrset.rdtype == dns.rdatatype.TLSA
            for rdata in rrset] == [dane.tlsa_of_public_key(spki)]
    assert tlsa_lines(plan_of(provider, settings, spki)) == []


def test_a_zone_whose_name_servers_cannot_be_asked_is_not_signed(tmp_path):
    settings = sample_settings(secrets_dir=str(tmp_path), check_nameservers=["127.0.0.9"])
    assert lookup.zone_signed(settings, ZONE) is False


def test_the_tlsa_operation_waits_until_every_name_server_serves_what_it_wrote():
    """deploy.py's DANE operation waits (operations.dns.wait_served) for the zone's name
    servers, which may follow the provider a moment later (PowerDNS's secondary), so that the
    checks after it see the TLSA; then it goes on with one line naming what is still missing."""
    from mailhost.dns.records import RecordSet
    from mailhost.operations.dns import wait_served
    from mailhost.zones.plan import Change, ZonePlan

    value = "3 1 1 " + "ab" * 32
    new = RecordSet(TLSA_NAME, "TLSA", 300, (value,))
    plan = ZonePlan(ZONE, [Change("create", TLSA_NAME, "TLSA", None, new, None)])
    answers = iter([[], [], [dns.rdata.from_text("IN", "TLSA", value.upper())]])
    asked, slept = [], []

    def served(name, rtype, matches):
        asked.append((name, rtype))
        return any(matches(rdata) for rdata in next(answers))

    assert wait_served(plan, served, sleep=slept.append) == []
    assert asked == [(TLSA_NAME, "TLSA")] * 3 and slept == [0.5, 0.5]
    assert wait_served(plan, lambda *_: False, within=0, sleep=slept.append) == [
        f"TLSA {TLSA_NAME}"]
