"""Hardening in the rendered configuration, and the checks' CBC probe against real TLS servers
(Mozilla's intermediate cipher list, as main.cf renders it, against the broad default)."""

import socket
import ssl

import pytest
from sample import sample_settings
from test_checks import tls_server
from test_hostile_input import settings_lines

from mailhost.checks import smtp
from mailhost.host import postfix


def main_cf() -> dict[str, str]:
    text = postfix.rendered("main.cf", sample_settings())
    return dict(line.split(" = ", 1) for line in settings_lines(text))


def services() -> dict[str, list[str]]:
    """master.cf: each service's -o options."""
    found, current = {}, None
    for line in settings_lines(postfix.rendered("master.cf", sample_settings())):
        if line[0].isspace():
            found[current].append(line.split("-o ", 1)[1])
        else:
            current = f"{line.split()[0]}/{line.split()[1]}"
            found[current] = []
    return found


def test_postfix_hardening_settings():
    main = main_cf()
    assert main["disable_vrfy_command"] == "yes"
    assert main["smtpd_helo_required"] == "yes"
    assert main["smtpd_tls_auth_only"] == "yes"
    assert int(main["smtpd_client_auth_rate_limit"]) > 0
    assert main["smtpd_tls_protocols"] == main["smtpd_tls_mandatory_protocols"] == ">=TLSv1.2"
    ciphers = main["tls_high_cipherlist"].split(":")
    assert all("GCM" in c or "CHACHA20" in c for c in ciphers)  # AEAD only
    assert all(c.startswith(("ECDHE-", "DHE-")) for c in ciphers)  # forward secrecy only
    master = services()
    for service in ("submission/inet", "submissions/inet"):
        assert "smtpd_tls_mandatory_ciphers=high" in master[service]
        assert "smtpd_tls_security_level=encrypt" in master[service]
        assert "smtpd_sasl_auth_enable=yes" in master[service]
    assert master["smtp/inet"] == []  # port 25 stays broad: opportunistic TLS, no AUTH
    assert main["smtpd_sasl_auth_enable"] == "no"


def handshake(port: int, context: ssl.SSLContext) -> tuple[str, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            return tls.version(), tls.cipher()[0]


def test_cbc_probe_is_refused_by_the_intermediate_profile_only(tmp_path):
    intermediate = tls_server(tmp_path, ciphers=main_cf()["tls_high_cipherlist"])
    with pytest.raises(ssl.SSLError):
        handshake(intermediate, smtp.cbc_context())
    assert handshake(intermediate, smtp.unverified_context())[0] in ("TLSv1.2", "TLSv1.3")
    broad = tls_server(tmp_path)
    version, cipher = handshake(broad, smtp.cbc_context())
    assert version == "TLSv1.2" and "GCM" not in cipher and "CHACHA" not in cipher
