"""CloudflareProvider against the emulator, through the unmodified SDK."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest
from concurrency import assert_refused_after_foreign_write
from secrecy import leaked

from mailhost.dns.records import RecordSet
from mailhost.zones.desired import ZoneRecords
from mailhost.zones.plan import CREATE, MODIFY, Ownership, compute_plan
from mailhost.zones.providers.base import ProviderError
from mailhost.zones.providers.cloudflare import CloudflareProvider, _body, record_value
from mailhost.zones.sync import ZoneSync

ZONE = "example.test"
MAIL = "mail.example.test"
DKIM_NAME = "mail._domainkey.example.test"
DKIM = "v=DKIM1; k=rsa; p=" + "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" * 8
IP = "198.51.100.10"
BATCH = "dns_records/batch$"


def desired(ip=IP, spf="v=spf1 mx -all", dmarc="v=DMARC1; p=quarantine", ttl=300):
    return [
        RecordSet(MAIL, "A", ttl, (ip,)),
        RecordSet(MAIL, "AAAA", ttl, ("2001:db8::10",)),
        RecordSet(ZONE, "MX", ttl, (f"10 {MAIL}",)),
        RecordSet(ZONE, "TXT", ttl, (spf,)),
        RecordSet(ZONE, "CAA", ttl, ('0 issue "letsencrypt.org"',)),
        RecordSet("_dmarc." + ZONE, "TXT", ttl, (dmarc,)),
        RecordSet(DKIM_NAME, "TXT", ttl, (DKIM,)),
    ]


OWNERSHIP = Ownership(frozenset(r.key for r in desired()), shared_txt=frozenset({ZONE}))
OWNED_NAMES = {name for name, _rtype in OWNERSHIP.keys}


def expected_snapshot(**changes) -> frozenset:
    return frozenset((r.name, r.rtype, r.ttl, v) for r in desired(**changes) for v in r.values)


def plan_for(provider, records=None):
    found = provider.read(ZONE, OWNERSHIP.keys)
    return compute_plan(ZONE, records or desired(), found, OWNERSHIP)


def run(provider, records=None):
    plan = plan_for(provider, records)
    provider.apply(plan)
    return plan


def record_ids(world) -> dict:
    return {(r["name"], r["type"]): r["id"] for r in world.emulator.records(ZONE)}


# ----- zone and reading -----

def test_check_zone(cloudflare_world):
    provider = cloudflare_world.provider()
    provider.check_zone(ZONE)
    provider.check_zone(ZONE)
    assert provider.calls["read"] == 1  # the id is cached
    with pytest.raises(ProviderError, match="zone missing.test is not in this Cloudflare acc"):
        provider.check_zone("missing.test")


def test_read_converts_to_record_sets(cloudflare_world):
    world = cloudflare_world
    world.emulator.add_record(ZONE, ZONE, "MX", "mail.example.test", priority=10)
    world.emulator.add_record(ZONE, ZONE, "TXT", '"v=spf1 mx" " -all"')
    world.emulator.add_record(ZONE, ZONE, "TXT", "google-site-verification=abc")
    world.emulator.add_record(ZONE, MAIL, "A", IP, ttl=600, proxied=True)
    world.emulator.add_record(ZONE, "www.example.test", "A", "198.51.100.80")  # not owned
    provider = world.provider()
    found = {r.key: r for r in provider.read(ZONE, OWNERSHIP.keys)}
    assert set(found) == {(ZONE, "MX"), (ZONE, "TXT"), (MAIL, "A")}
    assert found[(ZONE, "MX")].values == ("10 mail.example.test",)
    assert found[(ZONE, "TXT")].values == ("google-site-verification=abc", "v=spf1 mx -all")
    assert (found[(MAIL, "A")].ttl, found[(MAIL, "A")].proxied) == (600, True)
    # zone lookup + one name-filtered list per owned name, whatever the zone's size
    assert provider.calls["read"] == 1 + len(OWNED_NAMES)


def test_read_of_a_big_zone_does_not_page_through_it(cloudflare_world):
    world = cloudflare_world
    world.emulator.add_records(ZONE, [
        {"name": f"host{i}", "type": "A", "content": f"10.{i // 62500}.{i // 250 % 250}.{i % 250}"}
        for i in range(10_000)
    ])
    run(world.provider())
    world.emulator.reset_stats()

    provider = world.provider()
    found = provider.read(ZONE, OWNERSHIP.keys)
    assert {r.key for r in found} == set(OWNERSHIP.keys)
    # zone lookup + one name-filtered list per owned name; no page of the whole zone
    assert provider.calls["read"] == 1 + len(OWNED_NAMES)
    assert world.emulator.stats_dict()["total"] == 1 + len(OWNED_NAMES)
    full_list_pages = [q for _m, p, q in world.emulator.request_log
                       if p.endswith("/dns_records") and "name.exact" not in q]
    assert full_list_pages == []

    plan = compute_plan(ZONE, desired(dmarc="v=DMARC1; p=reject"), found, OWNERSHIP)
    provider.apply(plan)
    # the check before writing: one name-filtered list
    assert provider.calls["read"] == 1 + len(OWNED_NAMES) + 1
    assert provider.calls["write"] == 1
    assert provider.count_records(ZONE) == 10_000 + 7
    assert provider.calls["read"] == 1 + len(OWNED_NAMES) + 2


def test_count_records_is_one_call(cloudflare_world):
    cloudflare_world.emulator.add_records(ZONE, [
        {"name": f"h{i}", "type": "TXT", "content": f"t{i}"} for i in range(42)
    ])
    provider = cloudflare_world.provider()
    provider.check_zone(ZONE)
    assert provider.count_records(ZONE) == 42
    assert provider.calls["read"] == 2


# ----- plan and apply -----

def test_plan_apply_then_nothing_to_do(cloudflare_world):
    world = cloudflare_world
    provider = world.provider()
    plan = run(provider)
    assert plan.counts() == {"create": 7, "modify": 0, "delete": 0}
    assert provider.calls["write"] == 1
    assert world.snapshot() == expected_snapshot()
    raw = {(r["name"], r["type"]): r for r in world.emulator.records(ZONE)}
    chunks = raw[(DKIM_NAME, "TXT")]["content"]
    assert chunks.startswith('"v=DKIM1; k=rsa; p=') and '" "' in chunks  # 255-byte strings
    assert raw[(MAIL, "A")]["proxied"] is False and raw[(MAIL, "AAAA")]["proxied"] is False
    assert (raw[(ZONE, "MX")]["content"], raw[(ZONE, "MX")]["priority"]) == (MAIL, 10)

    writes_before = world.emulator.stats["POST"]
    again = world.provider()
    second = run(again)
    assert second.empty
    assert again.calls["write"] == 0
    assert world.emulator.stats["POST"] == writes_before


def test_changes_patch_records_in_place(cloudflare_world):
    world = cloudflare_world
    run(world.provider())
    ids = record_ids(world)
    provider = world.provider()
    plan = run(provider, desired(ip="198.51.100.11", ttl=600))
    assert {c.action for c in plan.changes} == {MODIFY}
    assert world.snapshot() == expected_snapshot(ip="198.51.100.11", ttl=600)
    assert record_ids(world) == ids
    assert provider.calls["write"] == 1
    assert run(world.provider(), desired(ip="198.51.100.11", ttl=600)).empty


def test_removed_key_is_deleted(cloudflare_world):
    world = cloudflare_world
    run(world.provider())
    without_dmarc = [r for r in desired() if r.name != "_dmarc." + ZONE]
    (dmarc,) = [r for r in desired() if r.name == "_dmarc." + ZONE]
    written = replace(OWNERSHIP, written=frozenset({(dmarc.name, "TXT", dmarc.values)}))
    provider = world.provider()
    plan = compute_plan(ZONE, without_dmarc, provider.read(ZONE, OWNERSHIP.keys), written)
    provider.apply(plan)
    assert plan.counts() == {"create": 0, "modify": 0, "delete": 1}
    assert not [t for t in world.snapshot() if t[0] == "_dmarc." + ZONE]


def test_spf_change_keeps_foreign_txt_at_the_apex(cloudflare_world):
    world = cloudflare_world
    world.add_foreign(ZONE, "TXT", "google-site-verification=abc", ttl=60)  # lower TTL than ours
    run(world.provider())
    plan = run(world.provider(), desired(spf="v=spf1 a mx -all"))
    assert "ttl 60 of the shared TXT set, not 300" in plan.format()
    apex_txt = {t[2:] for t in world.snapshot() if t[:2] == (ZONE, "TXT")}
    # our SPF takes the TTL of the shared apex TXT set; the foreign record is untouched
    assert apex_txt == {(60, "google-site-verification=abc"), (60, "v=spf1 a mx -all")}
    assert run(world.provider(), desired(spf="v=spf1 a mx -all")).empty


def test_proxied_mail_host_becomes_unproxied(cloudflare_world):
    world = cloudflare_world
    run(world.provider())
    world.set_proxied(MAIL, "A", IP)
    assert (MAIL, "A", 300, IP, "proxied") in world.snapshot()
    ids = record_ids(world)
    plan = run(world.provider())  # compute_plan alone: ZoneSync refuses it unless dns_force
    assert [(c.rtype, c.name) for c in plan.conflicts] == [("A", MAIL)]
    assert "proxied by Cloudflare" in plan.format()
    assert [(c.action, c.name, c.rtype) for c in plan.changes] == [(MODIFY, MAIL, "A")]
    assert world.snapshot() == expected_snapshot()
    assert record_ids(world) == ids
    assert run(world.provider()).empty


def test_mail_addresses_are_never_written_proxied(cloudflare_world):
    world = cloudflare_world
    proxied = [RecordSet(r.name, r.rtype, r.ttl, r.values, proxied=r.rtype in ("A", "AAAA"))
               for r in desired()]
    run(world.provider(), proxied)
    assert world.snapshot() == expected_snapshot()  # no "proxied" element anywhere


def test_ttl_change_of_a_multi_value_set_patches_each_record_in_place(cloudflare_world):
    world = cloudflare_world
    world.add_foreign(ZONE, "MX", "20 backup.example.test", ttl=600)  # older record first
    world.add_foreign(ZONE, "MX", f"10 {MAIL}", ttl=600)
    ids = {r["content"]: r["id"] for r in world.emulator.records(ZONE)}
    records = [r for r in desired() if r.rtype != "MX"]
    records.append(RecordSet(ZONE, "MX", 300, (f"10 {MAIL}", "20 backup.example.test")))
    run(world.provider(), records)
    mx = {r["content"]: (r["id"], r["ttl"]) for r in world.emulator.records(ZONE)
          if r["type"] == "MX"}
    assert mx == {MAIL: (ids[MAIL], 300), "backup.example.test": (ids["backup.example.test"], 300)}


# ----- faults -----

def test_429_then_success_converges(cloudflare_world):
    world = cloudflare_world
    world.emulator.add_fault("POST", BATCH, status=429, count=1, retry_after=0.01)
    world.emulator.add_fault("GET", "dns_records$", status=429, count=1, retry_after=0.01)
    provider = world.provider()
    run(provider)
    assert world.snapshot() == expected_snapshot()
    assert world.emulator.stats["POST"] == 2  # the SDK retried the batch once
    assert provider.calls["write"] == 1
    assert run(world.provider()).empty


def test_429_beyond_the_retries_is_a_clear_error(cloudflare_world):
    world = cloudflare_world
    world.emulator.add_fault("POST", BATCH, status=429, count=3, retry_after=0.01)
    with pytest.raises(ProviderError, match="rate limit .* run again"):
        run(world.provider())
    assert world.snapshot() == frozenset()
    run(world.provider())
    assert world.snapshot() == expected_snapshot()


def test_500_on_every_attempt_writes_nothing_then_next_run_converges(cloudflare_world):
    world = cloudflare_world
    run(world.provider())
    before = world.snapshot()
    world.emulator.add_fault("POST", BATCH, status=500, count=3, retry_after=0.01)
    with pytest.raises(ProviderError, match="HTTP 500.*nothing was written"):
        run(world.provider(), desired(ip="198.51.100.11", dmarc="v=DMARC1; p=reject"))
    assert world.snapshot() == before
    run(world.provider(), desired(ip="198.51.100.11", dmarc="v=DMARC1; p=reject"))
    assert world.snapshot() == expected_snapshot(ip="198.51.100.11", dmarc="v=DMARC1; p=reject")


def test_500_after_the_batch_committed_then_next_run_converges(cloudflare_world):
    """The write succeeds but its answer is lost: the SDK's retry then finds the records."""
    world = cloudflare_world
    world.emulator.add_fault("POST", BATCH, status=500, count=1, retry_after=0.01,
                             after_write=True)
    with pytest.raises(ProviderError, match="already exists.*run again"):
        run(world.provider())
    assert world.snapshot() == expected_snapshot()
    provider = world.provider()
    assert run(provider).empty
    assert provider.calls["write"] == 0


