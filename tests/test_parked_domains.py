"""Parked domains (null MX, SPF -all, DMARC reject, an empty DKIM key), the consent of report
domains in other organizations (RFC 7489 7.1), and the notice for a domain that left the
settings: unit tests, and the parked records on a real Knot and the Cloudflare emulator."""

from __future__ import annotations

import pytest
from sample import sample_settings

from mailhost.keys.dkim import DkimPublicKeys, generate_key, local_key_path, public_value
from mailhost.settings import SettingsError
from mailhost.zones.desired import (
    MailHost,
    desired_by_zone,
    needs_report_consent,
    organizational_domain,
    report_consents,
)
from mailhost.zones.sync import ZoneSync, records_by_zone

PRIVATE = generate_key("rsa", 2048)
RSA = public_value(PRIVATE)
PARKED = "shop.example.test"  # the worlds serve one zone: a parked name inside it


@pytest.fixture(params=["knot_world", "cloudflare_world"])
def world(request):
    return request.getfixturevalue(request.param)


def records_of(settings):
    keys = {d: DkimPublicKeys(RSA) for d in settings.mail_domains}
    return {z.zone: z for z in desired_by_zone([MailHost(settings, keys)])}


def values(zone_records_, name, rtype):
    found = [r for r in zone_records_.desired if r.key == (name, rtype)]
    return found[0].values if found else None


def test_a_parked_domain_publishes_that_it_takes_and_sends_no_mail():
    settings = sample_settings(parked_domains=[PARKED])
    (zone,) = records_of(settings).values()
    assert values(zone, PARKED, "MX") == ("0 .",)
    assert values(zone, PARKED, "TXT") == ("v=spf1 -all",)
    assert values(zone, f"_dmarc.{PARKED}", "TXT") == (
        "v=DMARC1; p=reject; sp=reject; adkim=s; aspf=s; rua=mailto:dmarc@example.test",)
    assert values(zone, f"*._domainkey.{PARKED}", "TXT") == ("v=DKIM1; p=",)
    # what it had as a mail domain is owned, so found records of ours are deleted
    assert (f"mail._domainkey.{PARKED}", "TXT") in zone.ownership.keys
    assert (f"_smtp._tls.{PARKED}", "TXT") in zone.ownership.keys
    assert PARKED in zone.ownership.shared_txt  # other TXT at its apex stay


@pytest.mark.parametrize("value, expected", [
    (["example.test"], "parked_domains = 'example.test': expected a domain that is not in "
                       "mail_domains"),
    (["shop.example.org"], "parked_domains = 'shop.example.org': expected a name inside a zone"),
    ([PARKED, PARKED], "parked_domains = ['shop.example.test', 'shop.example.test']: expected "
                       "each domain once"),
    (["shop.example.test\nmx"], "parked_domains[0] = 'shop.example.test\\nmx'"),
])
def test_bad_parked_domains_are_refused_with_one_line(value, expected):
    with pytest.raises(SettingsError) as refused:
        sample_settings(parked_domains=value)
    assert str(refused.value).startswith(f"settings: {expected}")
    assert "\n" not in str(refused.value)


def test_a_typo_of_parked_domains_is_refused():
    with pytest.raises(SettingsError, match="did you mean parked_domains"):
        sample_settings(parked_domain=[PARKED])


def test_report_addresses_in_another_organization_need_its_consent():
    settings = sample_settings(
        dns_zones=["example.test", "example.net"], mail_domains=["example.test"],
        dmarc_rua=["mailto:dmarc@example.test", "mailto:dmarc@reports.example.net!10m"],
        dmarc_ruf=["mailto:forensic@example.net"])
    assert report_consents(settings, settings.mail_domains) == [
        ("example.test", "reports.example.net"), ("example.test", "example.net")]
    zones = records_of(settings)
    assert values(zones["example.net"], "example.test._report._dmarc.reports.example.net",
                  "TXT") == ("v=DMARC1",)
    assert values(zones["example.net"], "example.test._report._dmarc.example.net",
                  "TXT") == ("v=DMARC1",)


def test_no_consent_record_inside_one_organization_or_outside_our_zones():
    same = sample_settings(dmarc_rua=["mailto:dmarc@reports.example.test"])
    assert report_consents(same, same.mail_domains) == []
    outside = sample_settings(dmarc_rua=["mailto:dmarc@reports.example.org"])
    assert report_consents(outside, outside.mail_domains) == [
        ("example.test", "reports.example.org")]
    (zone,) = records_of(outside).values()  # not ours to publish: the checks report it
    assert not [r for r in zone.desired if "_report._dmarc" in r.name]


def test_the_organizational_domain_follows_the_public_suffix_list():
    """Two names under one multi-label public suffix are two organizations (RFC 7489 3.2)."""
    assert organizational_domain("Mail.Example.CO.UK.") == "example.co.uk"
    assert not needs_report_consent("example.co.uk", "reports.example.co.uk")
    assert needs_report_consent("example.co.uk", "other.co.uk")
    assert needs_report_consent("a.github.io", "b.github.io")  # a private-section suffix


