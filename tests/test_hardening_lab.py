"""The hardened host in the lab (Postfix, RFC 2136, HTTP-01): ufw denies incoming but SSH, 25,
465, 587 and IMAP, and a firewall of its own is reset; VRFY is refused; password hashes have random
salts, a second deploy changes nothing, a password change rewrites exactly that user's hash,
and no password or salt is ever on a command line; AUTH brute force on 587 is cut off.

Run under the lab lock:  flock /tmp/mailhost-lab.lock .venv/bin/python -m pytest \
tests/test_hardening_lab.py"""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import threading
import time
from pathlib import Path

import pytest
from lab_world import HOST4, HOSTNAME, VPS4, deploy, fresh_lab, lab, secrets, ssh, tls_context
from passlib.hash import sha512_crypt
from secrecy import leaked

from mailhost.host.users import parse_dovecot_users

pytestmark = pytest.mark.lab

USERS_FILE = "/etc/dovecot/mailhost-users"
NEW_PASSWORD = "a new password for bob, 2026"
WORLD = ("ubuntu-24.04", "postfix", "rfc2136", "http-01")  # image, MTA, DNS, ACME


@pytest.fixture(scope="module")
def lab_host():
    status = fresh_lab(WORLD[0])
    status["world"] = WORLD
    status["passwords"] = secrets(status)["passwords"]
    status["first_deploy"] = deploy(status, "-y")
    yield status
    lab("down")


def hashes() -> dict[str, str]:
    """The hash of each user in Dovecot's passwd-file (user:{SCHEME}hash:uid:gid::home::)."""
    return parse_dovecot_users(ssh(f"cat {USERS_FILE}").splitlines())


def no_change(output: str) -> bool:
    total = [line for line in output.splitlines() if "Grand total" in line][0].split()
    return total[3] == "-" and total[4] == "-"