def test_wrong_token_is_a_clear_error_and_changes_nothing(cloudflare_world):
    world = cloudflare_world
    run(world.provider())
    before = world.snapshot()
    plan = plan_for(world.provider(), desired(ip="198.51.100.11"))
    assert not plan.empty
    bad = world.bad_provider()
    with pytest.raises(ProviderError, match="refused the API token.*CLOUDFLARE_API_TOKEN"):
        bad.read(ZONE, OWNERSHIP.keys)
    with pytest.raises(ProviderError, match="refused the API token"):
        bad.apply(plan)
    assert bad.calls["write"] == 0
    assert world.snapshot() == before


# ----- concurrent changes -----

def behind_the_back(world, what):
    if what == "deleted":
        world.remove_foreign(MAIL, "A", IP)
    elif what == "changed":
        record = [r for r in world.emulator.records(ZONE) if r["name"] == MAIL
                  and r["type"] == "A"][0]
        world.emulator.update_record(ZONE, record["id"], content="198.51.100.99")
    elif what == "proxied":
        world.set_proxied(MAIL, "A", IP)
    elif what == "created":
        world.add_foreign("_dmarc." + ZONE, "TXT", "v=DMARC1; p=none")


@pytest.mark.parametrize("what", ["deleted", "changed", "proxied", "created"])
def test_concurrent_change_between_plan_and_apply_is_detected(cloudflare_world, what):
    world = cloudflare_world
    run(world.provider(), [r for r in desired() if r.name != "_dmarc." + ZONE])
    provider = world.provider()
    plan = plan_for(provider, desired(ip="198.51.100.11"))
    assert {(c.action, c.name) for c in plan.changes} == {
        (MODIFY, MAIL), (CREATE, "_dmarc." + ZONE)}
    assert_refused_after_foreign_write(
        world, lambda: behind_the_back(world, what), lambda: provider.apply(plan),
        match="changed since the plan was read.*nothing was wr")
    assert provider.calls["write"] == 0


