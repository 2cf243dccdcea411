"""Several VPS in one lab (``scripts/lab up --vps 3``): each with its own name, addresses, PTR
records and SSH entry, listed in ``status --json``; ``inventory/lab-fleet.py`` deploys the
three in one pyinfra run and each passes its own checks; ``ssh --host``, ``reboot --host`` and
``up --fresh --host`` reach one VPS and leave the others alone. (What a fleet means for mail,
a backup MX holding mail and domains moved between hosts, is the fleet's own work.)"""

from __future__ import annotations

import json
import subprocess

import dns.resolver
import dns.reversename
import pytest
from lab_world import HOST4, PYINFRA, ROOT, lab, status, world_env

from lab.common import FLEET

pytestmark = pytest.mark.lab

WORLD = ("ubuntu-24.04", "postfix", "rfc2136", "http-01")  # image, MTA, DNS, ACME
INVENTORY = "inventory/lab-fleet.py"


@pytest.fixture(scope="module")
def fleet():
    lab("down")
    lab("up", "--image", WORLD[0], "--vps", "3")
    info = status()
    result = subprocess.run([PYINFRA, "-y", INVENTORY, "deploy.py"], cwd=ROOT,
                            capture_output=True, text=True, timeout=1500, env=world_env(WORLD))
    info["deploy"] = (result.returncode, result.stdout + result.stderr)
    yield info
    lab("down")


def lab_ssh(host: str, command: str) -> str:
    return lab("ssh", "--host", host, command, timeout=60).stdout


def test_status_lists_every_vps_with_its_own_names_and_addresses(fleet):
    hosts = fleet["hosts"]
    assert [h["hostname"] for h in hosts] == [v.hostname for v in FLEET]
    assert fleet["vps"] == hosts[0]
    assert len({h["ipv4"] for h in hosts}) == len({h["ipv6"] for h in hosts}) == 3
    assert len({h["netns"] for h in hosts}) == 3
    assert fleet["running"] is True
    assert set(fleet["cloudflare"]["zones"]) == {"example.test", "shop.test"}
    assert "shop.test" in fleet["dns"]["zones"]


def test_each_vps_answers_ssh_as_itself_and_has_its_ptr(fleet):
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [HOST4]
    for host in fleet["hosts"]:
        assert lab_ssh(host["hostname"], "hostname -f").strip() == host["hostname"]
        for address in (host["ipv4"], host["ipv6"]):
            answer = resolver.resolve(dns.reversename.from_address(address), "PTR")
            assert [r.to_text() for r in answer] == [host["hostname"] + "."]


def test_the_fleet_inventory_deploys_all_three_and_each_passes_its_checks(fleet):
    code, output = fleet["deploy"]
    assert code == 0, output[-4000:]
    result = subprocess.run([str(ROOT / "scripts" / "check"), INVENTORY, "--json"], cwd=ROOT,
                            capture_output=True, text=True, timeout=900, env=world_env(WORLD))
    entries = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr[-2000:]
    assert {e["host"] for e in entries} == {v.hostname for v in FLEET}
    failed = [(e["host"], e["name"]) for e in entries if e["status"] == "failed"]
    assert failed == []


def test_reboot_and_rebuild_reach_one_vps_only(fleet):
    before = status()["processes"]
    shop = FLEET[2]
    lab_ssh(shop.hostname, "touch /root/was-here")
    lab("reboot", "--host", FLEET[1].hostname)
    after_reboot = status()["processes"]
    assert after_reboot[FLEET[1].key]["pid"] != before[FLEET[1].key]["pid"]
    assert after_reboot[FLEET[0].key] == before[FLEET[0].key]
    lab("up", "--fresh", "--host", shop.hostname)
    after = status()
    assert after["processes"][shop.key]["pid"] != before[shop.key]["pid"]
    assert after["processes"][FLEET[0].key] == before[FLEET[0].key]
    assert lab_ssh(shop.hostname, "test -e /root/was-here || echo new").strip() == "new"
    assert len(after["hosts"]) == 3 and after["running"] is True