class CommandLines:
    """Every command line on the controller, sampled from /proc while a deploy runs."""

    def __init__(self):
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        self.seen.add((entry / "cmdline").read_bytes().replace(b"\0", b" ")
                                      .decode(errors="replace"))
                    except OSError:
                        pass
            time.sleep(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_hashes_use_random_salts_and_verify(lab_host):
    found = hashes()
    assert set(found) == {"alice@example.test", "bob@example.test"}
    salts = {h.split("$")[3] if h.startswith("$6$rounds=") else h.split("$")[2]
             for h in found.values()}
    assert len(salts) == 2 and all(len(salt) >= 16 for salt in salts)
    for address, value in found.items():
        assert sha512_crypt.verify(lab_host["passwords"][address], value)
    assert "openssl passwd" not in lab_host["first_deploy"]


def test_second_deploy_changes_nothing(lab_host):
    before = hashes()
    output = deploy(lab_host, "-y")
    assert no_change(output), output[-2000:]
    assert hashes() == before


def test_password_change_rewrites_only_that_users_hash_and_no_secret_on_a_command_line(
        lab_host, monkeypatch):
    before = hashes()
    monkeypatch.setenv("MAILHOST_PASSWORD_BOB_EXAMPLE_TEST", NEW_PASSWORD)
    with CommandLines() as commands:
        output = deploy(lab_host, "-y", "-vv")  # -vv: every command pyinfra runs is shown
    after = hashes()
    assert after["alice@example.test"] == before["alice@example.test"]
    assert after["bob@example.test"] != before["bob@example.test"]
    assert sha512_crypt.verify(NEW_PASSWORD, after["bob@example.test"])
    secrets = {"new password": NEW_PASSWORD,
               **{f"password of {user}": p for user, p in lab_host["passwords"].items()},
               **{f"salt of {user}": h.split("$")[-2] for user, h in after.items()}}
    assert len(commands.seen) > 10
    assert leaked(secrets, *commands.seen, output) == []
    with smtplib.SMTP(VPS4, 587, timeout=30) as client:
        client._host = HOSTNAME
        client.starttls(context=tls_context(lab_host))
        client.login("bob@example.test", NEW_PASSWORD)
    monkeypatch.delenv("MAILHOST_PASSWORD_BOB_EXAMPLE_TEST")
    deploy(lab_host, "-y")  # back to the lab's password for the tests after this one


# SSH, SMTP, IMAP: 993, and 143 because the lab sets imap_starttls, and ManageSieve
MAIL_PORTS = {"22/tcp", "25/tcp", "465/tcp", "587/tcp", "993/tcp", "143/tcp", "4190/tcp",
              "443/tcp"}  # the lab serves MTA-STS


def ufw_rules(port: int = 22) -> tuple[list[str], set[str]]:
    lines = [line.strip() for line in ssh_on(port, "ufw status verbose").stdout.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("--")) + 1
    return lines[:start], {line.split()[0] for line in lines[start:] if line}


def test_ufw_denies_incoming_but_ssh_and_mail_ports_and_resets_a_firewall_of_its_own(lab_host):
    head, ports = ufw_rules()
    assert "Status: active" in head
    assert any(line.startswith("Default: deny (incoming), allow (outgoing)") for line in head)
    assert ports == MAIL_PORTS
    ssh(f"ufw allow 8080/tcp && ufw allow from {HOST4} to any port 3306 && "
        "ufw default allow incoming")
    assert "8080/tcp" in ufw_rules()[1]
    output = deploy(lab_host, "-y")
    assert "Firewall: deny incoming but SSH (22)" in output
    head, ports = ufw_rules()
    assert any(line.startswith("Default: deny (incoming)") for line in head)
    assert ports == MAIL_PORTS
    assert no_change(deploy(lab_host, "-y"))


SSH_ON_2222 = "/etc/ssh/sshd_config.d/50-port-2222.conf"
# Ubuntu 24.04 starts sshd from ssh.socket, whose ports a generator reads from sshd_config
RESTART_SSH = ("systemctl daemon-reload && if systemctl is-active -q ssh.socket; then "
               "systemctl restart ssh.socket; else systemctl restart ssh.service; fi")


def ssh_on(port: int, command: str, timeout: int = 60) -> subprocess.CompletedProcess:
    status = json.loads(lab("status", "--json").stdout)
    return subprocess.run(["ssh", "-F", status["vps"]["ssh_config"], "-p", str(port), HOSTNAME,
                           command], capture_output=True, text=True, timeout=timeout)


def on_port(known_host: str, port: int) -> str:
    """A known_hosts line for the same keys as ssh names them on another port."""
    names, key = known_host.split(maxsplit=1)
    return ",".join(f"[{name}]:{port}" for name in names.split(",")) + f" {key}\n"


def test_a_host_whose_ssh_moved_to_2222_is_deployed_through_it_and_not_locked_out(lab_host,
                                                                                  monkeypatch):
    """The user moved sshd to 2222 (and let it through their firewall) before the deploy: the
    deploy, connecting on 2222, keeps 2222 open and closes 22; a second run changes nothing."""
    known_hosts = Path(json.loads(lab("status", "--json").stdout)["vps"]["ssh_known_hosts"])
    before = known_hosts.read_text()
    ssh(f"printf 'Port 22\\nPort 2222\\n' > {SSH_ON_2222} && ufw allow 2222/tcp && "
        + RESTART_SSH)
    try:
        known_hosts.write_text(before + "".join(map(lambda line: on_port(line, 2222),
                                                    before.splitlines())))
        assert ssh_on(2222, "true").returncode == 0
        monkeypatch.setenv("MAILHOST_LAB_SSH_PORT", "2222")  # inventory/lab.py's ssh_port
        output = deploy(lab_host, "-y")
        assert "Firewall: deny incoming but SSH (2222)" in output
        assert ufw_rules(port=2222)[1] == MAIL_PORTS - {"22/tcp"} | {"2222/tcp"}
        assert ssh_on(22, "true", timeout=30).returncode != 0  # 22 is closed now
        assert no_change(deploy(lab_host, "-y"))
    finally:  # back as the deploy leaves a host on 22 (through 2222, the one way in)
        ssh_on(2222, f"ufw allow 22/tcp; ufw delete allow 2222/tcp; rm -f {SSH_ON_2222}; "
               + RESTART_SSH)
        known_hosts.write_text(before)
    assert ufw_rules()[1] == MAIL_PORTS


def test_vrfy_is_refused(lab_host):
    with smtplib.SMTP(VPS4, 25, timeout=30) as client:
        client.ehlo("probe.example.org")
        code, reply = client.verify("alice@example.test")
    assert code == 502, reply
    assert b"disabled" in reply.lower()


def test_auth_brute_force_on_587_is_delayed_then_refused(lab_host):
    """Runs last: afterwards this client may not AUTH for a minute."""
    failures, delays, refusal = 0, [], None
    began = time.monotonic()
    while refusal is None and failures < 40:
        with smtplib.SMTP(VPS4, 587, timeout=60) as client:
            client._host = HOSTNAME
            client.starttls(context=tls_context(lab_host))
            client.ehlo("probe.example.org")
            for _ in range(5):
                started = time.monotonic()
                code, reply = client.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABndWVzcw==")
                if code == 535:
                    failures += 1
                    delays.append(time.monotonic() - started)
                    continue
                refusal = (code, reply.decode(errors="replace"))
                break
    print(f"\nAUTH brute force: {failures} failures, delays {min(delays):.1f}-"
          f"{max(delays):.1f} s each, then {refusal}")
    # Postfix counts AUTH per client in windows of anvil_rate_time_unit (60 s), 12 in each. A
    # window starts at the client's first AUTH, which may be an earlier test's, so it is not
    # aligned with this test: a run of T seconds (each failure costs 2 s or more, Dovecot's delay)
    # meets at most T // 60 + 2 windows (CI once saw 17 failures in under 60 s).
    windows = int((time.monotonic() - began) // 60) + 2
    assert refusal is not None and failures <= 12 * windows, (failures, windows)
    assert refusal[0] in (421, 450, 454) and "too many" in refusal[1].lower()
    assert min(delays) >= 1.0  # every failure answered only after Dovecot's delay
    # the right password is refused too while the limit holds: guessing is cut off
    with smtplib.SMTP(VPS4, 587, timeout=60) as client:
        client._host = HOSTNAME
        client.starttls(context=tls_context(lab_host))
        with pytest.raises(smtplib.SMTPException):
            client.login("alice@example.test", lab_host["passwords"]["alice@example.test"])
    assert os.environ.get("MAILHOST_PASSWORD_BOB_EXAMPLE_TEST") is None