def test_record_vanishing_just_before_the_batch_writes_nothing(cloudflare_world, monkeypatch):
    world = cloudflare_world
    run(world.provider())
    provider = world.provider()
    plan = plan_for(provider, desired(ip="198.51.100.11", dmarc="v=DMARC1; p=reject"))
    check = provider._check_unchanged

    def check_then_lose_the_record(plan, current):
        check(plan, current)
        world.remove_foreign(MAIL, "A", IP)

    monkeypatch.setattr(provider, "_check_unchanged", check_then_lose_the_record)
    changed = world.snapshot() - {(MAIL, "A", 300, IP)}
    with pytest.raises(ProviderError, match="no longer exists.*nothing was written"):
        provider.apply(plan)
    assert world.snapshot() == changed  # the DMARC patch was not applied either


# ----- credentials and messages -----

def test_token_never_appears_in_errors(cloudflare_world):
    world = cloudflare_world
    good, bad = world.provider(), world.bad_provider()
    tokens = [good._token, bad._token]
    messages = []

    def collect(action):
        with pytest.raises(ProviderError) as caught:
            action()
        messages.append(str(caught.value))

    collect(lambda: bad.check_zone(ZONE))
    collect(lambda: good.check_zone("missing.test"))
    world.emulator.add_fault("GET", "/zones$", status=429, count=3, retry_after=0.01)
    collect(lambda: world.provider().check_zone(ZONE))
    world.emulator.add_fault("GET", "/zones$", status=500, count=3, retry_after=0.01)
    collect(lambda: world.provider().check_zone(ZONE))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    offline = CloudflareProvider(good._token, base_url=f"http://127.0.0.1:{closed}/client/v4",
                                 max_retries=0)
    collect(lambda: offline.check_zone(ZONE))
    collect(lambda: good.check_zone(good._token))  # token and zone swapped in the settings
    assert "connection to the Cloudflare API at 127.0.0.1 failed" in messages[4]
    assert len(messages) == 6
    for message in messages:
        assert "\n" not in message
        assert not any(token in message for token in tokens), message


