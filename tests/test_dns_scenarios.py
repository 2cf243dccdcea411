"""The same DNS scenarios against both providers: a real Knot (RFC 2136) and the Cloudflare
emulator through the official SDK. dnscontrol's rule: apply, plan again, expect nothing."""

from __future__ import annotations

import json
import re

import pytest
from concurrency import assert_refused_after_foreign_write
from sample import sample_settings

from mailhost.dns.records import RecordSet
from mailhost.keys.dkim import DkimPublicKeys, generate_key, public_value
from mailhost.zones.desired import MailHost, desired_by_zone
from mailhost.zones.plan import Change, PlanError, ZonePlan, check_safety, compute_plan
from mailhost.zones.providers import ProviderError
from mailhost.zones.sync import ZoneSync

RSA = public_value(generate_key("rsa", 2048))
RSA2 = public_value(generate_key("rsa", 2048))


@pytest.fixture(params=["knot_world", "cloudflare_world", "powerdns_world"])
def world(request, tmp_path):
    world = request.getfixturevalue(request.param)
    world.memory = tmp_path / "dns" / "example.test"  # this controller's (secrets_dir/dns/ZONE)
    return world


def zone_sync(world, provider=None, force=False, rsa=RSA, memory="the world's",
              **overrides) -> ZoneSync:
    """The zone's sync as a deploy makes it; ``memory=None``: a controller that wrote nothing."""
    settings = sample_settings(**overrides)
    (records,) = desired_by_zone([MailHost(settings, {"example.test": DkimPublicKeys(rsa)})])
    memory = getattr(world, "memory", None) if memory == "the world's" else memory
    return ZoneSync(records, provider or world.provider(), force=force, memory=memory)


def converge(world, **overrides):
    sync = zone_sync(world, **overrides)
    sync.apply(sync.plan())
    return sync


def test_apply_then_plan_again_is_empty_with_no_write(world):
    first = zone_sync(world)
    plan = first.plan()
    assert {c.action for c in plan.changes} == {"create"}
    # A, AAAA, MX, SPF, CAA, DKIM, DMARC, TLS-RPT and 6 SRV for mail clients
    assert len(plan.changes) == 14
    first.apply(plan)
    second = zone_sync(world)
    assert second.plan().empty
    assert second.provider.calls["write"] == 0
    names = {entry[:2] for entry in world.snapshot()}
    assert ("mail._domainkey.example.test", "TXT") in names
    assert ("example.test", "MX") in names
    assert ("_imaps._tcp.example.test", "SRV") in names


def test_srv_records_follow_imap_starttls_and_round_trip(world):
    converge(world)
    sync = zone_sync(world, imap_starttls=True)
    plan = sync.plan()
    assert [(c.action, c.name, c.new.values) for c in plan.changes] == [
        ("modify", "_imap._tcp.example.test", ("0 1 143 mail.example.test",))]
    sync.apply(plan)
    assert zone_sync(world, imap_starttls=True).plan().empty
    assert zone_sync(world).plan().changes[0].new.values == ("0 0 0 .",)


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
    assert_refused_after_foreign_write(
        world, lambda: world.add_foreign("_dmarc.example.test", "TXT",
                                         "v=DMARC1; p=none; rua=mailto:x@example.test"),
        lambda: sync.apply(plan), match="(?i)concurrent|changed")


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
    # every one of our 13 records (a new TTL) in a zone of 17 or 18 (ours, the NS and its
    # address, one foreign host)
    changed = dict(dmarc_policy="none", tlsrpt_rua=["mailto:tls2@example.test"],
                   spf_all="-all", rsa=RSA2, dns_ttl=600)
    before = world.snapshot()
    with pytest.raises(PlanError, match="over 30%"):
        zone_sync(world, **changed).plan()
    assert world.snapshot() == before
    forced = zone_sync(world, force=True, **changed)
    forced.apply(forced.plan())
    assert zone_sync(world, **changed).plan().empty



def test_a_zone_whose_domain_moves_between_hosts_passes_the_share_limit_not_conflicts(world):
    """move_from (run.MailRun.moving_into): the zone's many changes are the move's."""
    converge(world)
    changed = dict(dmarc_policy="none", tlsrpt_rua=["mailto:tls2@example.test"],
                   spf_all="-all", rsa=RSA2, dns_ttl=600)
    moving = zone_sync(world, **changed)
    moving.moving = True
    moving.apply(moving.plan())
    assert zone_sync(world, **changed).plan().empty
    world.add_foreign("mail.example.test", "AAAA", "2001:db8::99")
    moving = zone_sync(world, **changed)
    moving.moving = True
    with pytest.raises(PlanError, match="2001:db8::99 is not this host's address"):
        moving.plan()


