"""Rfc2136Provider against a real Knot: plan, apply, plan again; foreign records stay."""

from __future__ import annotations

import base64
import secrets
import socket

import pytest
from concurrency import assert_refused_after_foreign_write
from secrecy import leaked

from lab.knot import KnotServer, filler_records, minimal_zone
from mailhost.dns.records import RecordSet
from mailhost.zones.plan import CREATE, DELETE, MODIFY, Ownership, compute_plan
from mailhost.zones.providers.base import ProviderError
from mailhost.zones.providers.rfc2136 import AXFR_ABOVE_KEYS, Rfc2136Provider

pytest_plugins = ["knot_world"]

ZONE = "example.test"
SPF = "v=spf1 mx -all"
# A 2048-bit RSA public key is 294 bytes of DER: 392 base64 characters, over 255 bytes.
DKIM = "v=DKIM1; k=rsa; p=" + base64.b64encode(secrets.token_bytes(294)).decode()
VERIFICATION = "google-site-verification=k3y-0f-s0me0ne-else"


def desired(spf: str = SPF, dmarc: str = "v=DMARC1; p=reject") -> list[RecordSet]:
    return [
        RecordSet(ZONE, "MX", 300, ("10 mail.example.test",)),
        RecordSet(f"mail.{ZONE}", "A", 300, ("198.51.100.10",)),
        RecordSet(ZONE, "TXT", 300, (spf,)),
        RecordSet(f"_dmarc.{ZONE}", "TXT", 300, (dmarc,)),
        RecordSet(f"mail._domainkey.{ZONE}", "TXT", 300, (DKIM,)),
    ]


OWNERSHIP = Ownership(frozenset(rr.key for rr in desired()), shared_txt=frozenset({ZONE}))


def plan_for(provider, records=None):
    found = provider.read(ZONE, OWNERSHIP.keys)
    return compute_plan(ZONE, records or desired(), found, OWNERSHIP)


def converge(world, records=None):
    provider = world.provider()
    provider.apply(plan_for(provider, records))


def test_apply_then_plan_again_is_empty(knot_world):
    provider = knot_world.provider()
    plan = plan_for(provider)
    assert plan.counts() == {CREATE: 5, MODIFY: 0, DELETE: 0}
    provider.apply(plan)
    assert provider.calls["write"] == 1

    again = knot_world.provider()
    second = plan_for(again)
    assert second.empty, second.format()
    again.apply(second)
    assert again.calls["write"] == 0
    assert again.calls["read"] == len(OWNERSHIP.keys) + 1  # + one existence check
    assert {
        (ZONE, "MX", 300, "10 mail.example.test"),
        (f"mail.{ZONE}", "A", 300, "198.51.100.10"),
        (ZONE, "TXT", 300, SPF),
    } <= knot_world.snapshot()


def test_spf_update_keeps_site_verification_txt(knot_world):
    knot_world.add_foreign(ZONE, "TXT", VERIFICATION)
    converge(knot_world)
    provider = knot_world.provider()
    plan = plan_for(provider, desired(spf="v=spf1 mx a -all"))
    assert [(c.action, c.name, c.rtype) for c in plan.changes] == [(MODIFY, ZONE, "TXT")]
    provider.apply(plan)
    apex_txt = {
        value for name, rtype, _, value in knot_world.snapshot() if (name, rtype) == (ZONE, "TXT")
    }
    assert apex_txt == {VERIFICATION, "v=spf1 mx a -all"}


def test_unmanaged_records_stay_untouched(knot_world):
    knot_world.add_foreign(f"www.{ZONE}", "CNAME", "shop.example.net")
    knot_world.add_foreign(f"lists.{ZONE}", "TXT", "v=spf1 include:lists.example.net -all")
    before = knot_world.snapshot()
    converge(knot_world)
    converge(knot_world, desired(spf="v=spf1 a -all", dmarc="v=DMARC1; p=none"))
    after = knot_world.snapshot()
    assert before <= after
    assert {name for name, *_ in after - before} == {
        ZONE,
        f"mail.{ZONE}",
        f"_dmarc.{ZONE}",
        f"mail._domainkey.{ZONE}",
    }


def test_our_record_removed_by_hand_is_planned_again(knot_world):
    converge(knot_world)
    knot_world.remove_foreign(ZONE, "MX", "10 mail.example.test.")
    plan = plan_for(knot_world.provider())
    assert [(c.action, c.name, c.rtype) for c in plan.changes] == [(CREATE, ZONE, "MX")]
    with pytest.raises(KeyError):
        knot_world.remove_foreign(ZONE, "MX", "10 mail.example.test")


def test_wrong_tsig_key_fails_clearly_and_changes_nothing(knot_world):
    before = knot_world.zone_bytes()
    bad = knot_world.bad_provider()
    with pytest.raises(ProviderError, match="mailhost-test.*BADSIG") as read_error:
        bad.read(ZONE, OWNERSHIP.keys)
    plan = plan_for(knot_world.provider())
    with pytest.raises(ProviderError, match="mailhost-test.*BADSIG") as apply_error:
        bad.apply(plan)
    assert knot_world.zone_bytes() == before
    for error in (read_error, apply_error):
        assert leaked({"TSIG secret": knot_world.server.key.secret}, str(error.value)) == []