def test_legacy_credentials_in_the_environment_are_refused(cloudflare_world, monkeypatch):
    monkeypatch.setenv("CLOUDFLARE_EMAIL", "owner@example.test")
    monkeypatch.setenv("CLOUDFLARE_API_KEY", "legacy-global-key-value")
    with pytest.raises(ProviderError) as caught:
        cloudflare_world.provider()
    message = str(caught.value)
    assert "CLOUDFLARE_EMAIL and CLOUDFLARE_API_KEY" in message and "unset them" in message
    assert "legacy-global-key-value" not in message and "owner@example.test" not in message
    monkeypatch.delenv("CLOUDFLARE_EMAIL")
    with pytest.raises(ProviderError, match="^CLOUDFLARE_API_KEY set in the environment"):
        cloudflare_world.provider()
    monkeypatch.delenv("CLOUDFLARE_API_KEY")
    cloudflare_world.provider().check_zone(ZONE)


def test_empty_token_is_refused():
    with pytest.raises(ProviderError, match="set CLOUDFLARE_API_TOKEN"):
        CloudflareProvider("")


def test_world_foreign_records_and_snapshot(cloudflare_world):
    world = cloudflare_world
    world.add_foreign(ZONE, "MX", "20 backup.example.test.", ttl=600)
    world.add_foreign("x." + ZONE, "TXT", "hello world")
    assert world.snapshot() == {(ZONE, "MX", 600, "20 backup.example.test"),
                                ("x." + ZONE, "TXT", 300, "hello world")}
    world.remove_foreign(ZONE, "MX", "20 backup.example.test")
    assert world.snapshot() == {("x." + ZONE, "TXT", 300, "hello world")}


