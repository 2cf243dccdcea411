"""Webmail in the lab, in a real browser (``webmail = "roundcube"``, by
MAILHOST_LAB_WEBMAIL=roundcube): Debian's headless Chromium (lab/chromium.py: the lab's ACME
root trusted in a throwaway NSS database, the lab's names mapped to the lane's VPS) opens
https://mail.example.test/, logs in as alice, finds in her inbox a message that came in on
port 25, sends one that reaches the lab's receiver with dkim, spf and dmarc pass, opens her
filters (the managesieve plugin), and keeps a screenshot of the inbox: artifacts/webmail/
(ignored by git; the path is printed). Postfix on Ubuntu 24.04 (Roundcube 1.6, PHP 8.3) and
chasquid on Ubuntu 22.04 (Roundcube 1.5, PHP 8.1). The
deploy's own webmail checks (the login page over IPv4 and IPv6, PHP-FPM running) pass in it,
and a second run changes nothing; turned off, the page is gone and PHP-FPM stopped."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from urllib.parse import quote

import pytest
from lab_world import (
    HOSTNAME,
    PYINFRA,
    ROOT,
    VPS4,
    fresh_lab,
    lab,
    run_in_world,
    ssh,
    tls_context,
    world_env,
    world_id,
)

from lab.chromium import Browser
from lab.common import RX_NETNS
from lab.receiver import wait_for_message

pytestmark = pytest.mark.lab

# Roundcube 1.6 and PHP 8.3 with Postfix; Roundcube 1.5 (the setting names before 1.6) and
# PHP 8.1 with chasquid
WORLDS = [("ubuntu-24.04", "postfix", "rfc2136", "http-01"),
          ("ubuntu-22.04", "chasquid", "rfc2136", "http-01")]
FPM_UNIT = {"ubuntu-24.04": "php8.3-fpm", "ubuntu-22.04": "php8.1-fpm"}
ALICE = "alice@example.test"
OUTSIDE = "inbox@example.net"  # a mailbox of the lab's receiver
ARTIFACTS = ROOT / "artifacts" / "webmail"
URL = f"https://{HOSTNAME}/"
# one message from a sender of example.net, sent from the receiver's own address
SEND_FROM_RX = """
import smtplib, sys
address, sender, recipient, message = sys.argv[1:4] + [sys.stdin.read()]
with smtplib.SMTP(address, 25, timeout=60) as client:
    client.ehlo("mx.example.net")
    client.sendmail(sender, [recipient], message)
