"""The same DNS scenarios against both providers: a real Knot (RFC 2136) and the Cloudflare
emulator through the official SDK. dnscontrol's rule: apply, plan again, expect nothing."""

from __future__ import annotations

import pytest
from sample import sample_settings

from mailhost.desired import MailHost, desired_by_zone
from mailhost.dkim import DkimPublicKeys, generate_key, public_value
from mailhost.dnsplan import PlanError
from mailhost.dnssync import ZoneSync
from mailhost.providers import ProviderError

RSA = public_value(generate_key("rsa", 2048))
RSA2 = public_value(generate_key("rsa", 2048))


@pytest.fixture(params=["knot_world", "cloudflare_world"])
def world(request):
    return request.getfixturevalue(request.param)


def zone_sync(world, provider=None, force=False, rsa=RSA, **overrides) -> ZoneSync:
    settings = sample_settings(**overrides)
    (records,) = desired_by_zone([MailHost(settings, {"example.test": DkimPublicKeys(rsa)})])
    return ZoneSync(records, provider or world.provider(), force=force)


def converge(world, **overrides):
    sync = zone_sync(world, **overrides)
    sync.apply(sync.plan())
    return sync


def test_apply_then_plan_again_is_empty_with_no_write(world):
    first = zone_sync(world)
    plan = first.plan()
    assert {c.action for c in plan.changes} == {"create"}
    assert len(plan.changes) == 8  # A, AAAA, MX, SPF, CAA, DKIM, DMARC, TLS-RPT
    first.apply(plan)
    second = zone_sync(world)
    assert second.plan().empty
    assert second.provider.calls["write"] == 0
    names = {entry[:2] for entry in world.snapshot()}
    assert ("mail._domainkey.example.test", "TXT") in names
    assert ("example.test", "MX") in names


def test_a_changed_setting_is_one_modify(world):
    converge(world)
    sync = zone_sync(world, dmarc_policy="reject")
    plan = sync.plan()
    assert [(c.action, c.name) for c in plan.changes] == [("modify", "_dmarc.example.test")]
    assert "p=quarantine" in plan.changes[0].line() and "p=reject" in plan.changes[0].line()
    sync.apply(plan)
    assert zone_sync(world, dmarc_policy="reject").plan().empty


def test_foreign_records_stay_untouched(world):
    world.add_foreign("example.test", "TXT", "google-site-verification=abc123")
    world.add_foreign("example.test", "TXT", "v=spf1 -all")  # an old SPF of ours to replace
    world.add_foreign("www.example.test", "CNAME", "example.test")
    world.add_foreign("other.example.test", "TXT", "v=spf1 include:spf.elsewhere.example ~all")
    world.add_foreign("example.test", "A", "198.51.100.80")  # the website: not ours
    converge(world)
    snapshot = world.snapshot()
    values = {(e[0], e[1], e[3]) for e in snapshot}
    assert ("example.test", "TXT", "google-site-verification=abc123") in values
    assert ("www.example.test", "CNAME", "example.test") in values
    assert ("other.example.test", "TXT", "v=spf1 include:spf.elsewhere.example ~all") in values
    assert ("example.test", "A", "198.51.100.80") in values
    spf = [v for (n, t, v) in values
           if n == "example.test" and t == "TXT" and v.startswith("v=spf1")]
    assert spf == ["v=spf1 ip4:198.51.100.10 ip6:2001:db8::10 ~all"]
    assert zone_sync(world).plan().empty


def test_two_spf_records_are_an_error_not_an_overwrite(world):
    world.add_foreign("example.test", "TXT", "v=spf1 -all")
    world.add_foreign("example.test", "TXT", "v=spf1 include:other.example ~all")
    before = world.snapshot()
    with pytest.raises(PlanError, match="2 SPF records"):
        zone_sync(world).plan()
    assert world.snapshot() == before


def test_wrong_credentials_fail_clearly_and_change_nothing(world):
    before = world.snapshot()
    with pytest.raises(ProviderError) as raised:
        sync = zone_sync(world, provider=world.bad_provider())
        sync.apply(sync.plan())
    assert "\n" not in str(raised.value)
    assert world.snapshot() == before


def test_concurrent_change_between_plan_and_apply_is_detected(world):
    converge(world)
    sync = zone_sync(world, dmarc_policy="reject", caa_issuers=["pebble.example"])
    plan = sync.plan()
    assert not plan.empty
    world.add_foreign("_dmarc.example.test", "TXT", "v=DMARC1; p=none; rua=mailto:x@example.test")
    after_foreign = world.snapshot()
    with pytest.raises(ProviderError, match="(?i)concurrent|changed"):
        sync.apply(plan)
    assert world.snapshot() == after_foreign


def test_removed_ipv6_needs_force_then_deletes_our_aaaa_only(world):
    converge(world)
    world.add_foreign("www.example.test", "AAAA", "2001:db8::80")
    before = world.snapshot()
    with pytest.raises(PlanError, match="nothing was written") as refused:
        zone_sync(world, ipv6=None).plan()
    shown = refused.value.plan.format()
    assert "! CONFLICT AAAA  mail.example.test  2001:db8::10 exists but ipv6 is not set" in shown
    assert world.snapshot() == before
    sync = zone_sync(world, ipv6=None, force=True)
    plan = sync.plan()
    assert {(c.action, c.name, c.rtype) for c in plan.changes} >= {
        ("delete", "mail.example.test", "AAAA"),
        ("modify", "example.test", "TXT"),
    }
    sync.apply(plan)
    names = {e[:2] for e in world.snapshot()}
    assert ("mail.example.test", "AAAA") not in names
    assert ("www.example.test", "AAAA") in names
    assert zone_sync(world, ipv6=None).plan().empty


def test_a_plan_rewriting_most_of_a_zone_is_refused_unless_forced(world):
    converge(world)
    world.add_foreign("host.example.test", "A", "198.51.100.100")
    # 4 of the zone's 12 or 13 records (ours, the NS and its address, one foreign host)
    changed = dict(dmarc_policy="none", tlsrpt_rua=["mailto:tls2@example.test"],
                   spf_all="-all", rsa=RSA2)
    before = world.snapshot()
    with pytest.raises(PlanError, match="over 30%"):
        zone_sync(world, **changed).plan()
    assert world.snapshot() == before
    forced = zone_sync(world, force=True, **changed)
    forced.apply(forced.plan())
    assert zone_sync(world, **changed).plan().empty
