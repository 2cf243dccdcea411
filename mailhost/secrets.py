"""Secrets: API token, TSIG secret, SMTP passwords. Only from the environment or a secrets file.

The secrets file is TOML, kept out of git (``secrets/secrets.toml`` by default, mode 0600)::

    cloudflare_api_token = "..."
    tsig_secret = "..."
    acme_tsig_secret = "..."            # DNS-01: the VPS's key (dns_acme_tsig_key_name)
    cloudflare_acme_api_token = "..."   # DNS-01: the VPS's token (Zone:DNS:Edit, mail zones)
    relay_password = "..."              # relay_host's SASL password
    lexicon_hetzner_auth_token = "..."  # dns_provider "lexicon": lexicon's names, lowercase
    backup_password = "..."             # restic's repository password (backup_repository)
    backup_ssh_key = '''(the OpenSSH private key, whole)'''
                                        # sftp: repositories: the key the host logs in with
    backup_s3_access_key_id = "..."     # s3: repositories
    backup_s3_secret_access_key = "..."
    [passwords]
    "alice@example.com" = "..."
    [import_passwords]                  # scripts/import-mail: the old provider's password,
    "alice@example.com" = "..."         # by the local address the mail is brought into

The environment wins over the file: CLOUDFLARE_API_TOKEN, MAILHOST_TSIG_SECRET,
MAILHOST_ACME_TSIG_SECRET, CLOUDFLARE_ACME_API_TOKEN, MAILHOST_RELAY_PASSWORD,
MAILHOST_BACKUP_PASSWORD, MAILHOST_BACKUP_SSH_KEY, MAILHOST_BACKUP_S3_ACCESS_KEY_ID,
MAILHOST_BACKUP_S3_SECRET_ACCESS_KEY, LEXICON_<PROVIDER>_<OPTION> and
MAILHOST_PASSWORD_<USER>_<DOMAIN>, MAILHOST_IMPORT_PASSWORD_<USER>_<DOMAIN>
(address upper-cased, every other character as ``_``). Only the two ACME credentials (for
certbot's DNS-01; without them the VPS gets the provisioning credential) and the backup ones
go to the VPS.
No value read here is ever printed: Secret hides itself in repr and str.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from mailhost.settings import Settings, SettingsError

MIN_PASSWORD_LENGTH = 12


class Secret:
    """A secret string that never shows itself by accident."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other):
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self):
        return hash(self._value)


@dataclass(frozen=True)
class Secrets:
    cloudflare_api_token: Secret | None = None
    tsig_secret: Secret | None = None
    passwords: dict[str, Secret] = field(default_factory=dict)
    acme_tsig_secret: Secret | None = None
    cloudflare_acme_api_token: Secret | None = None
    relay_password: Secret | None = None
    backup: BackupSecrets | None = None  # only with backup_repository
    # dns_provider "lexicon": the provider's options by lexicon's names (auth_token...), and
    # those certbot's hook on the VPS gets instead, when set (DNS-01 with least privilege)
    lexicon: dict[str, Secret] = field(default_factory=dict)
    acme_lexicon: dict[str, Secret] = field(default_factory=dict)


@dataclass(frozen=True)
class BackupSecrets:
    """What the host's restic needs: the repository's password, and the repository's own
    credentials (an SSH private key for sftp:, an access key for s3:)."""

    password: Secret
    ssh_key: Secret | None = None
    s3_access_key_id: Secret | None = None
    s3_secret_access_key: Secret | None = None


def password_variable(address: str) -> str:
    return "MAILHOST_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", address.upper())


def import_password_variable(address: str) -> str:
    return password_variable(address).replace("MAILHOST_", "MAILHOST_IMPORT_", 1)


def import_password(settings: Settings, address: str, environ=None) -> Secret | None:
    """The old provider's password for ``scripts/import-mail`` into ``address``:
    MAILHOST_IMPORT_PASSWORD_<ADDRESS> or ``[import_passwords]`` of the secrets file; None
    when neither holds one (the command then asks). The refusal never shows the value."""
    environ = os.environ if environ is None else environ
    table = _read_file(Path(settings.secrets_file)).get("import_passwords", {})
    if not isinstance(table, dict):
        raise SettingsError("secrets: import_passwords: expected a table of passwords by "
                            'local address ([import_passwords] "alice@example.com" = "...")')
    value = environ.get(import_password_variable(address)) or table.get(address)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or any(unicodedata.category(c) == "Cc" for c in value):
        raise SettingsError(f"secrets: import password of {address}: expected text without "
                            "control characters (newline, tab...)")
    return Secret(value)


