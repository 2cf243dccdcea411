"""The smallest plan: the default world on a VPS capped at 1 GiB of memory with no swap
(``scripts/lab up --memory 1G``: a cgroup v1 memory group around the container). The deploy
passes with every check ok, the cap held (the peak stayed at or under it) and the kernel killed
nothing for want of memory."""

from __future__ import annotations

import json
import subprocess

import pytest
from lab_world import ROOT, deploy, fresh_lab, lab, status, world_env

pytestmark = pytest.mark.lab

WORLD = ("ubuntu-24.04", "postfix", "rfc2136", "http-01")  # image, MTA, DNS, ACME
GIB = 1 << 30


@pytest.fixture(scope="module")
def small_vps():
    info = fresh_lab(WORLD[0], "--memory", "1G")
    info["deploy"] = deploy(WORLD, "-y")
    yield info
    lab("down")


def test_the_vps_is_capped_at_1_gib_with_no_swap(small_vps):
    memory = small_vps["vps"]["memory"]
    assert memory["memory_max"] == GIB
    group = f"/sys/fs/cgroup/memory/{small_vps['vps']['netns']}"
    with open(f"{group}/memory.memsw.limit_in_bytes") as file:  # memory + swap: no swap
        assert int(file.read()) == GIB
    with open(f"{group}/cgroup.procs") as file:  # the container's processes are in it
        assert str(small_vps["processes"]["vps_init"]["pid"]) in file.read().split()


def test_the_default_world_deploys_and_passes_every_check_under_1_gib(small_vps):
    result = subprocess.run([str(ROOT / "scripts" / "check"), "inventory/lab.py", "--json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env=world_env(WORLD))
    entries = json.loads(result.stdout)
    assert result.returncode == 0 and len(entries) > 60
    assert [e["name"] for e in entries if e["status"] != "ok"] == []
    memory = status()["vps"]["memory"]
    print(f"\n1 GiB VPS after the deploy: peak {memory['memory_peak'] >> 20} MiB, "
          f"now {memory['memory_now'] >> 20} MiB")
    assert 0 < memory["memory_peak"] <= GIB and memory["oom_kills"] == 0
