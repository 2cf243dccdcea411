"""relay_host (a smarthost when outbound port 25 is blocked): settings, secret, Postfix's
configuration, the host checks. The lab's relay itself: tests/test_relay_server.py (on
loopback) and tests/test_mail_lab.py (mail through it while the VPS's port 25 is blocked)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sample import sample_settings
from secrecy import leaked

from mailhost.checks import FAILED, OK, WARNING
from mailhost.checks import host as host_checks
from mailhost.host import postfix
from mailhost.secrets import Secrets, load_secrets
from mailhost.settings import SettingsError

RELAY = {"relay_host": "[smtp.relay.example]:587", "relay_user": "AKIAEXAMPLE"}
PASSWORD = "relay-secret-0123456789"


def parameters(text: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in text.splitlines()
                if " = " in line and not line.startswith("#"))


@pytest.mark.parametrize(("value", "written"), [
    ("[smtp.relay.example]:587", "[smtp.relay.example]:587"),
    ("smtp.relay.example:465", "[smtp.relay.example]:465"),
    ("[SMTP.Relay.Example]:587", "[smtp.relay.example]:587"),
])
def test_relay_hosts_are_written_bracketed(value, written):
    assert sample_settings(**{**RELAY, "relay_host": value}).relay_host == written


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"relay_host": "[smtp.relay.example]:25"}, "expected [HOST]:587 or [HOST]:465"),
    ({"relay_host": "[smtp.relay.example]:587\nrelayhost = evil"}, "control characters"),
    ({"relay_host": "[smtp relay]:587"}, "relay_host"),
    ({"relay_user": "user name"}, "expected a login"),
    ({"relay_user": "user:x"}, "relay_user = 'user:***': expected no credentials"),
    ({"relay_user": None}, "relay_user = None: expected the relay's login"),
    ({"mta": "chasquid"}, "chasquid has no smarthost setting"),
    ({"warmup_start": "2026-11-02"}, "whose own reputation and pacing apply"),
    ({"relay_password": PASSWORD}, "never read from the inventory"),
])
def test_bad_relay_settings_are_refused_with_one_line(overrides, expected):
    with pytest.raises(SettingsError) as refused:
        sample_settings(**{**RELAY, **overrides})
    assert expected in str(refused.value) and "\n" not in str(refused.value)
    assert not leaked({"relay password": PASSWORD}, str(refused.value))


def test_the_password_comes_from_the_secrets_and_must_fit_one_line(tmp_path):
    settings = sample_settings(**RELAY, secrets_file=str(tmp_path / "none.toml"))
    environ = {"MAILHOST_TSIG_SECRET": "c2VjcmV0"}
    with pytest.raises(SettingsError, match="MAILHOST_RELAY_PASSWORD: not set"):
        load_secrets(settings, environ)
    with pytest.raises(SettingsError, match="no spaces or control characters") as refused:
        load_secrets(settings, {**environ, "MAILHOST_RELAY_PASSWORD": "two words"})
    assert not leaked({"relay password": "two words"}, str(refused.value))
    secrets = load_secrets(settings, {**environ, "MAILHOST_RELAY_PASSWORD": PASSWORD})
    assert postfix.relay_passwords(settings, secrets) == (
        f"[smtp.relay.example]:587 AKIAEXAMPLE:{PASSWORD}\n")


@pytest.mark.parametrize(("port", "wrapper"), [("587", None), ("465", "yes")])
def test_postfix_sends_everything_through_the_relay_over_verified_tls(port, wrapper):
    settings = sample_settings(**{**RELAY, "relay_host": f"[smtp.relay.example]:{port}"})
    main = parameters(postfix.rendered("main.cf", settings))
    assert main["relayhost"] == f"[smtp.relay.example]:{port}"
    assert main["smtp_tls_security_level"] == "secure"
    assert main["smtp_sasl_auth_enable"] == "yes"
    assert main["smtp_sasl_password_maps"] == "hash:/etc/postfix/sasl_passwd"
    assert main["smtp_sasl_security_options"] == "noanonymous"
    assert main.get("smtp_tls_wrappermode") == wrapper


def test_without_a_relay_mail_goes_to_each_mx_and_the_table_is_empty():
    settings = sample_settings()
    main = parameters(postfix.rendered("main.cf", settings))
    assert "relayhost" not in main and main["smtp_tls_security_level"] == "dane"
    assert postfix.relay_passwords(settings, Secrets()) == ""


class BlockedPort25:
    """A host whose connections to port 25 time out and to any other port connect."""

    def __init__(self):
        self.commands = []

    def run_shell_command(self, command):
        text = command.get_raw_value()
        self.commands.append(text)
        output = "" if "/25 " in text else "connected\n"
        return True, SimpleNamespace(stdout=output, stderr="")


def test_with_a_relay_a_blocked_port_25_is_reported_not_fatal_and_the_relay_is_checked():
    host = BlockedPort25()
    relayed = host_checks.outbound_check(sample_settings(**RELAY), host)
    assert (relayed.status, relayed.required) == (WARNING, False)
    assert relayed.found == "no connection in 10 s"
    assert "mail leaves through relay_host [smtp.relay.example]:587" in relayed.advice
    relay = host_checks.relay_check(sample_settings(**RELAY), host)
    assert (relay.status, relay.required, relay.found) == (OK, True, "connected")
    assert "/dev/tcp/smtp.relay.example/587" in host.commands[-1]
    direct = host_checks.outbound_check(sample_settings(), host)
    assert (direct.status, direct.required) == (FAILED, True)
    assert "ask yours to unblock it" in direct.advice