# ----- every error a user can hit is one line -----

@pytest.mark.parametrize("status, expected", [
    (401, "refused the API token"),
    (403, "refused the API token"),
    (429, "rate limit"),
    (500, "HTTP 500"),
    (502, "HTTP 502"),
    (503, "HTTP 503"),
])
def test_api_errors_are_one_line_without_the_token(cloudflare_world, status, expected):
    world = cloudflare_world
    world.emulator.add_fault("GET", "/zones$", status=status, count=5, retry_after=0.01)
    provider = world.provider()
    with pytest.raises(ProviderError, match=expected) as raised:
        provider.check_zone(ZONE)
    assert "\n" not in str(raised.value)
    assert leaked({"token": world.token}, str(raised.value)) == []


def test_an_unreachable_api_is_one_line():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    provider = CloudflareProvider("some-token", base_url=f"http://127.0.0.1:{port}/client/v4",
                                  max_retries=0, timeout=2)
    with pytest.raises(ProviderError, match="connection to the Cloudflare API at 127.0.0.1"):
        provider.check_zone(ZONE)


def test_a_scoped_token_without_the_zone_is_told_so(cloudflare_world):
    world = cloudflare_world
    world.emulator.add_zone("other.test")
    world.emulator.add_token("scoped-" + "x" * 20, ["other.test"])
    provider = CloudflareProvider("scoped-" + "x" * 20, base_url=world.base_url)
    with pytest.raises(ProviderError, match="zone example.test is not in this Cloudflare "
                                            "account, or the API token cannot see it"):
        provider.check_zone(ZONE)


def test_a_change_slipping_in_between_re_read_and_batch_is_reported(cloudflare_world):
    """The re-read and the batch are two calls: what changed in between is found by the
    read-back after the write, and named."""
    world = cloudflare_world
    records = desired()
    sync = ZoneSync(ZoneRecords(ZONE, records, OWNERSHIP), world.provider())
    plan = sync.plan()
    real_batch = sync.provider.client.dns.records.batch

    def batch_after_someone_else(**fields):
        world.add_foreign("_dmarc." + ZONE, "TXT", "v=DMARC1; p=none")
        return real_batch(**fields)

    sync.provider.client.dns.records.batch = batch_after_someone_else
    with pytest.raises(ProviderError, match="did not keep TXT _dmarc.example.test as written"):
        sync.apply(plan)


def test_a_plan_over_the_batch_limit_is_written_in_several_batches(cloudflare_world):
    from mailhost.zones.plan import Change, ZonePlan
    from mailhost.zones.providers.cloudflare import BATCH_LIMIT

    world = cloudflare_world
    records = [RecordSet(f"h{i}.{ZONE}", "TXT", 300, (f"t{i}",)) for i in range(BATCH_LIMIT + 50)]
    plan = ZonePlan(ZONE, [Change(CREATE, r.name, "TXT", None, r) for r in records])
    provider = world.provider()
    provider.apply(plan)
    assert provider.calls["write"] == 2
    assert len(world.snapshot()) == BATCH_LIMIT + 50


def test_srv_is_written_as_data_and_read_back_from_data_or_content():
    rrset = RecordSet("_imaps._tcp.example.test", "SRV", 300, ("0 1 993 mail.example.test",))
    assert _body(rrset, rrset.values[0])["data"] == {
        "priority": 0, "weight": 1, "port": 993, "target": "mail.example.test"}
    data = {"priority": 0, "weight": 0, "port": 0, "target": "."}
    assert record_value("SRV", "0 0 .", 0, data) == "0 0 0 ."
    assert record_value("SRV", "1 993 mail.example.test", 5, None) == "5 1 993 mail.example.test"
