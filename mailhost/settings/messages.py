"""What the user reads when a setting is wrong: one line, ``settings: KEY = VALUE: what is
expected``, made here from a validator's ValueError, a cross-field FieldError or pydantic's own
error (then with the field's expected value from EXPECTED).

A value is shown escaped (repr), with any credentials in it masked (``https://***@host``,
``?***``) and cut to SHOWN characters; a value that holds credentials is refused saying where
they go instead (WHERE_CREDENTIALS_GO)."""

from __future__ import annotations

import difflib
import re
from types import MappingProxyType

from pydantic import ValidationError

SHOWN = 200  # characters of a value shown in a line, at most


class SettingsError(Exception):
    """A setting is wrong; str() is the one line shown to the user."""


class FieldError(ValueError):
    """A check across fields refused ``field``'s ``value``: ``expected`` says what would do."""

    def __init__(self, field, value, expected):
        super().__init__(expected)
        self.field, self.value, self.expected = field, value, expected


class Credentials(ValueError):
    """A value holds credentials (a password in a URL, ``address:password``): refused, and
    shown as ``masked``."""

    def __init__(self, masked: str):
        super().__init__("expected no credentials (a user, password or query) in a setting; "
                         "shown masked: credentials are secrets")
        self.masked = masked


# where the credentials a user typed into a setting go instead (docs/settings.md#secrets)
WHERE_CREDENTIALS_GO = MappingProxyType({
    "backup_repository": "MAILHOST_BACKUP_S3_ACCESS_KEY_ID and "
                         "MAILHOST_BACKUP_S3_SECRET_ACCESS_KEY (s3:), MAILHOST_BACKUP_SSH_KEY "
                         "(sftp:: a key, not a password)",
    "relay_user": "MAILHOST_RELAY_PASSWORD",
    "relay_host": "MAILHOST_RELAY_PASSWORD",
    "mail_users": "MAILHOST_PASSWORD_<USER>_<DOMAIN>",
    "cloudflare_api_url": "CLOUDFLARE_API_TOKEN",
})


def secret_in_inventory(key: str, where: str, near: str | None = None) -> str:
    like = f" (it looks like {near})" if near and near != key else ""
    return (f"settings: {key}: secrets are never read from the inventory{like}; set "
            f"{where} in the environment or in the secrets file instead (its value is not "
            "shown)")


def closest(key: str, known) -> str | None:
    close = difflib.get_close_matches(key.lower(), sorted(known), n=1)
    return close[0] if close else None


def unknown_setting(key: str, value, near: str | None) -> str:
    hint = f"; did you mean {near}?" if near else ""
    return line(key, value, f"unknown setting{hint}")


def line_without_value(field: str, expected: str) -> str:
    return f"settings: {field}: {expected}"


def pydantic_line(error: ValidationError, data: dict) -> str:
    first = error.errors()[0]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, FieldError):
        return line(cause.field, cause.value, cause.expected)
    location = [str(part) for part in first["loc"]]
    field = location[0] if location else "settings"
    if isinstance(cause, Credentials):
        where = WHERE_CREDENTIALS_GO.get(field)
        name = field + "".join(f"[{part}]" for part in location[1:])
        return line(name, cause.masked, str(cause) + (
            f"; set {where} in the environment or the secrets file instead" if where else
            "; this setting takes none"))
    if first["type"] == "missing":
        return f"settings: {field}: missing; expected {EXPECTED.get(field, 'a value')}"
    value = first.get("input") if len(location) > 1 else data.get(field, first.get("input"))
    message = first["msg"]
    if isinstance(first.get("ctx", {}).get("error"), ValueError):
        message = str(first["ctx"]["error"])
    else:
        message = EXPECTED.get(field) and f"expected {EXPECTED[field]}" or message
    if location[-1:] == ["[key]"]:  # a mapping's key (mail_aliases {1: [...]})
        location, message = location[:-1], ("expected addresses (text) as its keys, e.g. "
                                             "'sales@example.com'")
    if len(location) > 1 and field in data:
        field = field + "[" + "][".join(location[1:]) + "]"
    return line(field, value, message)


