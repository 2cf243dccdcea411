"""Settings validation: every bad value stops the run with one line naming field and value."""

from __future__ import annotations

import pytest
from sample import BASE, sample_settings

from mailhost.secrets import Secret, load_secrets, password_variable
from mailhost.settings import SettingsError, load_settings


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


def test_a_controller_path_starting_with_a_tilde_is_in_the_users_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = sample_settings(secrets_dir="~/mail-secrets", secrets_file="~/mail/secrets.toml")
    assert settings.secrets_dir == str(tmp_path / "mail-secrets")
    assert settings.secrets_file == str(tmp_path / "mail" / "secrets.toml")
