"""ManageSieve and vacation replies in the lab: alice keeps a vacation script on the host with a
real ManageSieve client (sievelib, STARTTLS on 4190); mail from outside gets exactly one reply,
DKIM-signed by the host and checked by the lab's receiver; a second message from the same
sender within the period, and mail from a list or an auto-submitter, get none (RFC 5230,
RFC 3834). With chasquid (no sendmail to send replies with) ManageSieve works and a vacation
script is refused when uploaded. The Postfix world runs Dovecot 2.3 (Ubuntu 24.04), the
chasquid one Dovecot 2.4 (Debian 13): both configuration templates."""

from __future__ import annotations

import smtplib
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from lab_world import HOSTNAME, VPS4, VPS6, deploy, fresh_lab, lab, ssh, world_id
from sievelib.managesieve import Client

from lab.common import RX_NETNS
from lab.receiver import list_messages, wait_for_message

pytestmark = pytest.mark.lab

POSTFIX_WORLD = ("ubuntu-24.04", "postfix", "rfc2136", "http-01")
# chasquid on Debian 13: Dovecot 2.4's configuration (Ubuntu's 2.3 in the Postfix world)
CHASQUID_WORLD = ("debian-13", "chasquid", "rfc2136", "dns-01")
ALICE = "alice@example.test"
VACATION = """require ["vacation", "fileinto"];
vacation :days 1 :subject "Away" "I am away until Monday.";
"""
FILTER = """require ["fileinto", "mailbox"];
if header :contains "Subject" "[report]" { fileinto :create "Reports"; }
"""
# one message from a sender of example.net, sent from the receiver's own address (its SPF
# passes), so the reply goes to the receiver, which checks its DKIM signature
SEND_FROM_RX = """
import smtplib, sys
address, sender, recipient, message = sys.argv[1:4] + [sys.stdin.read()]
with smtplib.SMTP(address, 25, timeout=60) as client:
    client.ehlo("mx.example.net")
    client.sendmail(sender, [recipient], message)
"""


WORLDS = [POSTFIX_WORLD, CHASQUID_WORLD]


def only_in(*worlds):
    """Run the decorated test in these worlds only."""
    return pytest.mark.parametrize("world", worlds, indirect=True,
                                   ids=[world_id(w) for w in worlds])


@pytest.fixture(scope="module", params=WORLDS, ids=[world_id(w) for w in WORLDS])
def world(request):
    """A fresh lab deployed in this world; the lab's status with the world and passwords."""
    status = fresh_lab(request.param[0])
    status["world"] = request.param
    deploy(status, "-y")
    status["passwords"] = tomllib.loads(Path(status["secrets_file"]).read_text())["passwords"]
    yield status
    lab("down")  # nothing of this world is left running after its tests


def sieve_client(world, address=VPS4) -> Client:
    """alice logged in over ManageSieve with STARTTLS, the chain verified for the host's name
    against the lab CA (sievelib verifies with the default context: SSL_CERT_FILE)."""
    client = Client(address, 4190, srvhostname=HOSTNAME)
    assert client.connect(ALICE, world["passwords"][ALICE], starttls=True), client.errmsg
    return client


