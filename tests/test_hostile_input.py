"""Hostile input: every bad value is refused with one line naming the field and what is
expected, before any connection; values that pass cannot change the structure of a file."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from passlib.hash import sha512_crypt
from sample import BASE, self_signed_pem

from mailhost import paths
from mailhost.host import dovecot, opendkim, postfix, rspamd
from mailhost.host.base import apt_proxy_conf
from mailhost.host.users import (
    alias_map,
    aliases,
    dovecot_users,
    mailbox_map,
    parse_dovecot_users,
    sender_login_map,
    sender_owners,
)
from mailhost.operations.files import TEMPLATES
from mailhost.secrets import Secret, Secrets, load_secrets
from mailhost.settings import SECRET_KEYS, Settings, SettingsError, load_settings
from mailhost.settings import backup as backup_values
from mailhost.settings.keys import looks_secret, pyinfra_keys, refuse_unknown_keys

INJECTION = "2001:db8::10%x\nalways_bcc = spy@evil.example\nrelayhost = [relay.evil.example]:25"
APT_HOOK = 'http://198.51.100.1:3128";\nDPkg::Pre-Invoke {"touch /tmp/pwned";};'
# a production host: global addresses (only strings here: nothing is sent to them)
PRODUCTION = {"lab_allowances": False, "ipv4": "80.80.80.80", "ipv6": "2a01:4f8::10"}

LEXICON = {"dns_provider": "lexicon", "dns_lexicon_provider": "powerdns"}
BAD = [
    ("dns_lexicon_options", {"pdns_server": "http://pdns.example\nevil = 1"}, "no spaces",
     LEXICON),
    ("dns_lexicon_options", {"pdns_server": "http://a b"}, "no spaces", LEXICON),
    ("dns_lexicon_options", {"auth_token": "abc"}, "expected no credential here", LEXICON),
    ("dns_lexicon_provider", "powerdns; rm -rf /", "the name of a dns-lexicon provider",
     {"dns_provider": "lexicon"}),
    ("dns_lexicon_provider", "nosuchprovider", "the name of a dns-lexicon provider",
     {"dns_provider": "lexicon"}),
    # (key, value, text the line must contain, other settings)
    # ordinary mistakes: a typo, a wrong choice, a value out of range
    ("mail_hostname", "mail", "fully qualified", {}),
    ("mail_hostname", "mail.other.org", "inside a zone", {}),
    ("mail_hostname", "-bad.example.test", "fully qualified", {}),
    ("mail_domains", [], "expected at least one mail domain (or backup_mx_for", {}),
    ("backup_mx_for", ["example.test"], "expected a domain this host is not the mail host of", {}),
    ("backup_mx_for", ["other.test"], "expected [] with mta = 'chasquid'",
     {"mta": "chasquid", "dns_zones": ["example.test", "other.test"]}),
    ("mail_domains", ["exa mple.test"], "fully qualified", {}),
    ("mail_domains", ["example.test", "example.test"], "each domain once", {}),
    ("spf_include", ["include:_spf.google.com"], "the domain alone", {}),
    # a look-alike letter pasted into a name (Cyrillic а, Greek ο): refused, named by code point
    ("mail_hostname", "m\u0430il.example.test", "U+0430 CYRILLIC SMALL LETTER A", {}),
    ("mail_domains", ["ex\u0430mple.test"], "mixes Latin letters with U+0430", {}),
    ("mail_aliases", {"fwd@example.test": ["bob@g\u03bfogle.com"]}, "U+03BF GREEK", {}),
    ("ipv4", "198.51.100.300", "IPv4", {}),
    ("ipv4", "127.0.0.1", "public IPv4", {}),
    ("ipv6", "fe80::1", "global IPv6", {}),
    ("ipv6", "2001:db8::zz", "IPv6", {}),
    ("mta", "exim", "'postfix' or 'chasquid'", {}),
    ("dns_provider", "route53", "'lexicon' (then dns_lexicon_provider", {}),
    ("dns_server", None, "primary server", {}),
    ("dns_port", 70000, "from 1 to 65535", {}),
    ("dns_tsig_algorithm", "hmac-md4", "hmac-sha256", {}),
    ("dns_ttl", 5, "from 60 to 86400", {}),
    ("mail_hostname", "mail.example.test", "inside a zone", {"dns_zones": ["other.test"]}),
    ("spf_all", "+all", "'~all'", {}),
    ("spf_include", [f"spf{i}.example.org" for i in range(11)], "11 DNS lookups", {}),
    ("dmarc_policy", "block", "'none', 'quarantine' or 'reject'", {}),
    ("dmarc_pct", 101, "from 0 to 100", {}),
    ("dmarc_pct", -1, "from 0 to 100", {}),
    ("dmarc_rua", ["dmarc@example.test"], "mailto:", {}),
    ("dmarc_ruf", ["mailto:not-an-address"], "mailto:", {}),
    ("dmarc_adkim", "strict", "'r' (relaxed) or 's'", {}),
    ("dmarc_aspf", "x", "'r' (relaxed) or 's'", {}),
    ("dkim_selector", "Mail_1", "one DNS label", {}),
    ("dkim_key_type", "rsa-1024", "'rsa-2048'", {}),
    ("dkim_rotate_days", -1, "days from 0 (never rotate) to 3650", {}),
    ("dkim_rotate_days", "180d", "a whole number", {}),
    ("dkim_retire_days", 0, "days from 1 to 90", {}),
    ("dkim_selector", "s" * 51, "at most 50 characters while dkim_rotate_days", {}),
    ("dkim_ed25519_selector", "mail", "different from dkim_selector", {"dkim_ed25519": True}),
    ("tlsrpt_rua", ["tls@example.test"], "mailto:", {}),
    ("caa_issuers", ["lets encrypt"], "fully qualified", {}),
    ("acme_directory", "ftp://acme.example", "https://", {}),
    ("acme_ca_bundle", "/nonexistent/ca.pem", "PEM file", {}),
    ("acme_challenge", "tls-alpn-01", "'http-01' or 'dns-01'", {}),
    ("acme_email", "postmaster", "e-mail address", {}),
    ("mail_users", ["alice"], "e-mail address", {}),
    ("dmarc_polcy", "reject", "unknown setting; did you mean dmarc_policy?", {}),
    ("cloudflare_api_token", "secret-value", "never read from the inventory", {}),
    ("dns_tsig_secret", "c2VjcmV0", "never read from the inventory", {}),
    ("check_resolver", "resolver.example", "IPv4 or IPv6 address", {}),
    ("check_nameservers", ["198.51.100.300"], "IPv4 or IPv6 address", {}),
    ("check_ca_file", "/nonexistent/ca.pem", "PEM file", {}),
    ("check_outbound_smtp", "gmail-smtp-in.l.google.com", "HOST:PORT", {}),
    ("check_outside_recipient", "postmaster", "e-mail address", {}),
    ("dnsbl_zones", ["zen spamhaus"], "fully qualified", {}),
    ("check_resolvr", "198.51.100.1", "did you mean check_resolver?", {}),
    # the issue's reproductions
    ("ipv6", INJECTION, "control characters", {}),
    ("ipv6", "2001:db8::10%eth0", "no %scope", {}),
    ("mail_users", ["alice@example.test\n"], "control characters", {}),
    ("mail_users", ["alice@example.test\nrelayhost = x"], "control characters", {}),
    ("mail_aliases", {"sales@example.test": ["alice@example.test\nbcc@evil.example"]},
     "control characters", {}),
    ("dkim_selector", "mail\n", "control characters", {}),
    ("dkim_selector", "mail\nX", "control characters", {}),
    ("mail_hostname", "mail.example.test\n", "control characters", {}),
    ("mail_domains", ["example.test\n"], "control characters", {}),
    ("check_outbound_smtp", "mx.example.net:25\n", "control characters", {}),
    ("dns_port", "53\n", "whole number", {}),
    ("dns_ttl", "300\n", "whole number", {}),
    ("apt_proxy", APT_HOOK, "control characters", {}),
    ("apt_proxy", 'http://198.51.100.1:3128"; DPkg::Pre-Invoke {"id";}; "', "URL", {}),
    ("apt_proxy", 'http://198.51.100.1/"x', "URL", {}),
    ("dmarc_rua", ["mailto:d@x!1m; pct=0"], "mailto:", {}),
    ("dmarc_rua", ["mailto:d@example.test!1m; pct=0"], "mailto:", {}),
    ("dmarc_rua", ["mailto:d@example.test,mailto:e@example.test"], "mailto:", {}),
    ("dns_tsig_key_name", "mailhost\ndns_rfc2136_server = 198.51.100.99", "control characters",
     {}),
    ("dns_tsig_key_name", "mailhost = x", "DNS name", {}),
    ("dns_tsig_key_name", "key name", "DNS name", {}),
    ("mail_users", ["../../../../etc/cron.d@example.test"], "local part", {}),
    ("mail_users", ["a|b@example.test"], "local part", {}),
    ("mail_users", ["a#b@example.test"], "local part", {}),
    ("mail_users", ["o'brien@example.test"], "local part", {}),
    ("mail_users", ["$user@example.test"], "local part", {}),
    ("mail_users", ["a/b@example.test"], "local part", {}),
    ("mail_users", ["a b@example.test"], "local part", {}),
    ("mail_users", ['"a"@example.test'], "local part", {}),
    ("mail_users", ["a:b@example.test"], "local part", {}),
    ("mail_users", ["a,b@example.test"], "local part", {}),
    ("mail_users", ["a+b@example.test"], "local part", {}),
    ("mail_users", [".a@example.test"], "local part", {}),
    ("mail_users", ["a..b@example.test"], "local part", {}),
    ("mail_users", ["a.@example.test"], "local part", {}),
    ("mail_users", ["-a@example.test"], "local part", {}),
    ("mail_users", ["x" * 65 + "@example.test"], "local part", {}),
    ("mail_users", ["@example.test"], "e-mail address", {}),
    ("mail_users", ["alice@example.test", "Alice@example.test"], "each user once", {}),
    # addresses
    ("ipv4", "10.1.2.3", "public IPv4", {}),
    ("ipv4", "172.16.0.1", "public IPv4", {}),
    ("ipv4", "192.168.1.1", "public IPv4", {}),
    ("ipv4", "169.254.1.1", "public IPv4", {}),
    ("ipv4", "255.255.255.255", "public IPv4", {}),
    ("ipv4", "100.64.0.1", "public IPv4", {}),
    ("ipv4", "0.0.0.0", "public IPv4", {}),
    ("ipv4", "224.0.0.1", "public IPv4", {}),
    ("ipv4", "240.0.0.1", "public IPv4", {}),
    ("ipv4", "127.0.0.1", "public IPv4", {}),
    ("ipv4", "198.51.100.300", "public IPv4", {}),
    ("ipv4", "198.51.100.10\t", "public IPv4", {}),
    ("ipv4", "198.51.100.10", "documentation ranges are only for a lab", PRODUCTION),
    ("ipv6", "::ffff:198.51.100.10", "global IPv6", {}),
    ("ipv6", "fc00::1", "global IPv6", {}),
    ("ipv6", "fd12:3456::1", "global IPv6", {}),
    ("ipv6", "fe80::1", "global IPv6", {}),
    ("ipv6", "fec0::1", "global IPv6", {}),
    ("ipv6", "ff02::1", "global IPv6", {}),
    ("ipv6", "::1", "global IPv6", {}),
    ("ipv6", "::", "global IPv6", {}),
    ("ipv6", "2002:c633:640a::1", "global IPv6", {}),
    ("ipv6", "2001:db8::zz", "global IPv6", {}),
    ("ipv6", "2001:db8::10", "documentation ranges are only for a lab", PRODUCTION),
    ("dns_server", "198.51.100.1%eth0", "host name or an IP address", {}),
    ("dns_server", "ns1.example.test;rm", "host name or an IP address", {}),
    ("check_resolver", "0.0.0.0", "not unspecified", {}),
    ("check_resolver", "198.51.100.1%1", "without %scope", {}),
    ("check_nameservers", ["198.51.100.1\n"], "control characters", {}),
    # names
    ("mail_hostname", "mail..example.test", "fully qualified", {}),
    ("mail_hostname", "mail_x.example.test", "fully qualified", {}),
    ("mail_hostname", "mail.example.test/x", "fully qualified", {}),
    ("mail_hostname", "x" * 64 + ".example.test", "fully qualified", {}),
    ("mail_hostname", "mail.example.123", "not an IP address", {}),
    ("mail_hostname", "mail.ex\u00e4mple\u2044.test", "international name", {}),
    ("mail_domains", ["example-.test"], "fully qualified", {}),
    ("mail_domains", ["a" * 250 + ".test"], "fully qualified", {}),
    ("spf_include", ["_spf .example.org"], "fully qualified", {}),
    ("caa_issuers", ['letsencrypt.org" 0 issue "evil.example'], "fully qualified", {}),
    ("dnsbl_zones", ["zen.spamhaus.org\n"], "control characters", {}),
    ("dkim_selector", "mail;x", "one DNS label", {}),
    ("dkim_selector", "mail.x", "one DNS label", {}),
    ("dkim_ed25519_selector", "ed 1", "one DNS label", {}),
    # URIs and URLs
    ("dmarc_rua", ["mailto:d@example.test!"], "mailto:", {}),
    ("dmarc_rua", ["mailto:d@example.test!1x"], "mailto:", {}),
    ("dmarc_rua", ["https://example.test/dmarc"], "mailto:", {}),
    ("dmarc_ruf", ["mailto:d@example.test?subject=x"], "mailto:", {}),
    ("tlsrpt_rua", ["mailto:t@example.test!10m"], "mailto:ADDRESS or an https://", {}),
    ("tlsrpt_rua", ["http://example.test/tlsrpt"], "mailto:ADDRESS or an https://", {}),
    ("tlsrpt_rua", ["https://example.test/r;x=1"], "https://", {}),
    ("caa_iodef", 'mailto:sec@example.test"', "mailto:ADDRESS", {}),
    ("acme_directory", "http://acme.example.test/dir", "https:// URL", PRODUCTION),
    ("acme_directory", "https://acme.example.test/dir#x", "no user, query or fragment", {}),
    ("acme_directory", "https://acme.example.test:99999/dir", "https://", {}),
    ("acme_directory", "https:///dir", "https://", {}),
    ("acme_directory", "https://acme example.test/dir", "https://", {}),
    ("cloudflare_api_url", "http://api.example.test/client/v4", "https:// URL", PRODUCTION),
    ("apt_proxy", "ftp://198.51.100.1:3128", "URL", {}),
    # users and aliases
    ("mail_users", ["alice@other.test"], "in mail_domains", {}),
    ("mail_aliases", {"sales@other.test": ["alice@example.test"]}, "in mail_domains", {}),
    ("mail_aliases", {"a@example.test": ["a@example.test"]}, "alias loop", {}),
    ("mail_aliases", {"a@example.test": ["b@example.test"], "b@example.test": ["c@example.test"],
                      "c@example.test": ["a@example.test"]}, "alias loop", {}),
    ("mail_aliases", {"sales@example.test": ["not an address"]}, "e-mail address", {}),
    ("mail_aliases", {"sales@example.test": ["a@b@example.test"]}, "e-mail address", {}),
    ("mail_aliases", {"sales@example.test": []}, "at least one target", {}),
    ("acme_email", "postmaster@example.test>", "e-mail address", {}),
    ("check_outside_recipient", "a|b@example.net", "local part", {}),
    # numbers, choices, paths
    ("dns_port", True, "whole number", {}),
    ("dns_port", "0x35", "whole number", {}),
    ("dns_port", 0, "from 1 to 65535", {}),
    ("dmarc_pct", 50.5, "whole number", {}),
    ("ipv6_prefixlen", 129, "from 8 to 128", {}),
    ("dns_tsig_algorithm", "HMAC-SHA256\n", "hmac-sha256", {}),
    ("mta", "postfix\n", "'postfix' or 'chasquid'", {}),
    ("secrets_file", "secrets.toml\nx", "control characters", {}),
    ("check_outbound_smtp", "mx.example.net:0", "HOST:PORT", {}),
    ("check_outbound_smtp", "mx.example.net:25 x", "HOST:PORT", {}),
    ("lab_allowances", "yes please", "True or False", {}),
    ("greylisting", "yes please", "True or False", {}),
    ("dane", "on", "'auto' or 'off'", {}),
    ("dane", "auto\nsmtp_tls_security_level = none", "'auto' or 'off'", {}),
    ("greylisting", "true\nenabled = false;", "True or False", {}),
    ("spam_test_patterns", "on; gtube", "True or False", {}),
    ("spam_test_patterns", True, "only for a lab", PRODUCTION),
    ("parked_domains", ["example.test"], "not in mail_domains", {}),
    ("parked_domains", ["parked.example.org"], "inside a zone", {}),
    ("acme_tsig_secret", "c2VjcmV0LXZhbHVl", "never read from the inventory", {}),
    ("cloudflare_acme_api_token", "token-value-1234", "never read from the inventory", {}),
    ("dns_acme_tsig_key_name", "vps acme", "DNS name", {}),
    # IMAP (Dovecot)
    ("mailbox_quota", "2G\nquota_rule2 = *:storage=0", "control characters", {}),
    ("mailbox_quota", "2G quota_rule2=x", "500M or 2G", {}),
    ("mailbox_quota", "2G}", "500M or 2G", {}),
    ("mailbox_quota", "2GB", "500M or 2G", {}),
    ("mailbox_quota", "0G", "500M or 2G", {}),
    ("mailbox_quota", "-1G", "500M or 2G", {}),
    ("mailbox_quota", "1.5G", "500M or 2G", {}),
    ("mailbox_quota", "2%", "500M or 2G", {}),
    ("mailbox_quota", "1234567M", "500M or 2G", {}),
    ("mailbox_quota", 2, "500M or 2G", {}),
    ("mailbox_quota", "%{user}", "500M or 2G", {}),
    ("imap_starttls", "maybe", "True or False", {}),
    ("imap_starttls", "yes\nprotocols = pop3", "True or False", {}),
    ("imap_startls", True, "did you mean imap_starttls", {}),
    ("mailbox_quotas", "2G", "did you mean mailbox_quota", {}),
    # backups (restic): the repository, its host key, the schedule, the retention, restore
    ("backup_repository", "ftp://backup.example.com/mail", "sftp:USER@HOST:/PATH", {}),
    ("backup_repository", "sftp:root@backup.example.com:/x;reboot", "sftp:USER@HOST:/PATH", {}),
    ("backup_repository", "sftp:root@backup.example.com:/../etc", "sftp:USER@HOST:/PATH", {}),
    ("backup_repository", "sftp:-oProxyCommand=x@h:/r", "sftp:USER@HOST:/PATH", {}),
    ("backup_repository", "sftp:root@backup.example.com:/r\nExecStart=/bin/sh",
     "control characters", {}),
    ("backup_repository", "s3:https://s3.example.com", "names no bucket", {}),
    ("backup_repository", "s3:http://s3.example.com/b", "https:// S3 URL", PRODUCTION),
    ("backup_repository", "srv/backup", "absolute path", {}),
    ("backup_repository", "/srv/backup\nrm -rf /", "control characters", {}),
    ("backup_sftp_host_key", "ssh-dss AAAAB3", "public host key", {
        "backup_repository": "sftp:root@backup.example.com:/r"}),
    ("backup_sftp_host_key", "ssh-ed25519 AAAA\"; reboot", "public host key", {
        "backup_repository": "sftp:root@backup.example.com:/r"}),
    ("backup_sftp_host_key", "ssh-ed25519 AAAAC3Nz", "unless backup_repository is sftp:",
     {"backup_repository": "/srv/backup"}),
    ("backup_schedule", "daily\nExecStartPre=/bin/sh -c reboot", "control characters", {}),
    ("backup_schedule", "every night", "OnCalendar", {}),
    ("backup_schedule", "*-*-* 03:30; reboot", "OnCalendar", {}),
    ("backup_keep_daily", -1, "from 0 to 3650", {}),
    ("backup_keep_monthly", "12; rm", "whole number", {}),
    ("backup_keep_daily", 0, "at least one of", {"backup_repository": "/srv/backup",
                                                  "backup_keep_weekly": 0,
                                                  "backup_keep_monthly": 0}),
    ("restore_from_backup", True, "without backup_repository", {}),
    ("restore_from_backup", "sometimes", "True or False", {}),
    ("backup_password", "hunter2hunter2", "never read from the inventory", {}),
    # a key's first line only (split: no tracked file holds a private key's header)
    ("backup_ssh_key", "-----BEGIN OPENSSH " + "PRIVATE KEY-----",
     "never read from the inventory", {}),
    ("backup_repositry", "/srv/backup", "did you mean backup_repository", {}),
    # --- issue 25: every key is known or refused (the model's fields, pyinfra's own) ---
    ("dmark_policy", "reject", "unknown setting; did you mean dmarc_policy?", {}),
    ("relayhost", "[smtp.relay.example]:587", "did you mean relay_host?", {}),
    ("MAIL_HOSTNAME", "mail.example.test", "did you mean mail_hostname?", {}),
    ("mx_kep", ["20 mx2.example.net"], "did you mean mx_keep?", {}),
    ("mx_keeps", ["20 mx2.example.net"], "did you mean mx_keep?", {}),
    ("dane_mode", "auto", "did you mean dane?", {}),
    ("mta_type", "chasquid", "unknown setting", {}),
    ("tls_rpt_rua", ["mailto:tls@example.test"], "did you mean tlsrpt_rua?", {}),
    ("ttl", 300, "did you mean dns_ttl?", {}),
    ("quota", "2G", "unknown setting", {}),
    ("users", ["alice@example.test"], "did you mean mail_users?", {}),
    ("aliases", {"a@example.test": ["b@example.net"]}, "did you mean mail_aliases?", {}),
    ("ip6", "2001:db8::10", "did you mean ipv6?", {}),
    ("maildomains", ["example.test"], "did you mean mail_domains?", {}),
    ("dnssec", True, "unknown setting", {}),
    # a misspelled secret: named, never shown, and where it goes instead
    ("relay_passwd", "hunter2hunter2", "set MAILHOST_RELAY_PASSWORD", {}),
    ("cloudflare_token", "cf-token-0123456789", "set CLOUDFLARE_API_TOKEN", {}),
    ("dns_tsig_key_secret", "c2VjcmV0IG9mIHRoZSBsYWI=", "set MAILHOST_TSIG_SECRET", {}),
    ("backup_passphrase", "correct horse battery", "set MAILHOST_BACKUP_PASSWORD", {}),
    # accepted, then mail broke: refused in one line now
    ("mail_aliases", {"alice@example.test": ["alice@elsewhere.example"]},
     "alice@example.test is a mailbox", {"mail_users": ["alice@example.test"]}),
    ("mail_aliases", {"sales@example.test": ["bobb@example.test"]}, "would bounce",
     {"mail_users": ["bob@example.test"]}),
    ("relay_host", "[mail.example.test]:587", "the mail host itself",
     {"relay_user": "mailhost"}),
    ("parked_domains", ["mail.example.test"], "other than mail_hostname", {}),
    ("spf_include", ["example.test"], "including itself is a loop", {}),
    ("backup_schedule", "99:99", "OnCalendar", {}),
    ("backup_schedule", "Mon..Fri 25:00", "OnCalendar", {}),
    ("backup_schedule", "*", "OnCalendar", {}),
    ("backup_repository", "/var/mail/vhosts/restic", "apart from /var/mail/vhosts", {}),
    ("mail_hostname", "mail.xn--zz.test", "not a valid international (xn--) label", {}),
    ("mail_domains", ["xn--ls8h.test"], "IDNA2008", {}),  # an emoji
    ("mail_hostname", "mail.\u0440\u0430\u0443.test", "look like Latin ones (it reads as 'pay')",
     {}),  # all Cyrillic
    ("mail_hostname", "xn--mil-6cd.example.test", "mixes Latin letters with U+0430", {}),
    ("lab_allowances", "on", "True or False", {}),
    # ...and of our own: keys
    ("spf_includes", ["_spf.google.com"], "did you mean spf_include?", {}),
    ("mail_user", ["alice@example.test"], "did you mean mail_users?", {}),
    ("acme_mail", "postmaster@example.test", "did you mean acme_email?", {}),
    ("backup_repo", "/srv/backup", "did you mean backup_repository?", {}),
    ("ssh_hostnme", "198.51.100.10", "did you mean ssh_hostname?", {}),
    ("_sduo", True, "did you mean _sudo?", {}),
    ("Dmarc_Policy", "reject", "did you mean dmarc_policy?", {}),
    ("dns_tsig_key", "c2VjcmV0IG9mIHRoZSBsYWI=", "its value is not shown", {}),
    ("smtp_auth_password", "hunter2hunter2", "not shown", {}),
    ("cloudflare_api_key", "0123456789abcdef", "set CLOUDFLARE_API_TOKEN", {}),
    ("mail_password", "hunter2hunter2", "MAILHOST_PASSWORD_<USER>_<DOMAIN>", {}),
    # booleans are booleans
    ("greylisting", 1, "True or False", {}),
    ("dns_force", "yes", "True or False", {}),
    ("imap_starttls", 0, "True or False", {}),
    ("dkim_ed25519", "off", "True or False", {}),
    ("restore_from_backup", "false", "True or False", {}),
    # aliases
    ("mail_aliases", {"sales@example.test": ["info@parked.example.test"]},
     "parked_domains", {"parked_domains": ["parked.example.test"]}),
    ("mail_aliases", {"sales@example.test": ["sales@example.test", "bob@example.net"]},
     "alias loop: sales@example.test -> sales@example.test", {}),
    ("mail_aliases", {f"a{i}@example.test": [f"a{i + 1}@example.test"] for i in range(10)}
     | {"a10@example.test": ["bob@example.net"]}, "at most 9 aliases in a chain", {}),
    ("mail_aliases", {"info@example.test": ["alice@example.test"]}, "would bounce", {}),
    ("mail_aliases", {"bob@example.test": ["bob@example.net"]}, "bob@example.test is a mailbox",
     {"mail_users": ["alice@example.test", "bob@example.test"]}),
    ("mail_aliases", {1: ["bob@example.net"]}, "expected addresses (text) as its keys", {}),
    ("mail_aliases", {"a@example.test": "bob@example.net"}, "a list of targets", {}),
    ("mail_users", "alice@example.test", "a list of e-mail addresses", {}),
    # the host's own names
    ("relay_host", "[mail.example.test]:465", "the mail host itself", {"relay_user": "m"}),
    ("parked_domains", ["MAIL.EXAMPLE.TEST."], "other than mail_hostname", {}),
    ("spf_include", ["_spf.google.com", "EXAMPLE.TEST"], "including itself", {}),
    # schedules, as systemd parses them
    ("backup_schedule", "Mon..Fri 24:00", "OnCalendar", {}),
    ("backup_schedule", "*-*-32 03:00", "OnCalendar", {}),
    ("backup_schedule", "03:60", "OnCalendar", {}),
    ("backup_schedule", "Monday-ish 03:00", "OnCalendar", {}),
    ("backup_schedule", "nightly", "OnCalendar", {}),
    # a repository apart from what it backs up
    ("backup_repository", "/var/mail/vhosts", "apart from /var/mail/vhosts", {}),
    ("backup_repository", "/var/mail", "apart from /var/mail/vhosts", {}),
    ("backup_repository", "/etc/mailhost/dkim/restic", "apart from /etc/mailhost/dkim", {}),
    ("backup_repository", "/etc/letsencrypt/restic", "apart from /etc/letsencrypt", {}),
    # names: IDNA2008, then look-alikes judged on the decoded label
    ("dns_server", "ns1.xn--zz.test", "host name or an IP address", {}),
    ("caa_issuers", ["xn--ls8h.example"], "IDNA2008", {}),
    ("spf_include", ["_spf.xn--a.example"], "IDNA2008", {}),
    ("mail_domains", ["xn--exmple-4nf.test"], "mixes Latin letters with U+0430", {}),
    ("mail_aliases", {"fwd@example.test": ["bob@xn--ggle-55da.com"]}, "U+043E", {}),
    ("dnsbl_zones", ["\u03ba\u03bf\u03ba\u03bf.example"], "Greek letters", {}),
    ("check_outside_recipient", "postmaster@xn--80ak6aa92e.com", "it reads as 'apple'", {}),
]


@pytest.fixture
def no_connections(monkeypatch):
    """Any connection attempt fails the test: settings are refused before any."""
    def refuse(*args, **kwargs):
        raise AssertionError("a connection was attempted while validating settings")

    popen = subprocess.Popen

    def only_systemd_analyze(args, *rest, **kwargs):
        """systemd's own calendar parser runs (locally, no connection); nothing else."""
        if Path(args[0]).name != "systemd-analyze":
            refuse()
        return popen(args, *rest, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(subprocess, "Popen", only_systemd_analyze)


def test_the_table_is_large_enough():
    assert len(BAD) >= 80 + 34 + 30  # issue 25: its cases and at least 30 of our own


@pytest.mark.parametrize(("key", "value", "expected", "others"), BAD,
                         ids=[f"{k}={v!r}"[:70] for k, v, _, _ in BAD])
def test_bad_input_is_refused_with_one_line(key, value, expected, others, no_connections):
    data = {**BASE, **others, key: value}
    with pytest.raises(SettingsError) as raised:
        load_settings(data)
    line = str(raised.value)
    assert "\n" not in line, line
    assert line.startswith(f"settings: {key}"), line
    assert expected in line, line
    if key not in Settings.model_fields and (looks_secret(key) or key in SECRET_KEYS):
        assert str(value) not in line and "not shown" in line  # a secret is never echoed back
    elif isinstance(value, str | int | float):
        assert repr(value) in line, line  # the value as given, escaped


# credentials typed into a setting: refused, shown masked, and the line says where they go
CREDENTIALS = [
    # (key, value, the secret part, the value as the line shows it, where it goes)
    ("backup_repository", "s3:https://AKIAEXAMPLE:wJalrXUtnFEMI@s3.example.com/bucket",
     "wJalrXUtnFEMI", "'s3:https://***@s3.example.com/bucket'",
     "MAILHOST_BACKUP_S3_SECRET_ACCESS_KEY"),
    ("backup_repository", "sftp:restic:Pa55word-x@backup.example.com:/r", "Pa55word-x",
     "'sftp:restic:***@backup.example.com:/r'", "MAILHOST_BACKUP_SSH_KEY"),
    ("backup_repository", "s3:https://s3.example.com/b?X-Amz-Signature=0f1e2d", "0f1e2d",
     "'s3:https://s3.example.com/b?***'", "MAILHOST_BACKUP_S3_ACCESS_KEY_ID"),
    ("acme_directory", "https://acct:s3cr3t-x@acme.example.test/dir", "s3cr3t-x",
     "'https://***@acme.example.test/dir'", "this setting takes none"),
    ("apt_proxy", "http://proxyuser:pr0xy-pw@198.51.100.1:3128", "pr0xy-pw",
     "'http://***@198.51.100.1:3128'", "this setting takes none"),
    ("apt_proxy", "http://198.51.100.1:3128/?token=t0k3n", "t0k3n",
     "'http://198.51.100.1:3128/?***'", "this setting takes none"),
    ("cloudflare_api_url", "https://api.example.test/client/v4?token=cf-T0KEN", "cf-T0KEN",
     "'https://api.example.test/client/v4?***'", "CLOUDFLARE_API_TOKEN"),
    ("mail_users", ["alice@example.test:hunter2hunter2"], "hunter2hunter2",
     "'alice@example.test:***'", "MAILHOST_PASSWORD_<USER>_<DOMAIN>"),
    ("relay_user", "alice@example.test:relay-pw-99", "relay-pw-99", "'alice@example.test:***'",
     "MAILHOST_RELAY_PASSWORD"),
    ("relay_user", "apikey:SG.abc.def", "SG.abc.def", "'apikey:***'", "MAILHOST_RELAY_PASSWORD"),
    ("tlsrpt_rua", ["https://rep:0rt-pw@reports.example.test/tls"], "0rt-pw",
     "'https://***@reports.example.test/tls'", "this setting takes none"),
    ("caa_iodef", "https://u:i0def-pw@example.test/iodef", "i0def-pw",
     "'https://***@example.test/iodef'", "this setting takes none"),
    ("dmarc_rua", ["mailto:dmarc@example.test:d-pw-1"], "d-pw-1",
     "'mailto:dmarc@example.test:***'", "this setting takes none"),
    ("acme_email", "postmaster@example.test:acme-pw-2", "acme-pw-2",
     "'postmaster@example.test:***'", "this setting takes none"),
    ("check_outside_recipient", "postmaster@gmail.com:gm-pw-3", "gm-pw-3",
     "'postmaster@gmail.com:***'", "this setting takes none"),
]


@pytest.mark.parametrize(("key", "value", "secret", "masked", "where"), CREDENTIALS,
                         ids=[f"{k}-{i}" for i, (k, *_) in enumerate(CREDENTIALS)])
def test_credentials_in_a_setting_are_refused_masked(key, value, secret, masked, where,
                                                     no_connections):
    with pytest.raises(SettingsError) as raised:
        load_settings({**BASE, "relay_host": "[smtp.relay.example]:587", "relay_user": "m",
                       key: value})
    line = str(raised.value)
    assert "\n" not in line and line.startswith(f"settings: {key}"), line
    assert secret not in line, line
    assert f" = {masked}: expected no credentials" in line and where in line, line


def test_a_non_string_key_of_a_python_inventory_is_one_line(no_connections):
    for key, shown in [(1, "a key 1 of type int"), (("mail", "x"), "a key ('mail', 'x') of "
                                                                     "type tuple"),
                       (None, "a key None of type NoneType"),
                       (2 ** 100000, "a key (a large int)")]:
        with pytest.raises(SettingsError) as raised:
            load_settings({**BASE, key: "x"})
        assert str(raised.value).startswith(f"settings: {shown}"), raised.value
        assert "expected a setting's name" in str(raised.value)


@pytest.mark.parametrize("data", [
    {"dns_tsig_key_name": "k" * 10_000_000},  # 10 MB
    {"mail_users": ["x" * 5000 + "@example.test"]},
    {"mail_aliases": {"a@example.test": ["b" * 20_000 + "@example.net"]}},
    {"mail_aliases": {"a" * 9000 + "@example.test": ["b@example.net"]}},
], ids=["10MB", "in-a-list", "alias-target", "alias-key"])
def test_an_over_long_value_is_refused_with_its_length_never_echoed(data, no_connections):
    with pytest.raises(SettingsError) as raised:
        load_settings({**BASE, **data})
    line = str(raised.value)
    assert re.fullmatch(r"settings: [a-z_]+: a text of [0-9]+ characters \(not shown\); "
                        r"expected at most 4096", line), line


def test_an_over_long_key_or_number_is_not_echoed(no_connections):
    with pytest.raises(SettingsError) as raised:
        load_settings({**BASE, "k" * 1_000_000: 1})
    assert len(str(raised.value)) < 200 and "1000000 characters" in str(raised.value)
    with pytest.raises(SettingsError) as raised:
        load_settings({**BASE, "dns_ttl": 10 ** 5000})  # repr() itself would fail on it
    assert str(raised.value) == ("settings: dns_ttl = (a number of 16610 bits): expected a TTL "
                                 "in seconds from 60 to 86400")


def test_a_long_alias_chain_or_loop_is_one_line_without_recursion(no_connections):
    chain = {f"a{i}@example.test": [f"a{i + 1}@example.test"] for i in range(1200)}
    chain["a1200@example.test"] = ["alice@example.test"]
    users = {"mail_users": ["alice@example.test"]}
    with pytest.raises(SettingsError) as raised:
        load_settings({**BASE, **users, "mail_aliases": chain})
    line = str(raised.value)
    assert "at most 9 aliases in a chain" in line and "this one has 1201" in line
    assert len(line) < 600 and "(1193 more)" in line, line
    loop = {f"a{i}@example.test": [f"a{(i + 1) % 1200}@example.test"] for i in range(1200)}
    with pytest.raises(SettingsError) as raised:
        load_settings({**BASE, **users, "mail_aliases": loop})
    assert "expected no alias loop: a0@example.test -> a1@example.test" in str(raised.value)


@pytest.mark.parametrize("relay", ["mail.example.test:587", "[MAIL.Example.TEST.]:465",
                                   "Mail.Example.Test:465"])
def test_a_relay_that_is_the_host_itself_in_any_spelling_is_refused(relay, no_connections):
    with pytest.raises(SettingsError, match="the mail host itself"):
        load_settings({**BASE, "relay_host": relay, "relay_user": "mailhost"})


def test_keep_a_copy_and_forward_and_a_chain_of_nine_pass():
    settings = load_settings({**BASE, "mail_users": ["alice@example.test", "bob@example.test"],
                              "mail_aliases": {
                                  "alice@example.test": ["alice@example.test",
                                                         "alice@elsewhere.example"],
                                  "sales@example.test": ["alice@example.test"],
                                  **{f"a{i}@example.test": [f"a{i + 1}@example.test"]
                                     for i in range(8)},
                                  "a8@example.test": ["bob@example.test"]}})
    assert settings.mail_aliases["alice@example.test"] == ["alice@example.test",
                                                           "alice@elsewhere.example"]


@pytest.mark.parametrize("schedule", ["daily", "*-*-* 03:30", "Mon..Fri 02:00", "*:0/15",
                                      "Sat,Sun 04:00", "03:30", "*-*-01 04:00:30",
                                      "*-12-31 23:59:59", "Mon *-*-1..7 02:00"])
@pytest.mark.parametrize("parser", ["systemd-analyze", "fallback"])
def test_schedules_systemd_takes_pass_with_either_parser(schedule, parser, monkeypatch):
    if parser == "fallback":
        _without_systemd_analyze(monkeypatch)
    assert load_settings({**BASE, "backup_schedule": schedule}).backup_schedule == schedule


@pytest.mark.parametrize("schedule", ["99:99", "Mon..Fri 25:00", "*", "03:60", "24:00",
                                      "nightly", "*-*-* 03:30; reboot", "*-*-32 03:00",
                                      "*-13-01 03:00", "2026-00-10 03:00"])
def test_the_fallback_parser_refuses_what_systemd_refuses(schedule, monkeypatch):
    assert subprocess.run(["systemd-analyze", "calendar", "--", schedule],
                          capture_output=True, check=False).returncode != 0
    _without_systemd_analyze(monkeypatch)
    with pytest.raises(SettingsError, match="OnCalendar"):
        load_settings({**BASE, "backup_schedule": schedule})


def _without_systemd_analyze(monkeypatch):
    monkeypatch.setattr(backup_values.shutil, "which", lambda name: None)
    backup_values._systemd_says.cache_clear()
    monkeypatch.setattr(backup_values, "_systemd_says", backup_values._systemd_says.__wrapped__)


@pytest.mark.parametrize("content, expected", [
    ("key", "this file holds a private key (not shown"),  # a private key alone
    ("cert+key", "this file holds a private key (not shown"),  # a bundle with a key in it
    ("binary", "expected a PEM file of certificates only"),
    ("empty", "expected a PEM file of certificates only"),
    ("truncated", "expected a PEM file of certificates only"),
    ("public key", "expected a PEM file of certificates only"),
])
@pytest.mark.parametrize("key", ["acme_ca_bundle", "check_ca_file"])
def test_a_ca_bundle_is_certificates_only(content, expected, key, tmp_path, no_connections):
    certificate, private_key, cert = self_signed_pem("ca.example.test", -1, 30)
    public = cert.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    data = {"key": private_key, "cert+key": certificate + private_key,
            "binary": bytes(range(256)) * 4, "empty": b"", "truncated": certificate[:300],
            "public key": certificate + public}[content]
    path = tmp_path / "bundle.pem"
    path.write_bytes(data)
    with pytest.raises(SettingsError) as raised:
        load_settings({**BASE, key: str(path)})
    line = str(raised.value)
    assert line.startswith(f"settings: {key} = {str(path)!r}: ") and expected in line, line
    assert "BEGIN" not in line.replace("-----BEGIN CERTIFICATE-----", "")
    path.write_bytes(certificate + certificate)  # certificates alone pass
    assert getattr(load_settings({**BASE, key: str(path)}), key) == str(path)


def test_every_key_of_pyinfra_and_of_the_model_is_known(no_connections):
    """pyinfra's keys come from pyinfra (its connectors' data, its global arguments), and a
    setting added to the model is known by being there: no list of ours to keep."""
    assert {"ssh_hostname", "ssh_port", "ssh_key", "_sudo", "_su_user", "_env"} <= pyinfra_keys()
    for key in pyinfra_keys():
        assert key not in Settings.model_fields
    values = {"_sudo": True, "ssh_hostname": "198.51.100.10", "ssh_user": "root",
              "ssh_port": 22, "_sudo_user": "root", "ssh_strict_host_key_checking": "yes"}
    load_settings({**BASE, **values})

    class Grown(Settings):
        webmail: bool = False

    known = frozenset(Grown.model_fields)
    refuse_unknown_keys({**BASE, "webmail": True}, known, SECRET_KEYS)
    with pytest.raises(SettingsError, match="did you mean webmail"):
        refuse_unknown_keys({**BASE, "webmial": True}, known, SECRET_KEYS)


@pytest.mark.parametrize("domain, punycode", [
    ("\u043f\u0440\u0438\u043c\u0435\u0440.test", "xn--e1afmkfd.test"),  # Cyrillic alone
    ("\u03c0\u03b1\u03c1\u03ac\u03b4\u03b5\u03b9\u03b3\u03bc\u03b1.test",
     "xn--hxajbheg2az3al.test"),  # Greek alone
    ("\u4f8b\u3048.test", "xn--r8jz45g.test"),  # Han with Hiragana
    ("b\u00fccher-shop.test", "xn--bcher-shop-9db.test")])  # Latin with a diacritic
def test_an_international_name_in_one_script_passes_as_punycode(domain, punycode):
    settings = load_settings({**BASE, "mail_domains": [domain], "mail_hostname": f"mail.{domain}",
                              "mail_users": [f"alice@{domain}"], "mail_aliases": {},
                              "dns_zones": [domain]})
    assert settings.mail_domains == [punycode]


BAD_KEYS = [  # (variable, value, what the line says); a newline would add a line to certbot's
    # credentials file on the host (dns_rfc2136_secret = ...)
    ("MAILHOST_TSIG_SECRET", "c2VjcmV0IG9mIHRoZSBsYWI=\ndns_rfc2136_server = 203.0.113.9",
     "no spaces or control characters"),
    ("MAILHOST_TSIG_SECRET", "not-base64!!", "not base64"),
    ("MAILHOST_TSIG_SECRET", "c2VjcmV0 IG9m", "no spaces"),
    ("MAILHOST_ACME_TSIG_SECRET", "%%%%", "not base64"),
    ("CLOUDFLARE_API_TOKEN", "abcdefghij klmnopqrst", "one word"),
    ("CLOUDFLARE_ACME_API_TOKEN", "Zq9\r\nX-Injected: 1", "control characters"),
]


@pytest.mark.parametrize(("variable", "value", "expected"), BAD_KEYS,
                         ids=[v for v, _, _ in BAD_KEYS])
def test_a_malformed_key_or_token_is_refused_naming_it_never_showing_it(variable, value,
                                                                        expected, tmp_path):
    settings = load_settings({
        **BASE, "secrets_file": str(tmp_path / "none.toml"), "acme_challenge": "dns-01",
        "dns_acme_tsig_key_name": "acme-key",
        "dns_provider": "cloudflare" if "CLOUDFLARE" in variable else "rfc2136"})
    environ = {"MAILHOST_TSIG_SECRET": "c2VjcmV0IG9mIHRoZSBsYWI=",
               "MAILHOST_ACME_TSIG_SECRET": "c2VjcmV0IG9mIHRoZSBsYWI=",
               "CLOUDFLARE_API_TOKEN": "t" * 40, "CLOUDFLARE_ACME_API_TOKEN": "a" * 40,
               **{f"MAILHOST_PASSWORD_{u}": "a long password 1" for u in (
                   "ALICE_EXAMPLE_TEST", "BOB_EXAMPLE_TEST")},
               variable: value}
    with pytest.raises(SettingsError) as raised:
        load_secrets(settings, environ)
    line = str(raised.value)
    assert "\n" not in line and variable in line and expected in line, line
    assert value not in line and value.split()[0] not in line


BAD_PASSWORDS = ["short", "eleven char", "twelve chars\n", "a tab\tin the middle",
                 "nul\x00in the middle", "delete \x7f character", "\nleading newline ok?"]


@pytest.mark.parametrize("password", BAD_PASSWORDS, ids=range(len(BAD_PASSWORDS)))
def test_bad_password_names_the_user_never_the_password(password, tmp_path, no_connections):
    settings = load_settings({**BASE, "mail_users": ["alice@example.test"],
                              "secrets_file": str(tmp_path / "none.toml")})
    environ = {"MAILHOST_TSIG_SECRET": "eA==", "MAILHOST_PASSWORD_ALICE_EXAMPLE_TEST": password}
    with pytest.raises(SettingsError) as raised:
        load_secrets(settings, environ=environ)
    line = str(raised.value)
    assert line.startswith("secrets: password of alice@example.test: expected"), line
    assert "\n" not in line and password not in line and password.strip() not in line


# --- values that pass, as nasty as the types allow, render files of the same structure ---

NASTY = {
    **BASE,
    "mail_hostname": "M" * 63 + ".B\u00fccher.example",
    "mail_domains": ["b\u00fccher.example", "a-b.example", "x" * 63 + ".example"],
    "ipv4": "198.51.100.254",
    "ipv6": "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe",
    "ipv6_prefixlen": "128",
    "mail_users": ["a.b_c-d@b\u00fccher.example", "z" * 64 + "@a-b.example",
                   "0_-.-_9@" + "x" * 63 + ".example"],
    "mail_aliases": {
        "sales@a-b.example": ["a.b_c-d@xn--bcher-kva.example", "x+y=z@foreign.example"],
        "info@a-b.example": ["sales@a-b.example", "z" * 64 + "@a-b.example"],
        "postmaster@b\u00fccher.example": ["a.b_c-d@b\u00fccher.example"],
    },
    "apt_proxy": "http://[2001:db8::1]:65535/a-b_c.d~e/",
    "dkim_selector": "s" + "-" * 61 + "0",
    "dkim_rotate_days": 0,  # a 63-character selector leaves no room for a rotated key's date
    "dmarc_rua": ["mailto:a.b_c-d@b\u00fccher.example!999999999999999t"],
    "tlsrpt_rua": ["https://r.b\u00fccher.example:1/p/q-r_s.t~u%20v"],
    "imap_starttls": True,
    "mailbox_quota": "999999m",
}

MAIN_CF_KEYS = [
    "compatibility_level", "myhostname", "myorigin", "mydestination", "mynetworks",
    "inet_interfaces", "inet_protocols", "smtp_bind_address", "smtp_bind_address6",
    "smtp_address_preference", "biff", "append_dot_mydomain", "recipient_delimiter",
    "message_size_limit", "smtpd_banner", "virtual_mailbox_domains", "virtual_transport",
    "virtual_mailbox_maps", "virtual_alias_maps", "smtpd_tls_auth_only", "smtpd_helo_required",
    "disable_vrfy_command",
    "smtpd_client_auth_rate_limit", "tls_high_cipherlist",
]


def render(name: str, settings, **data) -> str:
    environment = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                              keep_trailing_newline=True)
    return environment.get_template(name).render(s=settings, p=paths, **data)


