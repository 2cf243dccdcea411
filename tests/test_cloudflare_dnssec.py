"""DANE with Cloudflare: the zone's DNSSEC status read through the unmodified SDK from the
emulator decides the TLSA ("active" only), the plan's notice says what to do otherwise, a token
refused the status leaves the zone unsigned; the lab's emulator reports what Knot serves."""

from __future__ import annotations

import base64
import json
import urllib.request

import dns.message
import dns.query
import dns.rdatatype
import dns.tsigkeyring
import dns.update
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sample import sample_settings
from secrecy import leaked

from lab.cloudflare.lab_server import dnssec_as_served, records_from_dns
from lab.knot import KnotServer, minimal_zone, zone_ds
from mailhost.keys import dane
from mailhost.paths import NEXT_KEY
from mailhost.zones.providers.base import ProviderError
from mailhost.zones.providers.cloudflare import CloudflareProvider
from mailhost.zones.sync import ZoneSync, records_by_zone

ZONE = "example.test"
TLSA_NAME = "_25._tcp.mail.example.test"
NOT_SIGNED = f"no TLSA for {TLSA_NAME}: zone {ZONE} is not DNSSEC-signed (cloudflare); "
DS = "2371 13 2 1F987CC6583E92DF0890718C425D7D3A2F8E4F1C2B3A49586776A5B4C3D2E1F0"


def public_key() -> str:
    """Base64 DER SubjectPublicKeyInfo of a new P-256 key (a certificate's key)."""
    spki = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(spki).decode()


def zone_sync(provider, tmp_path, certificate_key: str) -> ZoneSync:
    """example.test's records for one host whose certificate key is ``certificate_key``."""
    settings = sample_settings(secrets_dir=str(tmp_path))
    dkim_key = public_key()
    (records,) = records_by_zone(
        {"mail": settings},
        lambda host, path: certificate_key if "letsencrypt" in path else
        None if path == NEXT_KEY else dkim_key)  # no TLS key rollover under way
    return ZoneSync(records, provider, memory=tmp_path / "dns")


def tlsa_changes(plan) -> list[str]:
    return [words[1] for words in map(str.split, plan.lines())
            if len(words) > 2 and words[2] == "TLSA"]


def notices(plan) -> list[str]:
    return [line.split("! NOTICE", 1)[1].strip() for line in plan.lines() if "! NOTICE" in line]


def test_active_plans_the_tlsa_writes_it_through_data_and_then_no_change(
        cloudflare_world, tmp_path):
    world = cloudflare_world
    world.emulator.set_dnssec(ZONE, "active", DS)
    key = public_key()
    sync = zone_sync(world.provider(), tmp_path, key)
    plan = sync.plan()
    assert tlsa_changes(plan) == ["CREATE"]
    assert notices(plan) == []
    sync.apply(plan)  # read back by ZoneSync.verify
    (record,) = [r for r in world.emulator.records(ZONE) if r["type"] == "TLSA"]
    value = dane.tlsa_of_public_key(key)
    assert record["name"] == TLSA_NAME and record["content"] == value
    assert record["data"] == {"usage": 3, "selector": 1, "matching_type": 1,
                              "certificate": value.split()[-1]}
    assert tlsa_changes(zone_sync(world.provider(), tmp_path, key).plan()) == []


@pytest.mark.parametrize("status, advice", [
    ("pending", 'Cloudflare\'s DNSSEC status is "pending": add the DS record Cloudflare shows '
                '(DNS > Settings > DNSSEC) at your registrar and wait for the status "active"'),
    ("disabled", 'Cloudflare\'s DNSSEC status is "disabled": turn DNSSEC on in Cloudflare '
                 "(DNS > Settings > DNSSEC), add the DS record it shows at your registrar, and "
                 'wait for the status "active"'),
    ("error", 'Cloudflare\'s DNSSEC status is "error": DANE needs the status "active": DNSSEC '
              "on in Cloudflare and its DS record at your registrar"),
])
def test_a_zone_not_active_gets_no_tlsa_and_the_notice_says_what_to_do(
        cloudflare_world, tmp_path, status, advice):
    world = cloudflare_world
    if status != "disabled":  # a new zone's status: nothing set
        world.emulator.set_dnssec(ZONE, status, DS)
    plan = zone_sync(world.provider(), tmp_path, public_key()).plan()
    assert tlsa_changes(plan) == []
    assert notices(plan) == [NOT_SIGNED + advice]
    assert not plan.empty  # the zone's other records are planned as usual