def load_secrets(settings: Settings, environ=None) -> Secrets:
    """Read the secrets this host needs; a missing one is a SettingsError naming where to put it."""
    environ = os.environ if environ is None else environ
    from_file = _read_file(Path(settings.secrets_file))

    def pick(variable, key, check=None):
        value = environ.get(variable) or from_file.get(key)
        if not value:
            return None
        if not isinstance(value, str):
            raise SettingsError(f"secrets: {key}: expected text (a quoted TOML string)")
        if check is not None:
            check(f"{key} ({variable})", value)
        return Secret(value)

    token = pick("CLOUDFLARE_API_TOKEN", "cloudflare_api_token", _one_word)
    tsig = pick("MAILHOST_TSIG_SECRET", "tsig_secret", _base64_key)
    if settings.dns_provider == "cloudflare" and token is None:
        raise SettingsError(
            "secrets: CLOUDFLARE_API_TOKEN: not set; export it, or put cloudflare_api_token in "
            f"{settings.secrets_file} (a token scoped to Zone:DNS:Edit)"
        )
    if settings.dns_provider == "rfc2136" and tsig is None:
        raise SettingsError(
            f"secrets: MAILHOST_TSIG_SECRET: not set; export the base64 secret of TSIG key "
            f"{settings.dns_tsig_key_name}, or put tsig_secret in {settings.secrets_file}"
        )
    acme_tsig = pick("MAILHOST_ACME_TSIG_SECRET", "acme_tsig_secret", _base64_key)
    acme_token = pick("CLOUDFLARE_ACME_API_TOKEN", "cloudflare_acme_api_token", _one_word)
    if (settings.acme_challenge == "dns-01" and settings.dns_provider == "rfc2136"
            and settings.dns_acme_tsig_key_name and acme_tsig is None):
        raise SettingsError(
            f"secrets: MAILHOST_ACME_TSIG_SECRET: not set; export the base64 secret of TSIG key "
            f"{settings.dns_acme_tsig_key_name}, or put acme_tsig_secret in "
            f"{settings.secrets_file}"
        )
    passwords = {}
    file_passwords = from_file.get("passwords", {})
    for address in settings.mail_users:
        value = environ.get(password_variable(address)) or file_passwords.get(address)
        if not value:
            raise SettingsError(
                f"secrets: {password_variable(address)}: no password for mail user {address}; "
                f"export it, or add it under [passwords] in {settings.secrets_file}"
            )
        passwords[address] = Secret(_checked_password(address, value))
    relay = pick("MAILHOST_RELAY_PASSWORD", "relay_password")
    if settings.relay_host and relay is None:
        raise SettingsError(
            f"secrets: MAILHOST_RELAY_PASSWORD: not set; export the password of "
            f"{settings.relay_user} at {settings.relay_host}, or put relay_password in "
            f"{settings.secrets_file}")
    if relay is not None and _space_or_control(relay.reveal()):
        raise SettingsError("secrets: relay_password: expected no spaces or control characters "
                            "(Postfix's password table holds it after a colon on one line)")
    backup = _backup_secrets(settings, pick)
    lexicon = _lexicon_secrets(settings, environ, from_file)
    acme_lexicon = _lexicon_secrets(settings, environ, from_file, acme=True)
    return Secrets(token, tsig, passwords, acme_tsig, acme_token, relay, backup, lexicon,
                   acme_lexicon)


def _lexicon_secrets(settings: Settings, environ, from_file: dict,
                     acme: bool = False) -> dict[str, Secret]:
    """A lexicon provider's credentials under lexicon's own names: LEXICON_<PROVIDER>_<OPTION>
    in the environment (which wins) or lexicon_<provider>_<option> in the file. ``acme``:
    the optional ones for certbot's hook, MAILHOST_ACME_LEXICON_<PROVIDER>_<OPTION> or
    acme_lexicon_<provider>_<option>."""
    if settings.dns_provider != "lexicon":
        return {}
    name = settings.dns_lexicon_provider
    key_prefix = f"{'acme_' * acme}lexicon_{name}_"
    found = {key.removeprefix(key_prefix): value for key, value in from_file.items()
             if key.startswith(key_prefix)}
    prefix = f"{'MAILHOST_ACME_' * acme}LEXICON_{name.upper()}_"
    found |= {key.removeprefix(prefix).lower(): value for key, value in environ.items()
              if key.startswith(prefix) and value}
    if not found and acme:
        return {}
    if not found:
        raise SettingsError(
            f"secrets: {prefix}AUTH_TOKEN: not set; export the credentials of lexicon provider "
            f"{name} under lexicon's names ({prefix}<OPTION>, e.g. {prefix}AUTH_TOKEN), or "
            f"put lexicon_{name}_<option> in {settings.secrets_file}")
    for option, value in found.items():
        if not isinstance(value, str):
            raise SettingsError(f"secrets: {key_prefix}{option}: expected text (a quoted "
                                "TOML string)")
        _one_word(f"{key_prefix}{option} ({prefix}{option.upper()})", value)
    return {option: Secret(value) for option, value in found.items()}


