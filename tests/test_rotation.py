"""DKIM rotation's state machine (mailhost.keys.rotation), walked with the clock advanced."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

from mailhost.keys.rotation import (
    PUBLISHED,
    RETIRING,
    STEADY,
    Key,
    Policy,
    Rotation,
    advance,
    describe,
    start,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(base_selector="mail", rotate_days=180, retire_days=7, ttl=3600)


def test_a_rotation_walks_every_phase_one_deploy_at_a_time():
    state = start("mail", T0)
    step = advance(state, POLICY, T0 + timedelta(days=179), visible={"mail"})
    assert (step.rotation.phase, step.generate) == (STEADY, None)
    assert step.waiting == "the next key is made after 2026-06-30 UTC"

    day = T0 + timedelta(days=180)
    step = advance(step.rotation, POLICY, day, visible={"mail"})
    assert step.generate == "mail-20260630" and step.switch_to is None
    assert step.rotation.phase == PUBLISHED
    assert step.rotation.signing == "mail"
    assert step.rotation.published == ["mail", "mail-20260630"]

    # published but not yet answered everywhere: nothing moves
    step = advance(step.rotation, POLICY, day + timedelta(hours=1), visible={"mail"})
    assert step.switch_to is None and step.waiting.startswith("mail-20260630 to be answered")
    # seen everywhere: the clock for twice the TTL starts
    seen = day + timedelta(hours=2)
    step = advance(step.rotation, POLICY, seen, visible={"mail", "mail-20260630"})
    assert step.switch_to is None
    assert step.waiting == "signing switches to mail-20260630 after 2026-06-30 16:00 UTC"
    step = advance(step.rotation, POLICY, seen + timedelta(seconds=7199),
                   visible={"mail", "mail-20260630"})
    assert step.switch_to is None
    # twice the TTL later: signing switches, the old key stays published
    switched = seen + timedelta(seconds=7200)
    step = advance(step.rotation, POLICY, switched, visible={"mail", "mail-20260630"})
    assert step.switch_to == "mail-20260630"
    assert step.rotation.signing == "mail-20260630"
    assert step.rotation.phase == RETIRING
    assert step.rotation.published == ["mail", "mail-20260630"]

    step = advance(step.rotation, POLICY, switched + timedelta(days=6), visible=set())
    assert step.remove == () and step.rotation.published == ["mail", "mail-20260630"]
    step = advance(step.rotation, POLICY, switched + timedelta(days=7), visible=set())
    assert step.remove == ("mail",)
    assert step.rotation.published == ["mail-20260630"] and step.rotation.phase == STEADY


def test_a_forced_rotation_starts_now_and_never_two_phases_in_one_run():
    state = start("mail", T0)
    step = advance(state, POLICY, T0 + timedelta(days=1), visible={"mail"}, force=True)
    assert step.generate == "mail-20260102" and step.switch_to is None
    # even if the new record is visible and the TTL long past, the switch is a later run
    later = T0 + timedelta(days=30)
    step = advance(step.rotation, POLICY, later, visible={"mail", "mail-20260102"})
    assert step.switch_to is None
    step = advance(step.rotation, POLICY, later + timedelta(hours=2),
                   visible={"mail", "mail-20260102"})
    assert step.switch_to == "mail-20260102"


def test_never_rotates_with_zero_days_and_a_second_key_the_same_day_gets_a_suffix():
    never = Policy("mail", rotate_days=0, retire_days=7, ttl=300)
    step = advance(start("mail", T0), never, T0 + timedelta(days=5000), visible={"mail"})
    assert step.generate is None and step.waiting == ""
    first = advance(start("mail-20260101", T0), POLICY, T0, visible=set(), force=True)
    assert first.generate == "mail-20260101-2"


def test_the_dry_run_line_says_the_phase_and_the_next_step():
    step = advance(start("mail", T0), POLICY, T0 + timedelta(days=180), visible={"mail"})
    assert describe("example.com", step) == (
        "DKIM example.com: next key published, signing with mail; now: publish new key "
        "mail-20260630; next: mail-20260630 to be answered by every authoritative server")


# --- the wiring (mailhost.keys.dkim, desired records, the MTA modules, the check): state in ->
# records, tables and operations out ---

import pytest  # noqa: E402
from fakehost import FakeHost, Recorder, on  # noqa: E402
from sample import sample_settings  # noqa: E402

from mailhost.checks import OK, WARNING, CheckResult  # noqa: E402
from mailhost.checks.dns import with_rotation  # noqa: E402
from mailhost.host import chasquid, opendkim  # noqa: E402
from mailhost.keys import dkim  # noqa: E402
from mailhost.keys.rotation import from_json, to_json  # noqa: E402
from mailhost.keys.steps import KeySteps  # noqa: E402
from mailhost.operations import dkim as dkim_operations  # noqa: E402
from mailhost.zones.desired import desired_by_zone  # noqa: E402
from mailhost.zones.sync import mail_hosts  # noqa: E402

DOMAIN = "example.test"
NEW = "mail-20260630"


STEPS = KeySteps()  # the run's steps, as deploy.py keeps them in the MailRun


@pytest.fixture(autouse=True)
def no_step_left():
    """A step is kept per (host, domain) for the run: none leaks into another test."""
    yield
    STEPS.dkim.clear()


def walked_to(settings, days, visible=lambda *a: True, host_text=None):
    """The step of a deploy ``days`` after T0, the state saved as that deploy would."""
    step = dkim.rotation_step(settings, DOMAIN, host_text, None, visible,
                              now=T0 + timedelta(days=days))
    STEPS.keep_dkim(settings, DOMAIN, step)
    path = dkim.local_state_path(settings, DOMAIN)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = dkim.state_text(step, settings, DOMAIN)
    path.write_text(text)
    for selector in step.rotation.published:  # the key operation's work, done here
        key = dkim.local_key_path(settings, DOMAIN, "rsa", selector)
        if not key.exists():
            dkim.save_local_key(key, dkim.generate_key("rsa"))
    return step


def test_a_deploy_publishes_both_selectors_and_signs_with_the_old_until_the_switch(tmp_path):
    settings = sample_settings(secrets_dir=str(tmp_path), dns_ttl=3600)
    walked_to(settings, 0)  # the first deploy: the state starts with the plain selector
    step = walked_to(settings, 180)
    assert step.generate == NEW
    # the MTA still signs with the old key, both records are desired, both keys exist
    assert dkim.signing_selector(settings, DOMAIN, STEPS.dkim_step(settings, DOMAIN)) == "mail"
    assert opendkim.signing_keys(settings, STEPS)[DOMAIN] == (
        "mail._domainkey.example.test", "mail", "/etc/mailhost/dkim/example.test/mail.rsa.pem")
    (zone,) = desired_by_zone(mail_hosts({"vps": settings}, lambda host, path: None, steps=STEPS))
    dkim_records = {r.name: r.values[0] for r in zone.desired if "_domainkey" in r.name}
    assert set(dkim_records) == {f"mail._domainkey.{DOMAIN}", f"{NEW}._domainkey.{DOMAIN}"}
    assert all(v.startswith("v=DKIM1; k=rsa; p=MII") for v in dkim_records.values())
    assert len(set(dkim_records.values())) == 2
    # seen everywhere on the next deploy; twice the TTL later signing switches
    seen = walked_to(settings, 180.01)
    assert seen.switch_to is None and "signing switches to" in seen.waiting
    switched = walked_to(settings, 180.01 + 7200 / 86400)
    assert switched.switch_to == NEW
    assert opendkim.signing_keys(settings, STEPS)[DOMAIN][1] == NEW
    # dkim_retire_days later: the old record is deleted (owned in that run only), keys go
    removed = walked_to(settings, 188)
    assert removed.remove == ("mail",)
    (zone,) = desired_by_zone(mail_hosts({"vps": settings}, lambda host, path: None, steps=STEPS))
    assert [r.name for r in zone.desired if "_domainkey" in r.name] == [
        f"{NEW}._domainkey.{DOMAIN}"]
    assert (f"mail._domainkey.{DOMAIN}", "TXT") in zone.ownership.keys
    STEPS.dkim.clear()  # a later run (or scripts/check) reads the saved state
    assert dkim.signing_selector(settings, DOMAIN) == NEW
    (zone,) = desired_by_zone(mail_hosts({"vps": settings}, lambda host, path: None, steps=STEPS))
    assert (f"mail._domainkey.{DOMAIN}", "TXT") not in zone.ownership.keys


def test_no_switch_while_an_authoritative_server_lacks_the_new_record(tmp_path):
    settings = sample_settings(secrets_dir=str(tmp_path), dns_ttl=300)
    walked_to(settings, 0)
    walked_to(settings, 180)
    asked = []

    def not_yet(domain, selector, public):
        asked.append((domain, selector))
        return False
    for day in (181, 200):
        step = walked_to(settings, day, visible=not_yet)
        assert step.switch_to is None and step.rotation.signing == "mail"
    assert asked == [(DOMAIN, NEW), (DOMAIN, NEW)]  # only the waiting key is looked up
    assert describe(DOMAIN, step).endswith(f"next: {NEW} to be answered by every "
                                           "authoritative server")


def test_the_state_is_recovered_from_the_hosts_copy(tmp_path):
    settings = sample_settings(secrets_dir=str(tmp_path))
    state = start("mail", T0)
    host_copy = to_json(Rotation(state.keys + (Key(NEW, T0, seen=T0),), "mail"))
    step = dkim.rotation_step(settings, DOMAIN, host_copy, None, lambda *a: True,
                              now=T0 + timedelta(days=1))
    assert step.switch_to == NEW  # seen a day ago: the host's state carried on
    assert from_json(dkim.state_text(step, settings, DOMAIN))[0].signing == NEW


def test_scripts_rotate_dkim_marks_the_state_and_the_next_deploy_publishes_once(tmp_path):
    settings = sample_settings(secrets_dir=str(tmp_path))
    walked_to(settings, 0)
    dkim.request_rotation(settings, DOMAIN)
    assert from_json(dkim.local_state_path(settings, DOMAIN).read_text())[1] is True
    step = walked_to(settings, 3)
    assert step.generate == "mail-20260104"
    assert from_json(dkim.local_state_path(settings, DOMAIN).read_text())[1] is False
    with pytest.raises(ValueError, match="domain = other.test: expected one of mail_domains"):
        dkim.request_rotation(settings, "other.test")
    fresh = sample_settings(secrets_dir=str(tmp_path / "new"))
    with pytest.raises(ValueError, match="no DKIM rotation state in .*deploy once"):
        dkim.request_rotation(fresh, DOMAIN)


def test_never_rotates_with_zero_days(tmp_path):
    settings = sample_settings(secrets_dir=str(tmp_path), dkim_rotate_days=0)
    walked_to(settings, 0)
    assert walked_to(settings, 5000).generate is None


def test_the_lab_clock_is_read_only_in_a_lab(monkeypatch):
    monkeypatch.setenv(dkim.LAB_CLOCK, "2027-01-02T03:04:05+00:00")
    assert dkim.clock(sample_settings()) == datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
    for production in (sample_settings(lab_allowances=False, ipv4="192.0.0.9", ipv6=None),
                       sample_settings(ipv4="192.0.0.9")):  # lab_allowances left on
        assert abs(dkim.clock(production) - datetime.now(UTC)) < timedelta(minutes=1)


def test_chasquid_signs_with_the_rotations_key_only(tmp_path):
    settings = sample_settings(secrets_dir=str(tmp_path), mta="chasquid")
    walked_to(settings, 0)
    walked_to(settings, 180)
    hook = chasquid._hook_signing(settings, STEPS)[DOMAIN]
    assert hook == [("mail", "rsa-sha256", "/etc/mailhost/dkim/example.test/mail.rsa.pem")]
    # native chasquid signs with every dkim:*.pem link: the next key has none yet
    assert chasquid._dkim_links(settings, DOMAIN, STEPS) == [("rsa", "mail", True),
                                                             ("rsa", NEW, False)]
    walked_to(settings, 180.01)
    walked_to(settings, 181)
    assert chasquid._hook_signing(settings, STEPS)[DOMAIN][0][0] == NEW
    assert chasquid._dkim_links(settings, DOMAIN, STEPS) == [("rsa", NEW, True),
                                                             ("rsa", "mail", False)]


@pytest.fixture
def key_operations(monkeypatch):
    """The operations domain_keys calls, recorded by name."""
    calls = {name: Recorder(name) for name in ("key", "files_file", "forget", "local", "put")}
    monkeypatch.setattr(dkim_operations, "key", calls["key"])
    monkeypatch.setattr(dkim_operations.files, "file", calls["files_file"])
    monkeypatch.setattr(dkim_operations, "forget_local_key", calls["forget"])
    monkeypatch.setattr(dkim_operations, "local_file", calls["local"])
    monkeypatch.setattr(dkim_operations, "put_text", lambda *a, **k: calls["put"](**k))
    return calls


def walked_to_retirement(settings):
    """The step of the deploy that retires the old key (days 0, 180, 180.01, 181 before)."""
    for day in (0, 180, 180.01, 181):
        walked_to(settings, day)
    return walked_to(settings, 188.5)


def test_domain_keys_operations_delete_the_retired_key_and_save_the_state(tmp_path,
                                                                         key_operations):
    settings = sample_settings(secrets_dir=str(tmp_path))
    calls = key_operations
    dkim_operations.domain_keys(settings, DOMAIN, walked_to_retirement(settings),
                                owner="opendkim")
    assert calls["key"].names == [f"DKIM rsa key {NEW} of {DOMAIN}"]
    assert calls["files_file"].calls[0]["path"] == "/etc/mailhost/dkim/example.test/mail.rsa.pem"
    assert calls["files_file"].calls[0]["present"] is False
    assert calls["forget"].calls[0]["local_path"].endswith("/example.test/mail.rsa.pem")
    assert from_json(calls["local"].calls[0]["text"])[0].published == [NEW]
    assert calls["put"].names == [f"DKIM rotation state of {DOMAIN} on the host"]


def test_local_file_writes_only_a_difference(tmp_path):
    path = tmp_path / "rotation.json"
    host = FakeHost()
    with on(host):
        assert len(list(dkim_operations.local_file._inner(path=str(path), text="a\n"))) == 1
        path.write_text("a\n")
        assert list(dkim_operations.local_file._inner(path=str(path), text="a\n")) == []


def test_the_dkim_check_shows_an_unfinished_rotation_as_a_warning(tmp_path):
    settings = sample_settings(secrets_dir=str(tmp_path))
    passed = CheckResult("dns: DKIM", OK, "key", "rsa key sha256:1")
    walked_to(settings, 0)
    assert with_rotation(passed, settings, DOMAIN).status == OK
    walked_to(settings, 180)
    warned = with_rotation(passed, settings, DOMAIN)
    assert warned.status == WARNING and not warned.blocking
    assert warned.found == (f"rsa key sha256:1; rotation: {PUBLISHED} (published: mail, {NEW})")


# --- the whole walk through `pyinfra INVENTORY deploy.py` against a real Knot (the DNS half:
# mail_manage_host = False, as tests/test_cli.py), and scripts/rotate-dkim ---

from test_cli import ROOT, cli  # noqa: E402, F401  (the fixture)


def dkim_selectors(knot_world) -> list[str]:
    return sorted(name.split("._domainkey")[0] for name, rtype, *_ in knot_world.snapshot()
                  if "._domainkey" in name and rtype == "TXT")


def test_a_forced_rotation_walks_through_deploys_against_knot(cli, knot_world,  # noqa: F811
                                                              monkeypatch):
    code, output = cli("-y")
    assert code == 0 and "DKIM example.test: steady, signing with mail" in output, output
    asked = subprocess.run([sys.executable, "-m", "mailhost.cli.rotate_dkim", str(cli.inventory),
                            "example.test"], cwd=ROOT, capture_output=True, text=True)
    assert asked.returncode == 0 and "the next deploy publishes a new key" in asked.stdout
    now = datetime.now(UTC).replace(microsecond=0)
    new = f"mail-{now:%Y%m%d}"
    before = knot_world.zone_bytes()
    code, output = cli("--dry")
    assert f"DKIM example.test: next key published, signing with mail; now: publish new key " \
           f"{new}; next: {new} to be answered by every authoritative server" in output, output
    assert knot_world.zone_bytes() == before
    # (lab clock, what the run says, the selectors in Knot after it)
    for offset, said, selectors in [
            (timedelta(0), f"now: publish new key {new}", ["mail", new]),
            (timedelta(minutes=1), f"next: signing switches to {new} after", ["mail", new]),
            (timedelta(hours=2, minutes=1), f"now: sign with {new}; next: mail stays "
             "published", ["mail", new]),  # twice the TTL (3600 s) after it was seen
            (timedelta(days=7, hours=2, minutes=1), "now: remove mail;", [new]),
            (timedelta(days=7, hours=2, minutes=2), f"steady, signing with {new}", [new])]:
        monkeypatch.setenv("MAILHOST_LAB_NOW", (now + offset).isoformat())
        code, output = cli("-y")
        assert code == 0 and said in output, output
        assert dkim_selectors(knot_world) == selectors
    assert "= example.test: no DNS changes" in output
    total = [line for line in output.splitlines() if "Grand total" in line][0].split()
    assert total[3] == "-" and total[4] == "-", total  # the run after the walk changes nothing
    assert sorted(p.name for p in (cli.secrets_dir / "dkim" / "example.test").iterdir()) == [
        f"{new}.rsa.pem", "rotation.json"]


def test_an_unreadable_state_file_stops_the_run_with_one_line(cli, knot_world):  # noqa: F811
    state = cli.secrets_dir / "dkim" / "example.test" / "rotation.json"
    state.parent.mkdir(parents=True)
    state.write_text('{"signing": "gone", "keys": []}')
    before = knot_world.zone_bytes()
    code, output = cli("-y")
    assert code != 0
    assert (f"@local: DKIM rotation state {state} cannot be read (the signing selector gone "
            "is not one of its keys): restore it from a backup, or delete it to start again"
            ) in output, output[-2000:]
    assert knot_world.zone_bytes() == before


def test_the_controllers_key_files_are_written_and_a_retired_one_deleted_once(tmp_path):
    """The controller-side commands, run: the state file written; a retired key deleted, and
    on a later run (gone already) nothing but a note."""
    state, key = tmp_path / "rotation.json", tmp_path / "mail.rsa.pem"
    key.write_text("retired key")
    host = FakeHost()
    with on(host):
        [write] = dkim_operations.local_file._inner(path=str(state), text="{}\n")
        write.function(*write.args, **write.kwargs)
        [delete] = dkim_operations.forget_local_key._inner(local_path=str(key))
        delete.function(*delete.args, **delete.kwargs)
        assert list(dkim_operations.forget_local_key._inner(local_path=str(key))) == []
    assert state.read_text() == "{}\n" and not key.exists()
    assert host.noops == [f"{key} is gone already"]


def test_domain_keys_without_a_managed_host_touch_only_the_controller(tmp_path, key_operations):
    settings = sample_settings(secrets_dir=str(tmp_path), mail_manage_host=False)
    calls = key_operations
    dkim_operations.domain_keys(settings, DOMAIN, walked_to_retirement(settings),
                                owner="opendkim")
    assert calls["key"].calls[0]["remote_path"] is None
    assert calls["forget"].calls and calls["local"].calls
    assert calls["files_file"].calls == [] and calls["put"].calls == []
