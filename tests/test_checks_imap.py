"""The IMAP checks' decisions against small IMAP servers on loopback (the lab runs them against
Dovecot): what counts as a login offered before TLS, and a closed port as a failed check."""

from __future__ import annotations

import socket
import threading

import pytest
from sample import sample_settings

from mailhost.checks import FAILED, OK, WARNING, imap
from mailhost.secrets import Secrets


def imap_server(capabilities: str) -> int:
    """An IMAP server on loopback that greets, answers CAPABILITY and LOGOUT, once."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        connection, _ = listener.accept()
        with connection, connection.makefile("rwb") as stream:
            stream.write(b"* OK ready\r\n")
            stream.flush()
            for line in stream:
                tag, command = line.decode().split()[:2]
                if command.upper() == "CAPABILITY":
                    stream.write(f"* CAPABILITY {capabilities}\r\n{tag} OK done\r\n".encode())
                else:
                    stream.write(f"* BYE\r\n{tag} OK bye\r\n".encode())
                stream.flush()
                if command.upper() == "LOGOUT":
                    break
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


@pytest.mark.parametrize(("capabilities", "status"), [
    ("IMAP4rev1 STARTTLS LOGINDISABLED", OK),  # Dovecot with ssl = required
    ("IMAP4rev1 STARTTLS AUTH=PLAIN LOGINDISABLED", FAILED),
    ("IMAP4rev1 STARTTLS", FAILED),  # LOGIN allowed in clear
    ("IMAP4rev1 LOGINDISABLED", FAILED),  # no way to TLS at all
])
def test_no_login_before_tls_on_143(monkeypatch, capabilities, status):
    monkeypatch.setattr(imap, "IMAP_PORT", imap_server(capabilities))
    check = imap.no_login_before_tls_check(sample_settings(imap_starttls=True), "127.0.0.1")
    assert check.status == status, check
    assert check.name == "imap: 127.0.0.1 port 143 no login before TLS"
    assert capabilities.split()[-1] in check.found
    assert bool(check.advice) == (status == FAILED)


def test_login_offered_before_tls_lists_the_ways_in():
    assert imap.login_offered_before_tls(["IMAP4rev1", "LOGINDISABLED"]) == []
    assert imap.login_offered_before_tls(["IMAP4rev1", "AUTH=PLAIN", "logindisabled"]) == [
        "AUTH=PLAIN"]
    assert imap.login_offered_before_tls(["IMAP4rev1"]) == ["LOGIN"]


def test_a_closed_993_fails_each_check_and_143_is_checked_only_when_open(monkeypatch):
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    monkeypatch.setattr(imap, "IMAPS_PORT", port)
    secrets = Secrets(None, None, {})
    results = imap.checks_of_address(sample_settings(), secrets, "127.0.0.1")
    assert [r.name.split(" ", 2)[2] for r in results] == [
        "port 993 TLS certificate", "port 993 refuses TLS 1.0/1.1", "port 993 login"]
    assert [r.status for r in results] == [FAILED, FAILED, WARNING]  # no password: not tried
    assert "ConnectionRefusedError" in results[0].found
    opened = imap.checks_of_address(sample_settings(imap_starttls=True), secrets, "127.0.0.1")
    assert opened[-1].name == "imap: 127.0.0.1 port 143 no login before TLS"