def test_an_address_this_controller_wrote_is_ours_when_its_name_changes_hosts(world):
    """mta-sts.DOMAIN, the mail host's own name: an address found as this controller last
    wrote it is replaced without dns_force (a domain moved to another host of the inventory);
    one it did not write still needs it (the test above)."""
    converge(world)
    sync = zone_sync(world, ipv4="198.51.100.12")
    plan = sync.plan()
    assert [(c.name, c.rtype) for c in plan.changes if c.rtype == "A"] == [
        ("mail.example.test", "A")]
    sync.apply(plan)
    assert ("mail.example.test", "A", 3600, "198.51.100.12") in world.snapshot()
    with pytest.raises(PlanError) as refused:  # a controller that wrote nothing
        zone_sync(world, ipv4="198.51.100.13", memory=None).plan()
    assert "198.51.100.12 is not this host's address" in refused.value.plan.format()

# ----- a realistic zone: a website, a newsletter sender, another provider, another CA -----

ADOPT = dict(spf_include=["spf.newsletter.example"], mx_keep=["20 mx.oldprovider.example"],
             dns_ttl=300)


def zone_state(world):
    """What must not move on a refused run: Knot's zone byte for byte (SOA serial included),
    the emulator's records with their ids and timestamps."""
    if hasattr(world, "zone_bytes"):
        return world.zone_bytes()
    return world.emulator.records(world.zone)


def test_cluttered_zone_is_refused_with_one_line_per_conflict(world):
    world.clutter()
    before = zone_state(world)
    with pytest.raises(PlanError) as refused:
        zone_sync(world, dns_ttl=300).plan()
    assert "\n" not in str(refused.value)
    shown = refused.value.plan.format()
    conflicts = [line.strip() for line in shown.splitlines() if line.strip().startswith("!")]
    assert [" ".join(line.split()[:4]) for line in conflicts] == [
        "! CONFLICT MX example.test", "! CONFLICT TXT example.test"], shown
    assert conflicts[0].endswith(
        "20 mx.oldprovider.example is not one of our mail hosts: list it in mx_keep to "
        "keep it (a backup MX), or set dns_force = True to delete it")
    assert conflicts[1].endswith(
        'SPF "v=spf1 include:spf.newsletter.example -all" has terms that are not ours: '
        "include:spf.newsletter.example; add spf.newsletter.example to spf_include to keep "
        "them, or set dns_force = True to replace the record")
    # the wildcard's answer is not taken for a record at the mail hostname
    assert re.search(r"\+ CREATE  A     mail.example.test +198.51.100.10", shown)
    assert "- DELETE" not in shown
    assert zone_state(world) == before


def test_cluttered_zone_adopted_keeps_every_foreign_record_byte_for_byte(world):
    world.clutter()
    foreign = {row for row in world.snapshot()}
    sync = zone_sync(world, **ADOPT)
    plan = sync.plan()
    assert plan.conflicts == []
    shown = plan.format()
    # shared sets keep their TTL, and the plan says so
    assert "ttl 3600 of the shared TXT set, not 300" in shown
    assert "ttl 3600 of the shared MX set, not 300" in shown
    assert "ttl 3600 of the shared CAA set, not 300" in shown
    assert "issuewild" not in shown  # never forbid wildcards when another CA issues
    sync.apply(plan)
    after = world.snapshot()
    # every foreign record is still there, TTL included, except the replaced SPF
    replaced = ("example.test", "TXT", 3600, "v=spf1 include:spf.newsletter.example -all")
    assert foreign - {replaced} <= after
    apex = {(t[1], t[2], t[3]) for t in after if t[0] == "example.test"}
    assert ("TXT", 3600, "v=spf1 ip4:198.51.100.10 ip6:2001:db8::10 "
            "include:spf.newsletter.example ~all") in apex
    assert {v for t, _ttl, v in apex if t == "CAA"} == {
        '0 issue "sectigo.com"', '0 issue "letsencrypt.org"'}
    assert {(ttl, v) for t, ttl, v in apex if t == "MX"} == {
        (3600, "20 mx.oldprovider.example"), (3600, "10 mail.example.test")}
    assert ("mail.example.test", "A", 300, "198.51.100.10") in after
    again = zone_sync(world, **ADOPT)
    assert again.plan().empty
    assert again.provider.calls["write"] == 0


