"""Sample host data for example.test, as an inventory would give it."""

from mailhost.settings import load_settings

BASE = {
    "mail_hostname": "mail.example.test",
    "mail_domains": ["example.test"],
    "ipv4": "198.51.100.10",
    "ipv6": "2001:db8::10",
    "dns_provider": "rfc2136",
    "dns_server": "127.0.0.1",
    "dns_tsig_key_name": "mailhost",
    "dmarc_policy": "quarantine",
    "dmarc_rua": ["mailto:dmarc@example.test"],
    "tlsrpt_rua": ["mailto:tlsrpt@example.test"],
    "caa_issuers": ["letsencrypt.org"],
    "lab_allowances": True,  # documentation addresses
}


def sample_settings(**overrides):
    return load_settings({**BASE, **overrides})