def settings_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def nasty():
    settings = load_settings(NASTY)
    passwords = {a: Secret('p\u00e4ss "w0rd" : {SHA512-CRYPT} $6$ \\ ,#') for a in
                 settings.mail_users}
    return settings, Secrets(None, None, passwords)


def test_nasty_values_pass_and_are_normalized(nasty):
    settings, _ = nasty
    assert settings.mail_hostname == "m" * 63 + ".xn--bcher-kva.example"
    assert settings.mail_users[0] == "a.b_c-d@xn--bcher-kva.example"
    assert settings.apt_proxy == "http://[2001:db8::1]:65535/a-b_c.d~e"


def test_main_cf_has_one_line_per_key(nasty):
    settings, _ = nasty
    text = postfix.rendered("main.cf", settings)
    lines = settings_lines(text)
    keys = [line.split(" = ")[0] for line in lines]
    assert all(re.fullmatch(r"[A-Za-z0-9_]+ = \S.*", line) for line in lines), lines
    assert len(keys) == len(set(keys))  # no key twice: nothing overrides a line above it
    assert set(MAIN_CF_KEYS) <= set(keys)
    assert f"virtual_mailbox_domains = {' '.join(settings.mail_domains)}" in lines
    assert f"smtp_bind_address6 = {settings.ipv6}" in lines