def _backup_secrets(settings: Settings, pick) -> BackupSecrets | None:
    """The backup's secrets, each required by the repository's kind; None without one."""
    repository = settings.backup_repository
    if repository is None:
        return None
    needed = {"backup_password": "MAILHOST_BACKUP_PASSWORD"}
    if repository.kind == "sftp":
        needed["backup_ssh_key"] = "MAILHOST_BACKUP_SSH_KEY"
    if repository.kind == "s3":
        needed["backup_s3_access_key_id"] = "MAILHOST_BACKUP_S3_ACCESS_KEY_ID"
        needed["backup_s3_secret_access_key"] = "MAILHOST_BACKUP_S3_SECRET_ACCESS_KEY"
    found = {}
    for key, variable in needed.items():
        value = pick(variable, key)
        if value is None:
            raise SettingsError(f"secrets: {variable}: not set with backup_repository "
                                f"{repository.kind}:...; export it, or put {key} in "
                                f"{settings.secrets_file}")
        text = value.reveal()
        if key == "backup_ssh_key":
            if not (text.lstrip().startswith("-----BEGIN ") and "PRIVATE KEY-----" in text):
                raise SettingsError("secrets: backup_ssh_key: expected an SSH private key "
                                    "(-----BEGIN OPENSSH " "PRIVATE KEY----- ...)")
        elif key.startswith("backup_s3_") and not re.fullmatch(r"[A-Za-z0-9/+=_.-]+", text):
            raise SettingsError(f"secrets: {key}: expected letters, digits and / + = _ . - "
                                "(an S3 access key)")
        elif any(unicodedata.category(c) == "Cc" for c in text) or (
                key == "backup_password" and len(text) < MIN_PASSWORD_LENGTH):
            raise SettingsError(f"secrets: {key}: expected no control characters (newline, "
                                f"tab...)" + (f" and at least {MIN_PASSWORD_LENGTH} characters"
                                              if key == "backup_password" else ""))
        found[key.removeprefix("backup_")] = value
    return BackupSecrets(**found)


def _space_or_control(value: str) -> bool:
    return any(unicodedata.category(c) == "Cc" or c.isspace() for c in value)


def _one_word(label: str, value: str) -> None:
    """An API token or key: one word (it goes into a header, or a line of certbot's
    credentials file on the host); the refusal never shows the value."""
    if not value or _space_or_control(value):
        raise SettingsError(f"secrets: {label}: expected one word, no spaces or control "
                            "characters (a line break pasted in?)")


def _base64_key(label: str, value: str) -> None:
    """A TSIG secret: base64, as ``tsig-keygen`` and ``keymgr`` print it."""
    _one_word(label, value)
    try:
        decoded = base64.b64decode(value, validate=True)
    except binascii.Error:
        decoded = b""
    if not decoded:
        raise SettingsError(f"secrets: {label}: expected the base64 secret of the TSIG key "
                            "(as tsig-keygen prints it); this one is not base64")


def _checked_password(address: str, value) -> str:
    """A password of MIN_PASSWORD_LENGTH+ characters, none a control character; the refusal
    names the user, never the password."""
    if not isinstance(value, str) or len(value) < MIN_PASSWORD_LENGTH:
        raise SettingsError(f"secrets: password of {address}: expected at least "
                            f"{MIN_PASSWORD_LENGTH} characters")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise SettingsError(f"secrets: password of {address}: expected no control characters "
                            "(newline, tab...)")
    return value


def _read_file(path: Path) -> dict:
    if not path.exists():
        return {}
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SettingsError(
            f"secrets: {path} is readable by others (mode {mode:o}); run chmod 600 {path}"
        )
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        # the message names a line and column, never a value
        raise SettingsError(f"secrets: {path} is not valid TOML: {error}") from None
