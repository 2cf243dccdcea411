"""The lab's relay (lab/relay.py) on free loopback ports, without the lab: STARTTLS
first, AUTH required before MAIL, a wrong password refused, and an accepted message handed on,
unchanged, to the next hop (itself an aiosmtpd server offering STARTTLS with a lab CA
certificate) from the relay's source address."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
import threading
import time

import pytest
from aiosmtpd.controller import Controller

from lab import certs, relay

USER, PASSWORD = "mailhost-lab", "relay-test-password-0123"
MESSAGE = (b"From: alice@example.test\r\nTo: inbox@example.net\r\nSubject: via the relay\r\n"
           b"DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=x; b=kept+as+is\r\n"
           b"\r\nhello\r\n.a line starting with a dot\r\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Sink:
    """The next hop: records the peer, envelope and bytes of each message."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append({"peer": session.peer[0], "helo": session.host_name,
                              "tls": bool(session.ssl), "mail_from": envelope.mail_from,
                              "rcpt_tos": envelope.rcpt_tos, "data": envelope.original_content})
        return "250 2.0.0 stored"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if not address.endswith("@example.net"):
            return "550 5.7.1 Relaying denied"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A next hop and the relay in front of it, both on 127.0.0.1; yields (relay port, sink,
    lab CA file)."""
    folder = tmp_path_factory.mktemp("ca")
    ca_file = certs.ensure_ca(folder)
    cert, key = certs.ensure_leaf(folder, "relay", [relay.RELAY_HOSTNAME], ["127.0.0.1"], folder)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    sink = Sink()
    sink_port = free_port()
    next_hop = Controller(sink, hostname="127.0.0.1", port=sink_port, tls_context=server_tls)
    next_hop.start()
    handler = relay.RelayHandler(relay.RELAY_HOSTNAME, "127.0.0.1", sink_port, "127.0.0.1",
                                 str(ca_file))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = free_port()
    listening = asyncio.run_coroutine_threadsafe(loop.create_server(
        relay.server_factory(handler, server_tls, USER, PASSWORD), "127.0.0.1", port), loop)
    server = listening.result(timeout=10)
    yield port, sink, ca_file
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    next_hop.stop()


def client(port: int, ca_file, tls: bool = True) -> smtplib.SMTP:
    session = smtplib.SMTP("127.0.0.1", port, timeout=10)
    session._host = relay.RELAY_HOSTNAME  # verify the certificate for the relay's name
    session.ehlo("mail.example.test")
    if tls:
        session.starttls(context=ssl.create_default_context(cafile=str(ca_file)))
        session.ehlo("mail.example.test")
    return session


def test_no_auth_before_tls_and_no_mail_before_auth(servers):
    port, sink, ca_file = servers
    with client(port, ca_file, tls=False) as plain:
        assert not plain.has_extn("auth")  # AUTH is offered only after STARTTLS
        assert plain.mail("alice@example.test")[0] == 530  # STARTTLS first
    with client(port, ca_file) as session:
        assert "PLAIN" in session.esmtp_features["auth"]
        assert "LOGIN" in session.esmtp_features["auth"]
        code, text = session.mail("alice@example.test")
        assert code == 530 and b"Authentication required" in text
    assert sink.messages == []


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_a_wrong_password_or_user_is_refused(servers, mechanism):
    port, sink, ca_file = servers
    for user, password in [(USER, PASSWORD + "x"), ("someone-else", PASSWORD)]:
        with client(port, ca_file) as session:
            session.user, session.password = user, password
            method = session.auth_plain if mechanism == "PLAIN" else session.auth_login
            with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
                session.auth(mechanism, method, initial_response_ok=False)
            assert refused.value.smtp_code == 535
            assert session.mail("alice@example.test")[0] == 530
    assert sink.messages == []


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_an_authenticated_message_is_forwarded_unchanged(servers, mechanism):
    port, sink, ca_file = servers
    before = len(sink.messages)
    with client(port, ca_file) as session:
        session.user, session.password = USER, PASSWORD
        method = session.auth_plain if mechanism == "PLAIN" else session.auth_login
        assert session.auth(mechanism, method, initial_response_ok=False)[0] == 235
        assert session.sendmail("alice@example.test", ["inbox@example.net"], MESSAGE) == {}
    deadline = time.monotonic() + 5
    while len(sink.messages) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    forwarded = sink.messages[before]
    assert forwarded["data"] == MESSAGE  # the DKIM signature and body as sent, dots unstuffed
    assert (forwarded["mail_from"], forwarded["rcpt_tos"]) == ("alice@example.test",
                                                               ["inbox@example.net"])
    assert forwarded["peer"] == "127.0.0.1" and forwarded["helo"] == relay.RELAY_HOSTNAME
    assert forwarded["tls"]  # STARTTLS to the next hop, its certificate verified


def test_the_next_hops_refusal_reaches_the_client(servers):
    port, sink, ca_file = servers
    before = len(sink.messages)
    with client(port, ca_file) as session:
        session.login(USER, PASSWORD)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            session.sendmail("alice@example.test", ["someone@example.org"], MESSAGE)
        assert refused.value.smtp_code == 550 and b"Relaying denied" in refused.value.smtp_error
    assert len(sink.messages) == before