def test_master_cf_services_and_options(nasty):
    settings, _ = nasty
    lines = settings_lines(postfix.rendered("master.cf", settings))
    services = [line.split()[0] for line in lines if not line[0].isspace()]
    assert services.count("smtp") == 2  # smtpd (inet) and the smtp client (unix)
    assert len(set(services)) == len(services) - 1
    assert {"smtp", "submission", "submissions", "anvil"} <= set(services)
    for line in lines:
        if line[0].isspace():
            assert re.fullmatch(r"\s+-o [a-z0-9_]+=\S+", line), line
        else:
            assert len(line.split()) >= 8, line


def test_maps_have_one_entry_per_line(nasty):
    settings, _ = nasty
    mailboxes = mailbox_map(settings).splitlines()
    assert len(mailboxes) == len(settings.mail_users)
    assert all(len(line.split()) == 2 and ".." not in line for line in mailboxes)
    alias_lines = alias_map(settings).splitlines()
    assert len(alias_lines) == len(aliases(settings))
    for line, (address, targets) in zip(alias_lines, aliases(settings).items(), strict=True):
        assert line == f"{address} {', '.join(targets)}"
        assert re.fullmatch(r"\S+ \S+(, \S+)*", line)
    logins = sender_login_map(settings).splitlines()
    assert len(logins) == len(sender_owners(settings))
    assert all(re.fullmatch(r"\S+ \S+(, \S+)*", line) for line in logins)