def line(field, value, expected) -> str:
    return f"settings: {field} = {shown(value)}: {expected}"


_USERINFO = re.compile(r"(?<=://)[^/?#@\s]*@")
_QUERY = re.compile(r"(://[^'\"\s?]*)\?[^'\"\s#]*")


def shown(value) -> str:
    """VALUE as a line shows it: repr, credentials masked, at most SHOWN characters."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"(a number of {value.bit_length()} bits)"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001  a value whose repr fails: say its type
        return f"(a {type(value).__name__})"
    text = _QUERY.sub(r"\1?***", _USERINFO.sub("***@", text))
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}... ({len(text)} characters)"


EXPECTED = MappingProxyType({
    "mail_hostname": "the mail host's FQDN, e.g. mail.example.com",
    "mail_users": "a list of e-mail addresses, e.g. ['alice@example.com']",
    "mail_aliases": "a mapping of an address to a list of targets, e.g. "
                    "{'sales@example.com': ['alice@example.com']}",
    "relay_user": "the relay's login (an e-mail address or a name), or None",
    "mail_domains": "a list of mail domains, e.g. ['example.com']",
    "parked_domains": "a list of domains that send no mail, e.g. ['example.net']",
    "ipv4": "the host's public IPv4 address, e.g. 198.51.100.10",
    "ipv6": "the host's global IPv6 address, or None",
    "mta": "'postfix' or 'chasquid'",
    "dns_provider": "'cloudflare', 'rfc2136' or 'lexicon' (then dns_lexicon_provider names one of "
                    "dns-lexicon's providers: 'route53', 'hetzner'...)",
    "dns_port": "a port number from 1 to 65535",
    "dns_ttl": "a TTL in seconds from 60 to 86400",
    "dns_tsig_algorithm": "one of hmac-sha256, hmac-sha384, hmac-sha512, hmac-sha224, hmac-sha1",
    "spf_all": "'~all' (softfail) or '-all' (fail)",
    "dmarc_policy": "'none', 'quarantine' or 'reject'",
    "dmarc_subdomain_policy": "'none', 'quarantine', 'reject' or None",
    "dmarc_pct": "an integer from 0 to 100",
    "dmarc_adkim": "'r' (relaxed) or 's' (strict)",
    "dmarc_aspf": "'r' (relaxed) or 's' (strict)",
    "dkim_key_type": "'rsa-2048', 'rsa-3072' or 'rsa-4096'",
    "dkim_rotate_days": "days from 0 (never rotate) to 3650",
    "dkim_retire_days": "days from 1 to 90",
    "acme_challenge": "'http-01' or 'dns-01'",
    "acme_dns_propagation_seconds": "seconds from 0 to 3600",
    "ipv6_prefixlen": "a prefix length from 8 to 128",
    "dns_force": "True or False",
    "mta_sts_mode": "'off', 'none', 'testing' or 'enforce'",
    "mta_sts_max_age": "seconds from 86400 (a day) to 31557600 (a year)",
    "dane": "'auto' or 'off'",
    "webmail": "'roundcube' or 'off' (None: off)",
    "imap_starttls": "True or False",
    "mailbox_quota": "a size such as 500M or 2G (1 to 999999, M or G), or None",
    "cloudflare_api_url_is_api_host": "True or False",
    "dkim_ed25519": "True or False",
    "mail_manage_host": "True or False",
    "greylisting": "True or False",
    "spam_test_patterns": "True or False",
    "backup_keep_daily": "a count of daily snapshots to keep, from 0 to 3650",
    "backup_keep_weekly": "a count of weekly snapshots to keep, from 0 to 520",
    "backup_keep_monthly": "a count of monthly snapshots to keep, from 0 to 240",
    "restore_from_backup": "True or False",
    "check_resolver": "the IP address of a recursive DNS resolver, or None",
    "check_nameservers": "a list of IP addresses of the zone's authoritative servers, or None",
})
