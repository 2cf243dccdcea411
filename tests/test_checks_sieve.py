"""The ManageSieve check's decision against small ManageSieve servers on loopback (the lab runs
it against Dovecot's Pigeonhole): a SASL mechanism offered before STARTTLS fails it, as does a
server without STARTTLS or a closed port."""

from __future__ import annotations

import socket
import threading

import pytest

from mailhost.checks import FAILED, OK, sieve


def managesieve_server(capabilities: list[str]) -> int:
    """A ManageSieve server on loopback that announces CAPABILITIES, then answers LOGOUT."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        connection, _ = listener.accept()
        with connection, connection.makefile("rwb") as stream:
            stream.write("".join(f"{line}\r\n" for line in capabilities).encode()
                         + b'OK "ready"\r\n')
            stream.flush()
            for line in stream:
                if line.strip().upper() == b"LOGOUT":
                    stream.write(b'OK "bye"\r\n')
                    stream.flush()
                    break
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


PIGEONHOLE = ['"IMPLEMENTATION" "Dovecot Pigeonhole"', '"SIEVE" "fileinto vacation"',
              '"NOTIFY" "mailto"', '"VERSION" "1.0"']


@pytest.mark.parametrize(("capabilities", "status"), [
    (PIGEONHOLE + ['"SASL" ""', '"STARTTLS"'], OK),  # Dovecot's with ssl = required
    (PIGEONHOLE + ['"STARTTLS"'], OK),
    (PIGEONHOLE + ['"SASL" "PLAIN LOGIN"', '"STARTTLS"'], FAILED),  # a password in clear
    (PIGEONHOLE + ['"SASL" ""'], FAILED),  # no STARTTLS: no way to log in safely
])
def test_no_login_before_starttls(capabilities, status):
    found = sieve.no_login_before_tls_check("127.0.0.1", managesieve_server(capabilities))
    assert found.status == status, found
    assert "IMPLEMENTATION Dovecot Pigeonhole" in found.found


def test_a_closed_port_fails_the_check():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    found = sieve.no_login_before_tls_check("127.0.0.1", port)
    assert found.status == FAILED and "ConnectionRefusedError" in found.found


def test_a_no_greeting_is_a_failure():
    port = managesieve_server([])
    found = sieve.no_login_before_tls_check("127.0.0.1", port)
    assert found.status == FAILED  # no STARTTLS announced