def test_dovecot_passwd_has_one_line_per_user_with_a_random_salt(nasty):
    settings, secrets = nasty
    text = dovecot_users(settings, secrets, {})
    lines = text.splitlines()
    assert len(lines) == len(settings.mail_users)
    for line, address in zip(lines, settings.mail_users, strict=True):
        # passwd-file fields: user, password, uid, gid, gecos, home, shell, extra
        login, scheme_hash, uid, gid, gecos, home, shell, extra = line.split(":")
        assert login == address and scheme_hash.startswith("{SHA512-CRYPT}$6$rounds=210000$")
        assert (uid, gid, gecos, shell, extra) == ("5000", "5000", "", "", "")
        assert home == paths.dovecot_home(*reversed(address.split("@"))) and ".." not in home
        assert sha512_crypt.verify(secrets.passwords[address].reveal(),
                                   scheme_hash.removeprefix("{SHA512-CRYPT}"))
    salts = {line.split("$")[3] for line in lines}
    assert len(salts) == len(lines)  # same password, a different salt each
    assert dovecot_users(settings, secrets, {}) != text  # and a new one each time
    assert dovecot_users(settings, secrets, parse_dovecot_users(lines)) == text  # kept


def test_dovecot_passwd_rewrites_only_the_changed_user(nasty):
    settings, secrets = nasty
    first = dovecot_users(settings, secrets, {})
    changed = dict(secrets.passwords)
    changed[settings.mail_users[1]] = Secret("a brand new password")
    second = dovecot_users(settings, Secrets(None, None, changed),
                           parse_dovecot_users(first.splitlines()))
    differ = [a != b for a, b in zip(first.splitlines(), second.splitlines(), strict=True)]
    assert differ == [False, True, False]