def test_forced_run_replaces_the_foreign_spf_and_mx_but_keeps_the_rest(world):
    world.clutter()
    sync = zone_sync(world, dns_ttl=300, force=True)
    plan = sync.plan()
    assert len(plan.conflicts) == 2  # shown, then overridden by dns_force
    sync.apply(plan)
    after = {(t[0], t[1], t[3]) for t in world.snapshot()}
    assert ("example.test", "MX", "20 mx.oldprovider.example") not in after
    assert ("example.test", "TXT", "google-site-verification=Xk2v9Q") in after
    assert ("example.test", "CAA", '0 issue "sectigo.com"') in after
    assert zone_sync(world, dns_ttl=300).plan().empty


def test_cname_at_the_mail_hostname_is_refused_even_when_forced(world):
    world.clutter()
    world.add_foreign("mail.example.test", "CNAME", "ghs.hosting.example")
    before = zone_state(world)
    with pytest.raises(PlanError, match="no other record can sit beside a CNAME") as refused:
        zone_sync(world, force=True, **ADOPT).plan()
    assert re.search(r"! CONFLICT CNAME mail.example.test +-> ghs.hosting.example",
                     refused.value.plan.format())
    assert "choose another mail_hostname" in str(refused.value)
    assert zone_state(world) == before


def test_a_dmarc_delegated_by_cname_is_refused_without_naming_the_mail_hostname(world):
    world.add_foreign("_dmarc.example.test", "CNAME", "example.test._dmarc.vendor.example")
    with pytest.raises(PlanError) as refused:
        zone_sync(world, force=True).plan()
    (conflict,) = refused.value.plan.conflicts
    assert conflict.name == "_dmarc.example.test" and not conflict.forceable
    assert "remove it or move what it serves elsewhere" in conflict.text
    assert "mail_hostname" not in conflict.text


def test_mail_hostname_at_the_apex_is_refused(world):
    world.clutter()
    before = zone_state(world)
    with pytest.raises(PlanError, match="is the apex of a mail domain") as refused:
        zone_sync(world, mail_hostname="example.test", **ADOPT).plan()
    shown = refused.value.plan.format()
    assert "198.51.100.80 is not this host's address" in shown  # the website's A
    assert zone_state(world) == before


def test_a_foreign_address_at_the_mail_hostname_needs_force(world):
    world.add_foreign("mail.example.test", "A", "198.51.100.99")
    before = zone_state(world)
    with pytest.raises(PlanError, match="198.51.100.99 is not this host's address"):
        zone_sync(world).plan()
    assert zone_state(world) == before
    converge(world, force=True)
    assert ("mail.example.test", "A", 3600, "198.51.100.10") in world.snapshot()


def test_a_change_between_preview_and_apply_stops_the_run(world):
    world.clutter()
    sync = zone_sync(world, **ADOPT)
    preview = sync.plan()
    world.add_foreign("example.test", "TXT", "ms=ms12345", ttl=3600)
    after_foreign = zone_state(world)
    fresh = sync.plan()
    with pytest.raises(PlanError, match="changed since the plan you saw: TXT example.test"):
        sync.apply(fresh, seen=preview)
    assert zone_state(world) == after_foreign


@pytest.fixture(params=["knot_world", "powerdns_world"])
def named_world(request):
    """The worlds whose reads go name by name (RFC 2136 queries, PowerDNS's rrset_name)."""
    return request.getfixturevalue(request.param)


def test_a_dname_above_an_owned_name_is_refused(named_world):
    named_world.add_foreign("_domainkey.example.test", "DNAME", "_domainkey.newsletter.example.")
    with pytest.raises(PlanError, match="redirects mail._domainkey.example.test"):
        zone_sync(named_world).plan()


def test_an_update_the_server_silently_ignores_is_reported(knot_world):
    """RFC 2136 3.4.2.2: an A added at a CNAME's name is ignored, and the update succeeds."""
    knot_world.add_foreign("mail.example.test", "CNAME", "ghs.hosting.example")
    sync = zone_sync(knot_world)
    unseen = [rr for rr in sync.provider.read(sync.zone, sync.records.ownership.keys)
              if rr.rtype != "CNAME"]  # as a provider that did not see the CNAME would read
    plan = compute_plan(sync.zone, sync.records.desired, unseen, sync.records.ownership)
    with pytest.raises(ProviderError, match="did not keep A mail.example.test as written"):
        sync.apply(plan)