def test_unknown_key_name_is_named(knot_world):
    key = knot_world.server.key
    provider = Rfc2136Provider(
        knot_world.server.address, knot_world.server.port, "nobody-knows", key.secret, timeout=5
    )
    with pytest.raises(ProviderError, match="'nobody-knows' \\(BADKEY\\)"):
        provider.read(ZONE, OWNERSHIP.keys)


def test_record_created_concurrently_is_detected(knot_world):
    provider = knot_world.provider()
    plan = plan_for(provider)
    assert_refused_after_foreign_write(
        knot_world, lambda: knot_world.add_foreign(ZONE, "MX", "20 backup.example.net"),
        lambda: provider.apply(plan), match="concurrent change", snapshot=knot_world.zone_bytes)


def test_record_changed_concurrently_is_detected_then_run_again_works(knot_world):
    converge(knot_world)
    provider = knot_world.provider()
    plan = plan_for(provider, desired(spf="v=spf1 a -all"))
    assert_refused_after_foreign_write(
        knot_world, lambda: knot_world.add_foreign(ZONE, "TXT", VERIFICATION),
        lambda: provider.apply(plan), match="changed since the plan was read",
        snapshot=knot_world.zone_bytes)

    converge(knot_world, desired(spf="v=spf1 a -all"))
    assert {(ZONE, "TXT", 300, VERIFICATION), (ZONE, "TXT", 300, "v=spf1 a -all")} <= (
        knot_world.snapshot()
    )


def test_long_dkim_txt_round_trips_in_255_byte_strings(knot_world):
    converge(knot_world)
    assert (f"mail._domainkey.{ZONE}", "TXT", 300, DKIM) in knot_world.snapshot()
    answer = knot_world.server.knotc("zone-read", ZONE, "mail._domainkey", "TXT")
    assert answer.count('"') == 4, answer  # two character-strings: 255 bytes + the rest
    assert plan_for(knot_world.provider()).empty


def test_txt_split_by_another_tool_is_replaced(knot_world):
    server = knot_world.server
    server.knotc("zone-begin", ZONE)
    server.knotc("zone-set", ZONE, "_dmarc", "300", "TXT", '"v=DMARC1;" " p=none"')
    server.knotc("zone-commit", ZONE)
    provider = knot_world.provider()
    plan = plan_for(provider)
    dmarc = next(c for c in plan.changes if c.name == f"_dmarc.{ZONE}")
    assert dmarc.old.values == ("v=DMARC1; p=none",)
    provider.apply(plan)
    dmarc_now = {v for n, t, _, v in knot_world.snapshot() if n == f"_dmarc.{ZONE}"}
    assert dmarc_now == {"v=DMARC1; p=reject"}


def test_count_records(knot_world):
    provider = knot_world.provider()
    assert provider.count_records(ZONE) == 3  # SOA, NS, ns1 A
    converge(knot_world)
    assert provider.count_records(ZONE) == 8
    assert provider.calls["read"] == 2


def test_many_owned_keys_are_read_with_one_transfer(knot_binary):
    zone = "big.test"
    with KnotServer({zone: minimal_zone(zone) + filler_records(zone, 1000)}) as server:
        key = server.key
        provider = Rfc2136Provider(server.address, server.port, key.name, key.secret, timeout=5)
        assert provider.count_records(zone) == 1003
        owned = [(f"filler-{i:05d}.{zone}", "A") for i in range(AXFR_ABOVE_KEYS + 10)]
        found = provider.read(zone, owned + [(f"absent.{zone}", "TXT")])
    assert provider.calls["read"] == 2
    assert len(found) == AXFR_ABOVE_KEYS + 10
    assert RecordSet(f"filler-00001.{zone}", "A", 300, ("10.0.0.1",)) in found


def test_check_zone(knot_world):
    provider = knot_world.provider()
    provider.check_zone(ZONE)
    with pytest.raises(ProviderError, match="does not serve zone other.test"):
        provider.check_zone("other.test")
    with pytest.raises(
        ProviderError,
        match="not authoritative for zone mail.example.test: it is inside zone example.test",
    ):
        provider.check_zone(f"mail.{ZONE}")


def test_server_down_is_a_clear_error(knot_world):
    provider = knot_world.provider()
    knot_world.server.stop()
    with pytest.raises(ProviderError, match="refused the TCP connection"):
        provider.read(ZONE, OWNERSHIP.keys)


def test_silent_server_times_out_clearly():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        provider = Rfc2136Provider(
            "127.0.0.1", port, "k", base64.b64encode(b"k" * 32).decode(), timeout=0.3
        )
        with pytest.raises(ProviderError, match="did not answer within 0.3s"):
            provider.read(ZONE, OWNERSHIP.keys)


def test_an_update_of_a_zone_the_server_does_not_serve_is_one_line(knot_world):
    from mailhost.zones.plan import Change, ZonePlan

    provider = knot_world.provider()
    record = RecordSet("mail.other.test", "A", 300, ("198.51.100.10",))
    plan = ZonePlan("other.test", [Change(CREATE, record.name, "A", None, record)])
    with pytest.raises(ProviderError) as raised:
        provider.apply(plan)
    assert "\n" not in str(raised.value)
    assert "does not serve zone other.test" in str(raised.value)  # Knot: NOTAUTH, unsigned