def test_opendkim_tables_one_line_per_domain(nasty):
    settings, _ = nasty
    keys = opendkim.signing_keys(settings)
    key_table = settings_lines(render("opendkim/KeyTable.j2", settings, keys=keys))
    signing = settings_lines(render("opendkim/SigningTable.j2", settings, keys=keys))
    trusted = settings_lines(render("opendkim/TrustedHosts.j2", settings))
    assert len(key_table) == len(signing) == len(settings.mail_domains)
    assert all(len(line.split()) == 2 and line.count(":") == 2 for line in key_table)
    assert all(len(line.split()) == 2 for line in signing)
    assert trusted[-1] == settings.mail_hostname and len(trusted) == 4


def test_netplan_and_apt_conf(nasty):
    settings, _ = nasty
    netplan = render("base/netplan-ipv6.yaml.j2", settings, interface="eth0").splitlines()
    assert netplan[-1] == f'        - "{settings.ipv6}/128"'
    assert len(netplan) == 9
    apt = apt_proxy_conf(settings)
    assert apt == 'Acquire::http::Proxy "http://[2001:db8::1]:65535/a-b_c.d~e";\n'


# the only Dovecot 2.4 settings with %{...} variables: ours, never a setting's value
VARIABLE_SETTINGS = {"mail_home", "mail_path", "auth_username_format"}