def test_wildcards_are_not_taken_for_records(named_world):
    named_world.add_foreign("*.example.test", "TXT", "v=DMARC1; p=none")
    named_world.add_foreign("*.example.test", "A", "198.51.100.80")
    provider = named_world.provider()
    assert provider.read("example.test", [("_dmarc.example.test", "TXT"),
                                          ("mail.example.test", "A")]) == []
    converge(named_world)
    assert zone_sync(named_world).plan().empty
    assert ("*.example.test", "A", 300, "198.51.100.80") in named_world.snapshot()


# ----- the 30% threshold (octoDNS): its boundaries -----

def plan_touching(count: int) -> ZonePlan:
    """A plan that modifies ``count`` records."""
    old = RecordSet("example.test", "TXT", 300, tuple(f"old{i}" for i in range(count)))
    new = RecordSet("example.test", "TXT", 300, ("new",))
    return ZonePlan("example.test", [Change("modify", "example.test", "TXT", old, new, old)])


@pytest.mark.parametrize("touched, size, refused", [
    (29, 100, False), (30, 100, False), (31, 100, True),  # 29%, 30%, 31%
    (4, 9, False), (4, 10, True), (4, 11, True),  # zones of 9, 10, 11 records
    (3, 10, False),  # 30% of 10: never counted
])
def test_safety_threshold_boundaries(touched, size, refused):
    counted = []

    def count():
        counted.append(size)
        return size

    if refused:
        with pytest.raises(PlanError, match=f"updates or deletes {touched} of {size} records"):
            check_safety(plan_touching(touched), count, force=False)
    else:
        check_safety(plan_touching(touched), count, force=False)
    check_safety(plan_touching(touched), count, force=True)  # forced: never refused
    assert len(counted) == (0 if touched <= 3 else 1)  # counted only when it can matter


def test_the_deploy_operation_applies_only_the_plan_it_showed(world):
    """mailhost.operations.dns: the preview is what --dry printed; the run compares."""
    from pyinfra.api import OperationError

    from mailhost.operations.dns import _apply

    world.clutter()
    preview = zone_sync(world, **ADOPT).plan()
    world.add_foreign("www2.example.test", "A", "198.51.100.83")  # elsewhere: not compared
    world.add_foreign("example.test", "TXT", "ms=ms12345", ttl=3600)
    after_foreign = zone_state(world)
    with pytest.raises(OperationError, match="changed since the plan you saw: TXT example.test;"):
        _apply(lambda: zone_sync(world, **ADOPT), preview)
    assert zone_state(world) == after_foreign
    world.remove_foreign("example.test", "TXT", "ms=ms12345")
    _apply(lambda: zone_sync(world, **ADOPT), preview)  # as seen again: applied
    assert zone_sync(world, **ADOPT).plan().empty


def test_an_spf_include_dropped_from_the_settings_leaves_the_record_we_wrote(world, tmp_path):
    """The zone's SPF as this controller wrote it (its memory, secrets_dir/dns/ZONE/) is ours
    whole: an include taken out of spf_include is removed without dns_force. A term added by
    hand since, or no memory (another controller), is a conflict as before."""
    memory = world.memory
    newsletter = dict(spf_include=["spf.newsletter.example"])
    sync = zone_sync(world, **newsletter)
    sync.apply(sync.plan())
    written = "v=spf1 ip4:198.51.100.10 ip6:2001:db8::10 include:spf.newsletter.example ~all"
    assert json.loads((memory / "written.json").read_text())["example.test TXT"] == [written]
    with pytest.raises(PlanError, match="has terms that are not ours"):
        zone_sync(world, memory=None).plan()  # no memory: a conflict, as on a new controller
    dropped = zone_sync(world)
    plan = dropped.plan()
    assert plan.conflicts == [] and "include:" not in " ".join(
        v for c in plan.changes for v in c.expected_values())
    dropped.apply(plan)
    assert json.loads((memory / "written.json").read_text())["example.test TXT"] == [
        "v=spf1 ip4:198.51.100.10 ip6:2001:db8::10 ~all"]
    # a term written by hand since the last run is somebody else's: a conflict again
    world.remove_foreign("example.test", "TXT",
                         "v=spf1 ip4:198.51.100.10 ip6:2001:db8::10 ~all")
    world.add_foreign("example.test", "TXT",
                      "v=spf1 ip4:198.51.100.10 ip6:2001:db8::10 include:spf.crm.example ~all")
    again = zone_sync(world)
    with pytest.raises(PlanError, match="include:spf.crm.example"):
        again.plan()
    (memory / "written.json").write_text("{not json")  # damaged: the plan still runs, one line
    with pytest.raises(PlanError, match="include:spf.crm.example"):
        again.plan()


