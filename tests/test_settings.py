"""Settings validation: every bad value stops the run with one line naming field and value."""

from __future__ import annotations

import pytest
from sample import BASE, sample_settings

from mailhost.secrets import Secret, load_secrets, password_variable
from mailhost.settings import SettingsError, load_settings

BAD_INPUTS = [
    # (key, bad value, text the line must contain)
    ("mail_hostname", "mail", "fully qualified"),
    ("mail_hostname", "mail.other.org", "inside a zone"),
    ("mail_hostname", "-bad.example.test", "fully qualified"),
    ("mail_domains", [], "a list of mail domains"),
    ("mail_domains", ["exa mple.test"], "fully qualified"),
    ("mail_domains", ["example.test", "example.test"], "each domain once"),
    ("ipv4", "198.51.100.300", "IPv4"),
    ("ipv4", "127.0.0.1", "public IPv4"),
    ("ipv6", "fe80::1", "global IPv6"),
    ("ipv6", "2001:db8::zz", "IPv6"),
    ("mta", "exim", "'postfix' or 'chasquid'"),
    ("dns_provider", "route53", "'cloudflare' or 'rfc2136'"),
    ("dns_server", None, "primary server"),
    ("dns_port", 70000, "from 1 to 65535"),
    ("dns_tsig_algorithm", "hmac-md4", "hmac-sha256"),
    ("dns_ttl", 5, "from 60 to 86400"),
    ("dns_zones", ["other.test"], "inside a zone"),
    ("spf_all", "+all", "'~all'"),
    ("spf_include", [f"spf{i}.example.org" for i in range(11)], "11 DNS lookups"),
    ("dmarc_policy", "block", "'none', 'quarantine' or 'reject'"),
    ("dmarc_pct", 101, "from 0 to 100"),
    ("dmarc_pct", -1, "from 0 to 100"),
    ("dmarc_rua", ["dmarc@example.test"], "mailto:"),
    ("dmarc_ruf", ["mailto:not-an-address"], "mailto:"),
    ("dmarc_adkim", "strict", "'r' (relaxed) or 's'"),
    ("dmarc_aspf", "x", "'r' (relaxed) or 's'"),
    ("dkim_selector", "Mail_1", "one DNS label"),
    ("dkim_key_type", "rsa-1024", "'rsa-2048'"),
    ("dkim_ed25519_selector", "mail", "different from dkim_selector"),
    ("tlsrpt_rua", ["tls@example.test"], "mailto:"),
    ("caa_issuers", ["lets encrypt"], "fully qualified"),
    ("acme_directory", "ftp://acme.example", "https://"),
    ("acme_ca_bundle", "/nonexistent/ca.pem", "PEM file"),
    ("acme_challenge", "tls-alpn-01", "'http-01' or 'dns-01'"),
    ("acme_email", "postmaster", "e-mail address"),
    ("mail_users", ["alice"], "e-mail address"),
    ("dmarc_polcy", "reject", "unknown setting; did you mean dmarc_policy?"),
    ("cloudflare_api_token", "secret-value", "never read from the inventory"),
    ("dns_tsig_secret", "c2VjcmV0", "never read from the inventory"),
    ("check_resolver", "resolver.example", "IPv4 or IPv6 address"),
    ("check_nameservers", ["198.51.100.300"], "IPv4 or IPv6 address"),
    ("check_ca_file", "/nonexistent/ca.pem", "PEM file"),
    ("check_outbound_smtp", "gmail-smtp-in.l.google.com", "HOST:PORT"),
    ("check_outside_recipient", "postmaster", "e-mail address"),
    ("dnsbl_zones", ["zen spamhaus"], "fully qualified"),
    ("check_resolvr", "198.51.100.1", "did you mean check_resolver?"),
]


@pytest.mark.parametrize(("key", "value", "expected"), BAD_INPUTS,
                         ids=[f"{k}={v!r}"[:60] for k, v, _ in BAD_INPUTS])
def test_bad_input_gives_one_line_naming_field_and_value(key, value, expected):
    data = {**BASE, key: value}
    if key == "dkim_ed25519_selector":
        data["dkim_ed25519"] = True
    with pytest.raises(SettingsError) as raised:
        load_settings(data)
    line = str(raised.value)
    assert "\n" not in line
    assert line.startswith("settings: ")
    assert key in line
    assert expected in line
    if key in ("cloudflare_api_token", "dns_tsig_secret"):
        assert str(value) not in line  # a secret is never echoed back
    elif value is not None and not isinstance(value, list):
        assert repr(value) in line


def test_missing_required_key_is_named():
    data = dict(BASE)
    del data["ipv4"]
    with pytest.raises(SettingsError, match=r"^settings: ipv4: missing; expected .*IPv4"):
        load_settings(data)


