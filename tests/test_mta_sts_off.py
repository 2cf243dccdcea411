"""MTA-STS turned off on a host that served it: nginx stopped and disabled, our nginx.conf and
policies removed, nothing on a host that never served one nor on a second run (facts in ->
operations out, see fakehost.py)."""

from __future__ import annotations

import pytest
from fakehost import FakeHost, Recorder, on
from pyinfra.operations import server
from sample import sample_settings

from mailhost import facts
from mailhost.dns.records import RecordSet
from mailhost.host import nginx, units
from mailhost.keys.dkim import generate_key, public_value
from mailhost.zones.notices import mta_sts_left_notices
from mailhost.zones.sync import ZoneSync, records_by_zone

FILE = {"type": "f", "user": "root", "group": "root", "mode": 644, "sha256": "x", "target": None}
DIRECTORY = {**FILE, "type": "d", "mode": 755, "sha256": None}
SERVED = {nginx.CONFIG: FILE, nginx.POLICY_DIR: DIRECTORY,
          f"{nginx.POLICY_DIR}/example.test.txt": FILE}  # what a host that served a policy has
RSA = public_value(generate_key("rsa", 2048))
RUNNING = {"nginx": {"active": True, "enabled": True}}
STOPPED = {"nginx": {"active": False, "enabled": False}}


@pytest.fixture
def shell(monkeypatch):
    recorder = Recorder("shell", [])
    monkeypatch.setattr(server, "shell", recorder)
    return recorder


def deploy_steps(settings, paths_found, unit_states) -> FakeHost:
    """What deploy.py does for nginx: read its roots, converge the units, remove the rest."""
    host = FakeHost({facts.PathStates: paths_found, facts.SystemdUnitStates: unit_states})
    with on(host):
        facts.read_paths(nginx.ROOTS)
        units.converge(running=[], stopped=nginx.stopped_units(settings))
        nginx.remove_leftovers(settings)
    return host


def test_off_on_a_host_that_served_stops_nginx_then_removes_its_files(shell):
    host = deploy_steps(sample_settings(), SERVED, RUNNING)
    assert shell.names == ["nginx stopped and disabled",
                           "MTA-STS off: nginx's configuration and the policies removed"]
    assert shell.calls[0]["commands"][0].get_raw_value().startswith(
        "systemctl disable --now nginx")
    # the policy directory, what says the host served one, goes last: a run stopped midway
    # is finished by the next
    assert shell.calls[1]["commands"] == [f"rm -f {nginx.CONFIG}", f"rm -rf {nginx.POLICY_DIR}"]
    assert [name for name, _ in host.fact_calls] == ["PathStates", "SystemdUnitStates"]


def test_a_second_run_and_a_host_that_never_served_get_no_operation(shell):
    deploy_steps(sample_settings(), {}, STOPPED)  # files gone, nginx stopped (still installed)
    deploy_steps(sample_settings(), {}, {})  # never had nginx
    assert shell.calls == []


def test_an_nginx_of_the_hosts_own_is_left_alone(shell):
    # nginx.conf there but never our policy directory: not ours to stop or remove
    deploy_steps(sample_settings(), {nginx.CONFIG: FILE}, RUNNING)
    assert shell.calls == []


def test_stopped_already_only_the_files_go(shell):
    deploy_steps(sample_settings(), SERVED, STOPPED)  # a run stopped after the stop
    assert shell.names == ["MTA-STS off: nginx's configuration and the policies removed"]


def test_with_mta_sts_on_nothing_is_retired(shell):
    for mode in ("none", "testing", "enforce"):
        settings = sample_settings(mta_sts_mode=mode)
        assert nginx.stopped_units(settings) == []
        deploy_steps(settings, SERVED, RUNNING)
    assert shell.calls == []


# the DNS plan: "off" leaves the records (not owned any more), and says so when they announce
# the policy this host served (RFC 8461 8.3)

@pytest.fixture(params=["knot_world", "cloudflare_world"])
def world(request):
    return request.getfixturevalue(request.param)


def zone_sync(world, tmp_path, **overrides) -> ZoneSync:
    """example.test's records for one host (dkim_key: any public key, no DANE)."""
    settings = sample_settings(secrets_dir=str(tmp_path), dane="off", **overrides)
    (records,) = records_by_zone({"mail": settings}, lambda host, path: RSA)
    return ZoneSync(records, world.provider())


def mta_sts_notices(plan) -> list[str]:
    return [n for n in plan.notices if n.startswith("mta_sts_mode is off")]


def test_off_leaves_the_records_of_a_served_policy_and_the_plan_says_so(world, tmp_path):
    never = zone_sync(world, tmp_path).plan()
    assert mta_sts_notices(never) == []  # never served a policy: nothing to say
    served = zone_sync(world, tmp_path, mta_sts_mode="enforce")
    served.apply(served.plan())
    before = world.snapshot()
    off = zone_sync(world, tmp_path).plan()
    assert off.empty  # not blocked, nothing deleted: "off" owns no MTA-STS record
    (line,) = mta_sts_notices(off)
    assert line.startswith("mta_sts_mode is off for example.test, but _mta-sts.example.test TXT "
                           "and mta-sts.example.test still announce")
    assert 'mta_sts_mode "none" for mta_sts_max_age first' in line and "\n" not in line
    assert f"  ! NOTICE   {line}" in off.lines()
    assert world.snapshot() == before


def test_records_of_a_policy_served_elsewhere_get_no_notice():
    elsewhere = [RecordSet("mta-sts.example.test", "A", 300, ("198.51.100.77",)),
                 RecordSet("_mta-sts.example.test", "TXT", 300, ("v=STSv1; id=1",))]
    off = (("example.test", ("198.51.100.10", "2001:db8::10")),)
    assert mta_sts_left_notices(off, elsewhere) == []
    ours = [RecordSet("mta-sts.example.test", "AAAA", 300, ("2001:db8::10",)), elsewhere[1]]
    assert len(mta_sts_left_notices(off, ours)) == 1
    assert mta_sts_left_notices(off, ours[:1]) == []  # the TXT deleted by hand: done
