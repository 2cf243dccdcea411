"""Several VPS in one lab (``scripts/lab up --vps 3``): each with its own name, addresses, PTR
records and SSH entry, listed in ``status --json``; ``inventory/lab-fleet.py`` deploys the
three in one pyinfra run and each passes its own checks; ``ssh --host``, ``reboot --host`` and
``up --fresh --host`` reach one VPS and leave the others alone. mx2.example.test is the backup
MX of example.test (backup_mx_for): MX 20 beside mail.example.test's 10, in the domain's
MTA-STS policy; it refuses unknown recipients at RCPT, holds mail while the mail host is down and
hands it over, once, when it is back."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import time

import dns.resolver
import dns.reversename
import pytest
from lab_world import HOST4, PYINFRA, ROOT, lab, status, world_env, zone_text

from lab.common import FLEET
from mailhost.checks import inbound
from mailhost.dns import mta_sts

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
    failed = [line for line in output.splitlines() if "  fail  " in line or "failed:" in line]
    assert code == 0, "\n".join(failed) + "\n" + output[-3000:]
    result = subprocess.run([str(ROOT / "scripts" / "check"), INVENTORY, "--json"], cwd=ROOT,
                            capture_output=True, text=True, timeout=900, env=world_env(WORLD))
    entries = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr[-2000:]
    assert {e["host"] for e in entries} == {v.hostname for v in FLEET}
    failed = [(e["host"], e["name"]) for e in entries if e["status"] == "failed"]
    assert failed == []


def test_the_mx_of_example_test_is_its_mail_host_then_its_backup(fleet):
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [HOST4]
    answer = resolver.resolve("example.test", "MX")
    assert sorted(r.to_text() for r in answer) == [
        f"10 {FLEET[0].hostname}.", f"20 {FLEET[1].hostname}."]


def test_the_mta_sts_policy_of_example_test_names_both_mx_hosts(fleet):
    """Served by the mail host (mta-sts.example.test points there), verified by Pebble's root."""
    context = ssl.create_default_context(cafile=fleet["acme"]["root_ca_file"])
    name = mta_sts.policy_host("example.test")
    connection = http.client.HTTPSConnection(name, 443, timeout=30, context=context)
    raw = socket.create_connection((FLEET[0].ipv4, 443), timeout=30)
    connection.sock = context.wrap_socket(raw, server_hostname=name)
    connection.request("GET", mta_sts.POLICY_PATH)
    policy = mta_sts.parse_policy(connection.getresponse().read().decode())
    assert policy["mx"] == [FLEET[0].hostname, FLEET[1].hostname]


def offer_to_backup(recipient: str, address: str = "") -> tuple[str, int, str]:
    """One message from outside (the lab bridge) to the backup MX's port 25."""
    message_id = f"<{time.time_ns()}@example.org>"
    message = (f"From: friend@example.org\r\nTo: {recipient}\r\nSubject: held for you\r\n"
               f"Message-ID: {message_id}\r\n\r\nWhile your server was away.\r\n")
    code, reply = inbound.offer(address or FLEET[1].ipv4, "mx.example.org",
                                "friend@example.org", recipient, message, 60)
    return message_id, code, reply


def stored(message_id: str) -> list[str]:
    """The mail host's message files (any user, any folder) holding MESSAGE_ID."""
    return lab_ssh(FLEET[0].hostname,
                   "find /var/mail/vhosts -type f \\( -path '*/new/*' -o -path '*/cur/*' \\) "
                   f"-exec grep -lF '{message_id}' {{}} + 2>/dev/null").split()


def test_the_backup_refuses_unknown_recipients_at_rcpt(fleet):
    for address in (FLEET[1].ipv4, FLEET[1].ipv6):
        _, code, reply = offer_to_backup("nobody-here@example.test", address)
        assert 500 <= code < 600, (address, code, reply)


def test_the_backup_holds_mail_while_the_mail_host_is_down_and_hands_it_over_once(fleet):
    primary, backup = FLEET[0].hostname, FLEET[1].hostname
    lab_ssh(primary, "systemctl stop postfix")
    try:
        message_id, code, reply = offer_to_backup("alice@example.test")
        assert 200 <= code < 300, (code, reply)
        time.sleep(5)  # its first delivery attempt, refused by the stopped mail host
        queue = lab_ssh(backup, "postqueue -j")
        held = [json.loads(line) for line in queue.splitlines() if line.strip()]
        assert [r["address"] for m in held for r in m["recipients"]] == ["alice@example.test"]
        assert stored(message_id) == []
    finally:
        lab_ssh(primary, "systemctl start postfix")
    # the mail host asks for it when Postfix starts (ETRN): no waiting for the backup's retry
    deadline = time.monotonic() + 120
    while not stored(message_id) and time.monotonic() < deadline:
        time.sleep(2)
    files = stored(message_id)
    assert len(files) == 1 and "/example.test/alice/" in files[0], files
    assert lab_ssh(backup, "postqueue -j").strip() == ""


def test_a_run_limited_to_the_backup_changes_no_record_of_the_other_hosts(fleet):
    """--limit mx2.example.test: mx2 applies example.test (its first serving host in the run),
    the mail host's records still count, nothing of any zone changes; --dry says who was
    counted."""
    def zones():
        return {zone: sorted(line for line in zone_text(fleet, zone).splitlines()
                             if " RRSIG " not in line and " NSEC" not in line
                             and " SOA " not in line)
                for zone in ("example.test", "shop.test")}
    before = zones()
    env = world_env(WORLD)
    limit = ["--limit", FLEET[1].hostname]
    dry = subprocess.run([PYINFRA, "-y", INVENTORY, "deploy.py", "--dry", *limit], cwd=ROOT,
                         capture_output=True, text=True, timeout=900, env=env)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert (f"hosts counted: {FLEET[1].hostname} (in this run), {FLEET[0].hostname} (not in "
            "this run" in dry.stdout + dry.stderr)
    result = subprocess.run([PYINFRA, "-y", INVENTORY, "deploy.py", *limit], cwd=ROOT,
                            capture_output=True, text=True, timeout=900, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "example.test: no DNS changes" in output
    assert zones() == before


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