def test_good_settings_and_defaults():
    settings = sample_settings()
    assert settings.mta == "postfix"
    assert settings.dkim_selector == "mail" and settings.rsa_bits == 2048
    assert settings.zones == ["example.test"]
    assert settings.mail_hostname == "mail.example.test"
    assert str(settings.ipv6) == "2001:db8::10"
    assert sample_settings(mail_hostname="MAIL.Example.Test.").mail_hostname == "mail.example.test"


def test_pyinfra_connection_keys_are_ignored():
    assert sample_settings(ssh_user="root", ssh_port=2222).mta == "postfix"


def test_secrets_come_from_environment_then_file(tmp_path):
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(
        'tsig_secret = "ZmlsZQ=="\n[passwords]\n"a@example.test" = "pw-long-enough"\n')
    secrets_file.chmod(0o600)
    settings = sample_settings(secrets_file=str(secrets_file), mail_users=["a@example.test"])
    loaded = load_secrets(settings, environ={})
    assert loaded.tsig_secret.reveal() == "ZmlsZQ=="
    assert loaded.passwords["a@example.test"].reveal() == "pw-long-enough"
    from_env = load_secrets(settings, environ={"MAILHOST_TSIG_SECRET": "ZW52"})
    assert from_env.tsig_secret.reveal() == "ZW52"
    assert "ZW52" not in repr(from_env) and "pw-long" not in str(loaded)
    assert password_variable("a.b@example.test") == "MAILHOST_PASSWORD_A_B_EXAMPLE_TEST"
    assert repr(Secret("x")) == "Secret('***')"


def test_missing_secret_names_the_variable_not_a_value(tmp_path):
    settings = sample_settings(secrets_file=str(tmp_path / "none.toml"))
    with pytest.raises(SettingsError, match="MAILHOST_TSIG_SECRET: not set"):
        load_secrets(settings, environ={})
    cloudflare = sample_settings(dns_provider="cloudflare", secrets_file=str(tmp_path / "n.toml"))
    with pytest.raises(SettingsError, match="CLOUDFLARE_API_TOKEN: not set"):
        load_secrets(cloudflare, environ={})
    users = sample_settings(mail_users=["bob@example.test"], secrets_file=str(tmp_path / "n"))
    with pytest.raises(SettingsError, match="MAILHOST_PASSWORD_BOB_EXAMPLE_TEST"):
        load_secrets(users, environ={"MAILHOST_TSIG_SECRET": "eA=="})


def test_secrets_file_readable_by_others_is_refused(tmp_path):
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text('tsig_secret = "c2VjcmV0"\n')
    secrets_file.chmod(0o644)
    with pytest.raises(SettingsError, match="chmod 600") as raised:
        load_secrets(sample_settings(secrets_file=str(secrets_file)), environ={})
    assert "c2VjcmV0" not in str(raised.value)


def test_dns01_needs_what_certbots_plugins_can_use():
    assert sample_settings(acme_challenge="dns-01").acme_dns_propagation_seconds == 60
    with pytest.raises(SettingsError) as error:
        sample_settings(acme_challenge="dns-01", dns_server="ns1.example.test")
    assert str(error.value).startswith("settings: dns_server = 'ns1.example.test': expected an IP")
    with pytest.raises(SettingsError) as error:
        sample_settings(acme_challenge="dns-01", dns_provider="cloudflare",
                        cloudflare_api_url="http://198.51.100.1:8443/client/v4")
    assert "api.cloudflare.com" in str(error.value)
    # the lab: api.cloudflare.com on the host is a TLS front of the same emulator
    lab = sample_settings(acme_challenge="dns-01", dns_provider="cloudflare",
                          cloudflare_api_url="http://198.51.100.1:8443/client/v4",
                          cloudflare_api_url_is_api_host=True)
    assert lab.cloudflare_api_url_is_api_host is True


def test_dns01_with_its_own_key_needs_its_secret(tmp_path):
    settings = sample_settings(acme_challenge="dns-01", dns_acme_tsig_key_name="vps-acme",
                               secrets_file=str(tmp_path / "none.toml"))
    with pytest.raises(SettingsError, match="MAILHOST_ACME_TSIG_SECRET: not set.*vps-acme"):
        load_secrets(settings, environ={"MAILHOST_TSIG_SECRET": "eA=="})
    loaded = load_secrets(settings, environ={"MAILHOST_TSIG_SECRET": "eA==",
                                             "MAILHOST_ACME_TSIG_SECRET": "eQ=="})
    assert loaded.acme_tsig_secret.reveal() == "eQ==" and loaded.tsig_secret.reveal() == "eA=="
