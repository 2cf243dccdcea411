"""The lab for every lab test module, in one place: the lane this test process uses, how lab
tests are grouped for pytest-xdist, and the helpers they share (``scripts/lab``, its status,
ssh to the VPS, pyinfra in a world, the zone as Knot serves it).

Lanes: conftest.py sets MAILHOST_LAB_LANE from the xdist worker (gw0 -> lane 0, gw1 -> lane
1...) before anything imports the lab, so every ``scripts/lab``, ``pyinfra inventory/lab.py``
and ``lab.*`` import of a worker is that lane's, with its own addresses (``VPS4`` below...).
Scheduling: with ``--dist loadscope`` (scripts/test) xdist's unit of work is ``work_unit``: a
lab module's world (every test whose id names it), else the module; so each world is set up
once, in one worker, on one lane, and the units with most tests start first. (Not xdist_group
markers with ``--dist loadgroup``: xdist 3.8 under pytest 9.2 leaves their ids unmarked and
runs every test as a unit of its own, which set each world up once per worker.)
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import tomllib
from pathlib import Path

import dns.query
import dns.tsigkeyring
import pytest

from lab.common import HOST4, HOST6, LANE, MAIL_HOSTNAME, RX4, RX6, VPS4, VPS6

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
HOSTNAME = MAIL_HOSTNAME
RECEIVER = {4: RX4, 6: RX6}
# a world's id (world_id): image, MTA, DNS provider, ACME challenge
WORLD_ID = re.compile(r"(ubuntu-\d\d\.\d\d|debian-\d+)-(postfix|chasquid)"
                      r"-(rfc2136|cloudflare|powerdns)-(http|dns)-01")
__all__ = ["HOST4", "HOST6", "LANE", "RX4", "RX6", "VPS4", "VPS6"]


def world_id(world) -> str:
    return "-".join(world)


def work_unit(nodeid: str) -> str:
    """What xdist runs in one worker: the world a test id names (module:world), else the
    test's module."""
    module = nodeid.split("::")[0]
    world = WORLD_ID.search(nodeid.partition("[")[2])
    return f"{module}:{world.group(0)}" if world else module


@pytest.hookimpl(optionalhook=True)  # xdist's hook: unknown when xdist is not loaded
def pytest_xdist_make_scheduler(config, log):
    """With ``--dist loadscope``: xdist's scope scheduling, its scopes being work_unit's."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WorldScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return WorldScheduling(config, log)


def lab(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    """``scripts/lab ARGS`` in this process's lane."""
    return subprocess.run([str(ROOT / "scripts" / "lab"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=check)


def status() -> dict:
    """``scripts/lab status --json``."""
    return json.loads(lab("status", "--json", check=False).stdout)


def ssh(command: str, host: str = HOSTNAME, timeout: float = 120,
        stdin: str | None = None) -> str:
    """COMMAND as root on the VPS; its standard output."""
    return subprocess.run(["ssh", "-F", status()["vps"]["ssh_config"], host, command],
                          input=stdin, capture_output=True, text=True, timeout=timeout).stdout


def world_env(world, **more: str) -> dict:
    """The environment that makes inventory/lab.py this world's (MTA, DNS provider, challenge).

    + world: (image, MTA, DNS provider, ACME challenge), or a world fixture's status dict
      holding it under "world"
    """
    _, mta, provider, challenge = world["world"] if isinstance(world, dict) else world
    return dict(os.environ, MAILHOST_LAB_MTA=mta, MAILHOST_LAB_PROVIDER=provider,
                MAILHOST_LAB_ACME_CHALLENGE=challenge, **more)


def run_in_world(world, *command: str, env: dict | None = None) -> tuple[int, str]:
    """COMMAND (pyinfra ..., scripts/check ...) in this world: exit status, output."""
    result = subprocess.run(list(command), cwd=ROOT, capture_output=True, text=True,
                            timeout=900, env=env or world_env(world))
    return result.returncode, result.stdout + result.stderr


def pyinfra(world, *args: str, env: dict | None = None) -> tuple[int, str]:
    """``pyinfra inventory/lab.py deploy.py ARGS`` in this world: exit status, output."""
    return run_in_world(world, PYINFRA, "inventory/lab.py", "deploy.py", *args, env=env)


def deploy(world, *args: str) -> str:
    """``pyinfra inventory/lab.py deploy.py ARGS`` in this world; its output (it must pass)."""
    code, output = pyinfra(world, *args)
    assert code == 0, output[-4000:]
    return output


def fresh_lab(image: str, *more: str) -> dict:
    """The lane's lab taken down and brought up again with a new VPS of IMAGE; its status."""
    lab("down")
    lab("up", "--image", image, *more)
    return status()


def secrets(info: dict) -> dict:
    """The lab's secrets file (TSIG secret, passwords...)."""
    return tomllib.loads(Path(info["secrets_file"]).read_text())


def zone_text(info: dict, zone: str = "example.test") -> str:
    """ZONE as Knot serves it (AXFR with the lab's key), one RRset a line."""
    keyring = dns.tsigkeyring.from_text({info["dns"]["tsig_key_name"]:
                                         secrets(info)["tsig_secret"]})
    messages = dns.query.xfr(info["dns"]["server"], zone, keyring=keyring,
                             keyname=info["dns"]["tsig_key_name"])
    return "\n".join(str(rrset) for message in messages for rrset in message.answer)


def tls_context(info: dict) -> ssl.SSLContext:
    """A client context trusting what the lab's ACME CA (Pebble) issues."""
    return ssl.create_default_context(cafile=info["acme"]["root_ca_file"])