@pytest.fixture
def lab_ca(world, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", world["acme"]["root_ca_file"])


def send_from_rx(sender: str, subject: str, headers: str = "") -> str:
    message_id = f"<{time.time_ns()}@example.net>"
    message = (f"From: {sender}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n{headers}"
               f"Message-ID: {message_id}\r\n\r\nHello alice.\r\n")
    subprocess.run(["ip", "netns", "exec", RX_NETNS, sys.executable, "-c", SEND_FROM_RX, VPS4,
                    sender, ALICE], input=message, text=True, check=True, timeout=90)
    return message_id


def send_spam(subject: str) -> str:
    """A message rspamd marks as spam (X-Spam: Yes): from the lab bridge, an address with no
    name, claiming example.org (the same as tests/test_mail_lab.py's Junk test)."""
    message_id = f"<{time.time_ns()}@example.org>"
    with smtplib.SMTP(VPS4, 25, timeout=30) as client:
        client.ehlo("mx.example.org")
        client.sendmail("friend@example.org", [ALICE],
                        f"From: friend@example.org\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
                        f"X-Spam: Yes\r\nMessage-ID: {message_id}\r\n\r\nhi\r\n")
    return message_id


def delivered(message_id: str, timeout: float = 60) -> None:
    """Waits until MESSAGE_ID is in alice's Maildir (Sieve ran on it)."""
    deadline = time.monotonic() + timeout
    while not ssh(f"grep -rl '{message_id}' /var/mail/vhosts/example.test/alice/ "
                  "2>/dev/null").strip():
        assert time.monotonic() < deadline, f"{message_id} not delivered"
        time.sleep(1)


def replies_to(world, address: str) -> list:
    return [m for m in list_messages(world["receiver"]["messages_dir"])
            if address in m.meta["rcpt_tos"]]


def test_alice_logs_in_after_starttls_on_both_addresses(world, lab_ca):
    for address in (VPS4, VPS6):
        client = sieve_client(world, address)
        assert client.listscripts() is not None
        client.logout()
    refused = Client(VPS4, 4190, srvhostname=HOSTNAME)
    assert not refused.connect(ALICE, "not the password", starttls=True)


def test_a_login_before_starttls_is_refused(world):
    """Without STARTTLS the server offers no SASL mechanism, and AUTHENTICATE fails."""
    with socket.create_connection((VPS4, 4190), timeout=30) as raw:
        greeting = raw.recv(4096).decode()
        assert '"STARTTLS"' in greeting and '"SASL" ""' in greeting, greeting
        raw.sendall(b'AUTHENTICATE "PLAIN" "AGFsaWNlQGV4YW1wbGUudGVzdAB4"\r\n')
        assert raw.recv(4096).startswith(b"NO"), "AUTHENTICATE answered without TLS"


def test_a_users_filter_runs_after_the_spam_rule(world, lab_ca):
    client = sieve_client(world)
    assert client.putscript("filters", FILTER) and client.setactive("filters")
    client.logout()
    report = send_from_rx("reports@example.net", "[report] weekly")
    spam = send_spam("[report] cheap")
    delivered(report), delivered(spam)
    home = "/var/mail/vhosts/example.test/alice"
    assert report.strip("<>") in ssh(f"cat {home}/.Reports/new/* {home}/.Reports/cur/*")
    # the global rule filed it into Junk and stopped: the user's script never saw it
    assert spam.strip("<>") in ssh(f"cat {home}/.Junk/new/* {home}/.Junk/cur/*")


@only_in(POSTFIX_WORLD)
def test_vacation_replies_once_per_sender_signed_and_never_to_lists(world, lab_ca):
    client = sieve_client(world)
    assert "vacation" in client.get_sieve_capabilities()
    assert client.putscript("away", VACATION), client.errmsg
    assert client.setactive("away")
    assert client.listscripts()[0] == "away"  # the active script
    client.logout()
    # senders of this run only (the period is kept per sender in alice's home)
    friend, lister, robot, control = (f"{name}{time.time_ns()}@example.net"
                                      for name in ("friend", "lister", "robot", "control"))
    first = send_from_rx(friend, "are you there?")
    reply = wait_for_message(world["receiver"]["messages_dir"],
                             lambda m: friend in m.meta["rcpt_tos"], timeout=60)
    assert reply.meta["mail_from"] in ("", "<>")  # the null sender (RFC 5230 5.1)
    assert reply.verdicts["dkim"] == "pass", reply.verdicts
    assert reply.message["From"].endswith(f"<{ALICE}>") or reply.message["From"] == ALICE
    assert reply.message["Auto-Submitted"].startswith("auto-replied")
    assert reply.message["In-Reply-To"] == first
    assert reply.message["Subject"] == "Away"
    # within the period, from a list, auto-submitted: no reply; then a new sender's control
    # message, whose reply comes after any the others would have caused
    second = send_from_rx(friend, "hello again")
    listed = send_from_rx(lister, "list post", "List-Id: <news.example.net>\r\n")
    automatic = send_from_rx(robot, "a notice", "Auto-Submitted: auto-generated\r\n")
    for message_id in (second, listed, automatic):
        delivered(message_id)
    send_from_rx(control, "control")
    wait_for_message(world["receiver"]["messages_dir"],
                     lambda m: control in m.meta["rcpt_tos"], timeout=60)
    assert len(replies_to(world, friend)) == 1
    assert replies_to(world, lister) == []
    assert replies_to(world, robot) == []


@only_in(CHASQUID_WORLD)
def test_with_chasquid_a_vacation_script_is_refused(world, lab_ca):
    client = sieve_client(world)
    assert "vacation" not in client.get_sieve_capabilities()
    assert not client.putscript("away", VACATION)
    client.logout()
