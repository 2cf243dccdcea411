"""Lab lanes share nothing: each has its own address blocks (inside the documentation ranges,
never the machine's own), its own name prefix, state directory and lock; a lane held by
another checkout's running lab is refused with one line; a bad lane number too."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lab_world import work_unit, world_id
from test_mail_lab import WORLDS as MAIL_WORLDS

from lab import lab as lab_module
from lab.common import FLEET, LANES, LabError, Lane, Paths, Proc, save_state

FORBIDDEN = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "203.0.113.0/24", "fd00::/64")]
LANE_LIST = [Lane(n) for n in range(LANES)]


def test_there_are_at_least_four_lanes_each_with_blocks_of_its_own():
    assert LANES >= 4
    nets4 = [ipaddress.ip_network(lane.net4) for lane in LANE_LIST]
    nets6 = [ipaddress.ip_network(lane.net6) for lane in LANE_LIST]
    for nets, home in ((nets4, "198.51.100.0/24"), (nets6, "2001:db8::/32")):
        assert all(net.subnet_of(ipaddress.ip_network(home)) for net in nets)
        assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
    assert not any(net.overlaps(bad) for net in nets4 + nets6 for bad in FORBIDDEN
                   if net.version == bad.version)


def test_every_address_of_a_lane_is_inside_its_blocks():
    for lane in LANE_LIST:
        for host in (1, 20, 30, *(vps.number for vps in FLEET)):
            assert ipaddress.ip_address(lane.ipv4(host)) in ipaddress.ip_network(lane.net4)
            assert ipaddress.ip_address(lane.ipv6(host)) in ipaddress.ip_network(lane.net6)
    assert (Lane(0).ipv4(10), Lane(0).ipv6(10)) == ("198.51.100.10", "2001:db8::10")


def test_lanes_name_everything_with_prefixes_that_cannot_match_each_other():
    prefixes = [lane.prefix for lane in LANE_LIST]
    assert not any(a.startswith(b) for a in prefixes for b in prefixes if a != b)
    longest = max(len(f"{lane.prefix}{vps.key}0") for lane in LANE_LIST for vps in FLEET)
    assert longest <= 15  # a Linux interface name


def test_each_lane_has_its_own_state_directory(tmp_path):
    roots = {Paths.for_checkout(tmp_path, lane).root for lane in LANE_LIST}
    assert len(roots) == LANES


@pytest.mark.parametrize("value", ["4", "-1", "one", "0 1"])
def test_a_bad_lane_number_is_one_line_naming_the_variable(value):
    result = subprocess.run([sys.executable, "-c", "import lab.common"], capture_output=True,
                            text=True, env=dict(os.environ, MAILHOST_LAB_LANE=value))
    assert result.returncode != 0
    assert f"MAILHOST_LAB_LANE={value!r}: expected a lane number from 0 to 3" in result.stderr


def test_a_lane_held_by_another_checkouts_running_lab_is_refused(tmp_path, monkeypatch):
    owner = tmp_path / "lane.checkout"
    monkeypatch.setattr(lab_module, "owner_file", lambda: owner)
    other = Paths(tmp_path / "other" / ".lab" / "lane-0")
    mine = Paths(tmp_path / "mine" / ".lab" / "lane-0")
    save_state(other, {"procs": {"knot": Proc.of(os.getpid()).to_json()}})  # alive
    owner.write_text(f"{other.root}\n")
    with pytest.raises(LabError, match=r"lane \d is in use by the lab in .*other.*: take it "
                                       r"down there, or use another lane here"):
        lab_module.claim_lane(mine)
    assert Path(owner.read_text().strip()) == other.root  # untouched
    save_state(other, {"procs": {}})  # that lab is down: the lane is free
    lab_module.claim_lane(mine)
    assert Path(owner.read_text().strip()) == mine.root
    lab_module.release_lane(other)  # not the holder: nothing happens
    assert owner.exists()
    lab_module.release_lane(mine)
    assert not owner.exists()


def test_down_from_another_checkout_leaves_a_running_lab_alone(tmp_path, monkeypatch):
    """``down`` in a lane held by another checkout's running lab stops nothing of it."""
    owner = tmp_path / "lane.checkout"
    monkeypatch.setattr(lab_module, "owner_file", lambda: owner)
    monkeypatch.setattr(lab_module, "locked", lambda paths: contextlib.nullcontext())
    deleted = []
    monkeypatch.setattr(lab_module.network, "down", deleted.append)
    # were the guard to fail, nothing of a real lab on this machine is touched
    monkeypatch.setattr(lab_module.network, "lab_namespaces", lambda: [])
    monkeypatch.setattr(lab_module, "stop_vps", lambda *args: deleted.append(args))
    monkeypatch.setattr(lab_module, "COMPONENTS", [])
    monkeypatch.setattr(lab_module.vps, "remove_rootfs", lambda *args: None)
    monkeypatch.setattr(lab_module.backup_target, "remove_repository", lambda *args: None)
    monkeypatch.setattr(lab_module.apt_cache, "stop_unless_used", lambda *args: None)
    other = Paths(tmp_path / "other" / ".lab" / "lane-0")
    mine = Paths(tmp_path / "mine" / ".lab" / "lane-0")
    save_state(other, {"procs": {"knot": Proc.of(os.getpid()).to_json()}})  # alive
    owner.write_text(f"{other.root}\n")
    with pytest.raises(LabError, match=r"lane \d is in use by the lab in .*other.*: take it "
                                       r"down there"):
        lab_module.down(mine)
    assert deleted == []
    assert Path(owner.read_text().strip()) == other.root


def test_test_ids_do_not_depend_on_the_lane():
    """pytest-xdist requires every worker (each its own lane) to collect the same test ids: no
    id may hold a lane's address."""
    root = Path(__file__).resolve().parent.parent

    def ids(lane: int) -> list[str]:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
             "-p", "no:xdist", *sorted(str(p) for p in (root / "tests").glob("test_*lab*.py"))],
            cwd=root, capture_output=True, text=True, timeout=120,
            env=dict(os.environ, MAILHOST_LAB_LANE=str(lane), PYTEST_XDIST_WORKER=""))
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return [line for line in result.stdout.splitlines() if "::" in line]

    first = ids(0)
    assert len(first) > 100 and ids(LANES - 1) == first
    # and xdist's units (lab_world.work_unit): one per world of a module, else the module
    units = {work_unit(nodeid) for nodeid in first}
    mail_worlds = {unit for unit in units if unit.startswith("tests/test_mail_lab.py")}
    assert mail_worlds == {f"tests/test_mail_lab.py:{world_id(w)}" for w in MAIL_WORLDS}
    assert "tests/test_lab.py" in units and "tests/test_fleet_lab.py" in units