def test_a_domain_that_left_the_settings_is_a_notice_in_the_plan(tmp_path):
    settings = sample_settings(secrets_dir=str(tmp_path), dns_zones=["example.test"],
                               mail_domains=["example.test"])
    for domain in ("example.test", "old.example.test", PARKED):
        path = local_key_path(settings, domain, "rsa")
        path.parent.mkdir(parents=True)
        path.write_bytes(PRIVATE)
    settings = sample_settings(secrets_dir=str(tmp_path), parked_domains=[PARKED])
    (zone,) = records_by_zone({"mail": settings}, lambda host, path: RSA)
    assert zone.notices == (
        f"old.example.test left mail_domains (its DKIM key is still in {tmp_path}/dkim/"
        "old.example.test): its MX, SPF, DKIM and DMARC records are left as they are and still "
        "send its mail to mail.example.test; add it to parked_domains to publish that it takes "
        "no mail, or delete those records and the key directory by hand",)


def test_notices_are_shown_with_an_empty_plan_too(knot_world, tmp_path):
    settings = sample_settings(secrets_dir=str(tmp_path))
    path = local_key_path(settings, "old.example.test", "rsa")
    path.parent.mkdir(parents=True)
    path.write_bytes(PRIVATE)
    (zone,) = records_by_zone({"mail": settings}, lambda host, path: RSA)
    sync = ZoneSync(zone, knot_world.provider())
    sync.apply(sync.plan())
    lines = ZoneSync(zone, knot_world.provider()).plan().lines()
    assert lines[0] == "= example.test: no DNS changes"
    assert lines[1].startswith("  ! NOTICE   old.example.test left mail_domains")


def test_parking_a_mail_domain_replaces_its_records_and_keeps_the_zones_others(world, tmp_path):
    """shop.example.test was a mail domain (MX, SPF, DKIM, DMARC, TLS-RPT of ours) beside a
    site verification TXT; parked, it gets null MX, SPF -all, DMARC reject and the empty key,
    its old DKIM and TLS-RPT records go, the verification stays; a second plan is empty."""
    as_mail = sample_settings(mail_domains=["example.test", PARKED], dns_zones=["example.test"])
    keys = {d: DkimPublicKeys(RSA) for d in as_mail.mail_domains}
    (zone,) = desired_by_zone([MailHost(as_mail, keys)])
    first = ZoneSync(zone, world.provider(), memory=tmp_path)
    first.apply(first.plan())
    world.add_foreign(PARKED, "TXT", "google-site-verification=shop")

    parked = sample_settings(parked_domains=[PARKED])
    (zone,) = desired_by_zone([MailHost(parked, {"example.test": DkimPublicKeys(RSA)})])
    # the world's zone is small: parking touches over 30% of its records (the guard)
    with pytest.raises(Exception, match="over 30%"):
        ZoneSync(zone, world.provider(), memory=tmp_path).plan()
    sync = ZoneSync(zone, world.provider(), force=True, memory=tmp_path)
    plan = sync.plan()
    changes = {(c.action, c.rtype, c.name) for c in plan.changes}
    assert changes == {
        ("modify", "MX", PARKED), ("modify", "TXT", PARKED),
        ("modify", "TXT", f"_dmarc.{PARKED}"), ("create", "TXT", f"*._domainkey.{PARKED}"),
        ("delete", "TXT", f"mail._domainkey.{PARKED}"), ("delete", "TXT", f"_smtp._tls.{PARKED}"),
        *(("delete", "SRV", f"{label}.{PARKED}") for label in (
            "_submissions._tcp", "_submission._tcp", "_imaps._tcp", "_imap._tcp", "_pop3._tcp",
            "_sieve._tcp")),
    }
    sync.apply(plan)
    held = {(e[0], e[1], e[3]) for e in world.snapshot()}
    assert (PARKED, "MX", "0 .") in held
    assert (PARKED, "TXT", "v=spf1 -all") in held
    assert (PARKED, "TXT", "google-site-verification=shop") in held
    assert (f"*._domainkey.{PARKED}", "TXT", "v=DKIM1; p=") in held
    assert not [e for e in held if e[0] == f"mail._domainkey.{PARKED}"]
    assert ZoneSync(zone, world.provider(), memory=tmp_path).plan().empty


def test_parking_a_domain_that_receives_mail_elsewhere_is_a_conflict(world):
    world.add_foreign(PARKED, "MX", "10 mx.elsewhere.example")
    before = world.snapshot()
    parked = sample_settings(parked_domains=[PARKED])
    (zone,) = desired_by_zone([MailHost(parked, {"example.test": DkimPublicKeys(RSA)})])
    with pytest.raises(Exception, match="mx.elsewhere.example is not one of our mail hosts"):
        ZoneSync(zone, world.provider()).plan()
    assert world.snapshot() == before