def test_a_token_refused_the_status_leaves_the_zone_unsigned_naming_the_permission(
        cloudflare_world, tmp_path):
    world = cloudflare_world
    world.emulator.set_dnssec(ZONE, "active", DS)  # signed, but this token may not see it
    token = "lab-no-dnssec-" + "7f3a" * 8
    world.emulator.add_token(token, [ZONE], dnssec_read=False)
    provider = CloudflareProvider(token, base_url=world.base_url)
    sync = zone_sync(provider, tmp_path, public_key())
    plan = sync.plan()
    assert tlsa_changes(plan) == []
    assert notices(plan) == [
        NOT_SIGNED + "the API token may not read its DNSSEC status (HTTP 403, code 9109: "
        'Unauthorized to access requested resource): give the token "DNS Read" '
        "(Zone > DNS > Read) on the zone; it counts as unsigned until then"]
    sync.apply(plan)  # the deploy goes on: the other records are written
    assert {r["type"] for r in world.emulator.records(ZONE)} >= {"A", "AAAA", "MX", "TXT"}
    assert leaked({"token": token}, plan.format()) == []


def test_a_failing_status_call_fails_the_plan_in_one_line(cloudflare_world, tmp_path):
    world = cloudflare_world
    world.emulator.add_fault(path="/dnssec$", status=500, count=3)  # the SDK retries twice
    sync = zone_sync(world.provider(max_retries=2), tmp_path, public_key())
    with pytest.raises(ProviderError) as raised:
        sync.plan()
    assert str(raised.value) == (
        f"Cloudflare API error while reading the DNSSEC status of zone {ZONE} (HTTP 500, "
        "code 10001: Internal server error (injected))")


def test_the_status_has_the_apis_shape_and_is_set_over_the_admin_route(cloudflare_world):
    world = cloudflare_world
    provider = world.provider()
    zone_id = provider._zone_id(ZONE)
    new = provider.client.dns.dnssec.get(zone_id=zone_id)
    assert (new.status, new.ds, new.key_tag) == ("disabled", None, None)
    request = urllib.request.Request(
        world.emulator.url + "/__emulator/dnssec", method="POST",
        data=json.dumps({"zone": ZONE, "status": "active", "ds": DS}).encode())
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.load(response)["status"] == "active"
    got = provider.client.dns.dnssec.get(zone_id=zone_id)  # parsed by the SDK's model
    assert (got.status, got.key_tag, got.algorithm, got.digest_type, got.key_type) == (
        "active", 2371, "13", "2", "ECDSAP256SHA256")
    assert got.ds == f"{ZONE}. 3600 IN DS {DS}" and got.modified_on is not None
    assert provider.dnssec_signed(ZONE)
    with pytest.raises(ValueError, match="DNSSEC status 'signed': expected one of active"):
        world.emulator.set_dnssec(ZONE, "signed")


# ----- the lab's emulator: the status of the zone as Knot serves it -----

@pytest.fixture
def knot(knot_binary, tmp_path):
    """Knot serving a parent zone ``test`` and example.test signed, example.net unsigned."""
    zones = {name: minimal_zone(name) for name in ("test", ZONE, "example.net")}
    with KnotServer(zones, workdir=tmp_path / "knot", signed_zones=[ZONE]) as server:
        yield server


def test_the_lab_status_is_what_knot_serves(knot):
    assert dnssec_as_served("example.net", knot.address, knot.port, timeout=1) == (
        "disabled", None)
    (key_ds,) = zone_ds(knot.address, ZONE, knot.port)
    # signed, no DS at the parent: what the lab is (its resolvers get the DS as trust anchor)
    assert dnssec_as_served(ZONE, knot.address, knot.port) == ("pending", key_ds)
    keyring = dns.tsigkeyring.from_text({knot.key.name: knot.key.secret})
    update = dns.update.Update("test.", keyring=keyring, keyalgorithm=knot.key.algorithm)
    update.add(ZONE + ".", 300, "DS", key_ds)
    assert dns.query.tcp(update, knot.address, port=knot.port, timeout=5).rcode() == 0
    assert dnssec_as_served(ZONE, knot.address, knot.port) == ("active", key_ds)


def test_a_tlsa_seeded_from_dns_is_written_through_data(knot, cloudflare_world):
    keyring = dns.tsigkeyring.from_text({knot.key.name: knot.key.secret})
    value = dane.tlsa_of_public_key(public_key())
    update = dns.update.Update(ZONE + ".", keyring=keyring, keyalgorithm=knot.key.algorithm)
    update.add(TLSA_NAME + ".", 300, "TLSA", value)
    assert dns.query.tcp(update, knot.address, port=knot.port, timeout=5).rcode() == 0
    bodies = [b for b in records_from_dns(ZONE, knot.address, knot.port, keyring)
              if b["type"] == "TLSA"]
    assert bodies == [{"name": TLSA_NAME, "type": "TLSA", "ttl": 300, "data": {
        "usage": 3, "selector": 1, "matching_type": 1, "certificate": value.split()[-1]}}]
    cloudflare_world.emulator.add_records(ZONE, bodies)
    found = cloudflare_world.provider().read(ZONE, [(TLSA_NAME, "TLSA")])
    assert [r.values for r in found] == [(value,)]