"""
IN_LIST = "(document.querySelector('#messagelist tbody') || {{innerText: ''}}).innerText" \
          ".includes({subject!r})"


def deploy(world, *args: str, webmail: str = "roundcube") -> str:
    code, output = run_in_world(world, PYINFRA, "inventory/lab.py", "deploy.py", "-y", *args,
                                env=world_env(world, MAILHOST_LAB_WEBMAIL=webmail))
    assert code == 0, output[-4000:]
    return output


@pytest.fixture(scope="module", params=WORLDS, ids=[world_id(w) for w in WORLDS])
def world(request):
    status = fresh_lab(request.param[0])
    status["world"] = request.param
    status["first_deploy"] = deploy(status)
    status["passwords"] = tomllib.loads(Path(status["secrets_file"]).read_text())["passwords"]
    yield status
    lab("down")  # nothing of this world is left running after its tests


@pytest.fixture
def browser(world, tmp_path):
    """Chromium trusting only the lab's ACME root, the host's name mapped to its IPv4."""
    chromium = Browser(tmp_path / "chromium", world["acme"]["root_ca_file"], {HOSTNAME: VPS4})
    yield chromium
    chromium.close()


def send_from_outside(subject: str) -> None:
    """A message to alice from example.net, into the host's port 25 (the receiver's address,
    so its SPF passes)."""
    sender = "friend@example.net"
    message = (f"From: {sender}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
               f"Message-ID: <{time.time_ns()}@example.net>\r\n\r\nHello alice.\r\n")
    subprocess.run(["ip", "netns", "exec", RX_NETNS, sys.executable, "-c", SEND_FROM_RX, VPS4,
                    sender, ALICE], input=message, text=True, check=True, timeout=90)


def log_in(browser: Browser, password: str) -> None:
    browser.navigate(URL)
    browser.wait_for("document.querySelector('#rcmloginuser') !== null", timeout=60)
    browser.type_into("#rcmloginuser", ALICE)
    browser.type_into("#rcmloginpwd", password)
    browser.evaluate("document.querySelector('#rcmloginsubmit').click(); true")
    browser.wait_for("window.rcmail && rcmail.env.task === 'mail' && "
                     "document.querySelector('#messagelist') !== null", timeout=60)


def test_the_deploy_checks_the_webmail(world):
    output = world["first_deploy"]
    checks = [row for row in output.splitlines() if "] " in row and "webmail: " in row]
    assert len(checks) == 3 and all(" ok " in row for row in checks), checks


def test_alice_reads_and_sends_in_chromium(world, browser):
    stamp = time.time_ns()
    inbound, outbound = f"Inbound {stamp}", f"From the webmail {stamp}"
    send_from_outside(inbound)
    log_in(browser, world["passwords"][ALICE])
    # the message that came in on 25 shows in her inbox (asked again until it is delivered)
    browser.wait_for(IN_LIST.format(subject=inbound), timeout=90, every=2,
                     meanwhile="rcmail.command('checkmail')")
    assert browser.evaluate("rcmail.env.mailbox") == "INBOX"
    assert ALICE in browser.evaluate("document.body.innerText")  # her name in the header
    path = ARTIFACTS / f"inbox-{world_id(world['world'])}.png"
    shot = browser.screenshot(path)
    print(f"screenshot of alice's inbox: {path}")
    assert shot.startswith(b"\x89PNG\r\n\x1a\n") and len(shot) > 10_000
    # compose, send through 587 with her login: once the inbox's own requests are done (a
    # request still running would write the session over the new compose session's)
    browser.wait_for("!rcmail.busy", timeout=30)
    time.sleep(2)
    browser.navigate(f"{URL}?_task=mail&_action=compose&_to={quote(OUTSIDE)}"
                     f"&_subject={quote(outbound)}")
    browser.wait_for("window.rcmail && rcmail.env.action === 'compose' && "
                     "document.querySelector('#composebody') !== null", timeout=60)
    browser.evaluate("document.querySelector('#composebody').value = 'Sent from a browser.';"
                     "rcmail.command('send', {}); true")
    arrived = wait_for_message(world["receiver"]["messages_dir"],
                               lambda m: m.message["Subject"] == outbound, timeout=90)
    assert OUTSIDE in arrived.meta["rcpt_tos"]
    assert ALICE in arrived.message["From"]
    verdicts = arrived.verdicts
    assert (verdicts["dkim"], verdicts["spf"], verdicts["dmarc"]) == ("pass",) * 3, \
        arrived.authentication_results
    # and a copy in her Sent folder, as Roundcube keeps it
    browser.navigate(f"{URL}?_task=mail&_mbox=Sent")
    browser.wait_for(IN_LIST.format(subject=outbound), timeout=60, every=2)
    # her filters: the managesieve plugin logs in over ManageSieve and makes its script active
    browser.navigate(f"{URL}?_task=settings&_action=plugin.managesieve")
    browser.wait_for("document.body.innerText.includes('roundcube')", timeout=60)
    home = "/var/mail/vhosts/example.test/alice/home"
    assert ssh(f"readlink {home}/.dovecot.sieve").strip() == "sieve/roundcube.sieve"


def test_a_second_run_changes_nothing(world):
    output = deploy(world)
    total = [line for line in output.splitlines() if "Grand total" in line][0].split()
    assert total[3] == "-" and total[4] == "-", total  # no success (change), no error


def login_page_status(world) -> int:
    """GET https://mail.example.test/ over IPv4, the certificate verified: the HTTP status."""
    context = tls_context(world)
    connection = http.client.HTTPSConnection(HOSTNAME, 443, timeout=30, context=context)
    connection.sock = context.wrap_socket(socket.create_connection((VPS4, 443), timeout=30),
                                          server_hostname=HOSTNAME)
    connection.request("GET", "/")
    return connection.getresponse().status


def test_turned_off_the_page_is_gone_and_php_fpm_stopped(world):
    assert login_page_status(world) == 200
    output = deploy(world, webmail="off")
    unit = FPM_UNIT[world["world"][0]]
    assert f"{unit} stopped and disabled" in output
    assert not [row for row in output.splitlines() if "] " in row and "webmail: " in row]
    assert login_page_status(world) == 404  # nginx stays, for the MTA-STS policy
    assert ssh(f"systemctl is-active {unit}; systemctl is-enabled {unit}").split() == \
        ["inactive", "disabled"]