# records at names the tool needs, found there before it (a zone that had mail elsewhere)
BEFORE_US = [
    ("_dmarc.example.test", "TXT", "v=DMARC1; p=none; rua=mailto:agg@dmarc.vendor.example"),
    ("mail._domainkey.example.test", "TXT", "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCB"),
    ("_smtp._tls.example.test", "TXT", "v=TLSRPTv1; rua=mailto:tls@vendor.example"),
    ("_submission._tcp.example.test", "SRV", "0 1 587 smtp.vendor.example"),
]


def test_records_found_at_our_names_before_us_are_conflicts_not_rewrites(world):
    """A DMARC policy, another sender's DKIM key under our selector, a TLS-RPT address, a
    client SRV: none written by this tool, so none is rewritten (nor its TTL) without
    dns_force; each is one line saying what to do."""
    for name, rtype, value in BEFORE_US:
        world.add_foreign(name, rtype, value, ttl=600)
    before = zone_state(world)
    with pytest.raises(PlanError) as refused:
        zone_sync(world).plan()
    assert "(and 3 more, see the ! lines)" in str(refused.value)
    conflicts = {c.name: c.text for c in refused.value.plan.conflicts}
    assert set(conflicts) == {name for name, _, _ in BEFORE_US}
    assert all("was not written by this tool" in text and "dns_force = True" in text
               for text in conflicts.values())
    assert "choose another dkim_selector" in conflicts["mail._domainkey.example.test"]
    assert "choose another" not in conflicts["_dmarc.example.test"]
    assert zone_state(world) == before
    forced = zone_sync(world, force=True)
    forced.apply(forced.plan())
    held = {(n, t, v) for n, t, _ttl, v in world.snapshot()}
    assert not {(n, t, v) for n, t, v in BEFORE_US} & held
    assert zone_sync(world).plan().empty  # replaced once: ours from now on


def test_a_record_found_as_we_want_it_is_ours_and_one_edited_since_is_not(world):
    dmarc = "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.test"
    world.add_foreign("_dmarc.example.test", "TXT", dmarc, ttl=3600)
    sync = zone_sync(world)
    plan = sync.plan()
    assert plan.conflicts == [] and "_dmarc.example.test" not in plan.format()
    sync.apply(plan)
    # a setting changes it: ours (remembered), one modify
    changed = zone_sync(world, dmarc_policy="reject").plan()
    assert [(c.action, c.name) for c in changed.changes] == [("modify", "_dmarc.example.test")]
    # edited by hand since our last write: somebody's now
    world.remove_foreign("_dmarc.example.test", "TXT", dmarc)
    world.add_foreign("_dmarc.example.test", "TXT", dmarc + "; ruf=mailto:f@vendor.example")
    with pytest.raises(PlanError, match="_dmarc.example.test.*was not written by this tool"):
        zone_sync(world, dmarc_policy="reject").plan()


def test_a_record_at_an_owned_name_we_do_not_want_is_left_unless_we_wrote_it(world):
    """The ed25519 selector's name is ours (dkim_ed25519 may be turned off): a record there
    that this tool did not write is neither deleted nor a conflict."""
    name, value = "mail-ed25519._domainkey.example.test", "v=DKIM1; k=ed25519; p=theirs"
    world.add_foreign(name, "TXT", value)
    sync = zone_sync(world)
    plan = sync.plan()
    assert plan.conflicts == [] and name not in plan.format()
    sync.apply(plan)
    assert (name, "TXT", value) in {(n, t, v) for n, t, _ttl, v in world.snapshot()}


def test_the_spf_memory_of_an_older_controller_is_read_then_replaced(world):
    """secrets/dns/ZONE/spf.json ({name: SPF value}) came before written.json."""
    newsletter = dict(spf_include=["spf.newsletter.example"])
    sync = zone_sync(world, memory=None, **newsletter)
    sync.apply(sync.plan())
    world.memory.mkdir(parents=True)
    written = "v=spf1 ip4:198.51.100.10 ip6:2001:db8::10 include:spf.newsletter.example ~all"
    (world.memory / "spf.json").write_text(json.dumps({"example.test": written}))
    dropped = zone_sync(world)
    dropped.apply(dropped.plan())  # the include goes without dns_force: the old file was read
    assert "include:" not in " ".join(v for _n, t, _ttl, v in world.snapshot() if t == "TXT")
    assert not (world.memory / "spf.json").exists()
    assert json.loads((world.memory / "written.json").read_text())["example.test TXT"] == [
        "v=spf1 ip4:198.51.100.10 ip6:2001:db8::10 ~all"]