@pytest.mark.parametrize("version", [(2, 3), (2, 4)])
@pytest.mark.parametrize("mta", ["postfix", "chasquid"])
def test_dovecot_conf_has_one_setting_per_line_and_balanced_blocks(nasty, version, mta):
    settings = nasty[0].model_copy(update={"mta": mta})
    text = render(dovecot.template_for(version), settings, **dovecot.render_data(settings))
    depth = 0
    for line in settings_lines(text):
        line = line.strip()
        if line.endswith("{"):
            assert re.fullmatch(r'[a-z_]+( [A-Za-z0-9_/.\-]+| "User quota")? \{', line), line
            depth += 1
        elif line == "}":
            depth -= 1
            assert depth >= 0
        else:
            assert re.fullmatch(r"[a-z_0-9]+ = \S.*", line), line
            assert "%{" not in line or line.split()[0] in VARIABLE_SETTINGS
    assert depth == 0
    assert "quota" in text and "999999M" in text and "port = 143" in text


def test_chasquid_files(nasty):
    settings, secrets = nasty
    conf = settings_lines(render("chasquid/chasquid.conf.j2", settings, deliver="/x/deliver",
                                 auth_userdb="/x/userdb", auth_client="/x/client"))
    assert all(re.fullmatch(r'[a-z_]+: ("[^"\n]*"|\d+|true)', line) for line in conf), conf
    assert f'hostname: "{settings.mail_hostname}"' in conf
    all_aliases = aliases(settings)
    for domain in settings.mail_domains:
        entries = [(a, t) for a, t in all_aliases.items() if a.endswith("@" + domain)]
        lines = settings_lines(render("chasquid/aliases.j2", settings, domain=domain,
                                      aliases=entries))
        assert len(lines) == len(entries)
        assert all(re.fullmatch(r"[a-z0-9._-]+: \S+(, \S+)*", line) for line in lines), lines
    hook = render("chasquid/post-data.py.j2", settings, owners=sender_owners(settings),
                  signing={})
    compile(hook, "post-data", "exec")  # still Python


def test_rspamd_files(nasty):
    """rspamd's files from the nastiest values: the From rule's owners table is one Lua entry
    per owned address, each a quoted key and quoted users, and nothing else."""
    settings, _ = nasty
    owners = sender_owners(settings)
    files = {path: render(template, settings, listen=rspamd.LISTEN, from_rule=rspamd.FROM_RULE,
                          owners=owners)
             for path, template in rspamd.files(settings).items()}
    lua = files["/etc/rspamd/rspamd.local.lua"]
    table = lua[lua.index("local OWNERS = {\n") + 17:lua.index("\n}\n")].splitlines()
    entry = re.compile(r'  \["[a-z0-9._@-]+"\] = \{ (\["[a-z0-9._@-]+"\] = true, )+\},')
    assert len(table) == len(owners) and all(entry.fullmatch(line) for line in table), table
    for path, text in files.items():
        if path.endswith((".conf", ".inc")):
            lines = settings_lines(text.replace("{", "").replace("}", ""))
            assert all(re.fullmatch(r' *[a-z_]+ = ("[^"\n]*"|[a-z0-9]+|\[[^\n]*\]);|'
                                    r' *[a-z_]+( "[a-z]+")? *', line) for line in lines), (
                path, lines)
