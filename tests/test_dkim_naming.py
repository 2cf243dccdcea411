"""DKIM naming and key reading, defined once in mailhost/keys/dkim.py: the record name, and the
public half with one priority (the controller's key, else the host's)."""

import base64

from cryptography.hazmat.primitives import serialization
from sample import sample_settings

from mailhost.keys.dkim import (
    generate_key,
    host_key_path,
    local_key_path,
    public_half,
    public_value,
    record_name,
    record_name_for,
    save_local_key,
)


def spki(pem: bytes) -> str:
    """What the DkimPublicKey fact gives: the DER public half, base64."""
    key = serialization.load_pem_private_key(pem, password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def test_record_name():
    settings = sample_settings(dkim_ed25519=True)
    assert record_name("s2026", "example.test") == "s2026._domainkey.example.test"
    assert record_name_for(settings, "example.test", "rsa") == "mail._domainkey.example.test"
    assert record_name_for(settings, "example.test", "ed25519").endswith(
        "._domainkey.example.test")


def test_public_half_local_key_first_then_the_hosts(tmp_path):
    settings = sample_settings(secrets_dir=str(tmp_path))
    local, host = generate_key("ed25519"), generate_key("ed25519")
    asked = []

    def read_host_key(path):
        asked.append(path)
        return spki(host)

    # no local key: the host's, read at the host's path
    assert public_half(settings, "example.test", "rsa", read_host_key) == (
        public_value(host), host_key_path(settings, "example.test", "rsa"))
    assert asked == [host_key_path(settings, "example.test", "rsa")]
    # a local key wins, and the host is not asked
    path = local_key_path(settings, "example.test", "rsa")
    save_local_key(path, local)
    asked.clear()
    assert public_half(settings, "example.test", "rsa", read_host_key) == (
        public_value(local), str(path))
    assert asked == []


def test_public_half_neither(tmp_path):
    settings = sample_settings(secrets_dir=str(tmp_path))
    local = str(local_key_path(settings, "example.test", "rsa"))
    assert public_half(settings, "example.test", "rsa") == (None, local)
    assert public_half(settings, "example.test", "rsa", lambda path: None) == (
        None, host_key_path(settings, "example.test", "rsa"))


def test_host_keys_are_read_from_the_host_by_name(tmp_path):
    """MailRun keeps (name, settings): the reader is told which host to ask."""
    from mailhost.zones.sync import mail_hosts
    host_key = generate_key("rsa")
    settings = sample_settings(secrets_dir=str(tmp_path))
    asked = []

    def read_host_key(host_name, path):
        asked.append((host_name, path))
        return spki(host_key)

    (host,) = mail_hosts({"vps1": settings}, read_host_key)
    assert host.dkim["example.test"].rsa == public_value(host_key)
    assert asked == [("vps1", host_key_path(settings, "example.test", "rsa")),  # then DANE's
                     ("vps1", "/etc/letsencrypt/live/mail.example.test/privkey.pem"),
                     ("vps1", "/etc/mailhost/tls/next-key.pem")]  # a rollover's next key

