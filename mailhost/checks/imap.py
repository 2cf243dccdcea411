"""IMAP (Dovecot), from the controller, over IPv4 and IPv6: 993 presents a chain valid for the
hostname that expires in more than 14 days, refuses TLS 1.0/1.1, and lets a mail user log in
with their password; when 143 is open (``imap_starttls``), it offers no login before STARTTLS.
Nothing is read or changed in any mailbox: every session ends with LOGOUT."""

from __future__ import annotations

import imaplib
import socket
import ssl

from mailhost.checks import CheckResult, as_mail_user, guarded, result
from mailhost.checks.smtp import (
    MIN_DAYS,
    TIMEOUT,
    judged_certificate,
    legacy_context,
    verified_context,
)
from mailhost.paths import TLS_DIR
from mailhost.secrets import Secrets
from mailhost.settings import Settings

IMAPS_PORT, IMAP_PORT = 993, 143
TLS_ADVICE = ("Dovecot must accept TLS 1.2 or newer only (ssl_min_protocol = TLSv1.2 in "
              "/etc/dovecot/dovecot.conf, which the deploy writes)")


class _Imaps(imaplib.IMAP4_SSL):
    """IMAPS to an address, sending the mail host's name (SNI, and the name the chain must
    be valid for)."""

    def __init__(self, address: str, hostname: str, context: ssl.SSLContext):
        self.address, self.hostname = address, hostname
        super().__init__(address, IMAPS_PORT, ssl_context=context, timeout=TIMEOUT)

    def _create_socket(self, timeout):
        raw = socket.create_connection((self.address, IMAPS_PORT), timeout)
        return self.ssl_context.wrap_socket(raw, server_hostname=self.hostname)


def open_imaps(settings: Settings, address: str, context: ssl.SSLContext) -> imaplib.IMAP4_SSL:
    return _Imaps(address, settings.mail_hostname, context)


def checks_of_address(settings: Settings, secrets: Secrets, address: str) -> list[CheckResult]:
    """Every IMAP check of one address."""
    found = [certificate_check(settings, address), old_tls_check(settings, address)]
    if settings.mail_domains:  # a host that is only a backup MX has no users to log in as
        found.append(login_check(settings, secrets, address))
    if settings.imap_starttls:
        found.append(no_login_before_tls_check(settings, address))
    return found


def certificate_check(settings: Settings, address: str) -> CheckResult:
    name = f"imap: {address} port 993 TLS certificate"
    expected = (f"a chain valid for {settings.mail_hostname}, expiring in more than "
                f"{MIN_DAYS} days")
    advice = (f"Dovecot reads the certificate the MTA reads ({TLS_DIR}): check the SMTP "
              "certificate checks first; after a renewal the certbot hook reloads Dovecot "
              "(`systemctl reload dovecot`)")

    def check():
        passed, found = judged_certificate(
            settings, lambda context: open_imaps(settings, address, context))
        return result(name, passed, expected, found, advice)
    return guarded(name, expected, advice, check)


def old_tls_check(settings: Settings, address: str) -> CheckResult:
    name = f"imap: {address} port 993 refuses TLS 1.0/1.1"
    expected = "the TLS 1.0 and 1.1 handshake refused"

    def check():
        try:
            with open_imaps(settings, address, legacy_context()) as client:
                agreed = client.sock.version()
        except ssl.SSLError as error:
            return result(name, True, expected, f"refused ({error.reason or error})",
                          TLS_ADVICE)
        return result(name, False, expected, f"accepted {agreed}", TLS_ADVICE)
    return guarded(name, expected, TLS_ADVICE, check)


def login_check(settings: Settings, secrets: Secrets, address: str) -> CheckResult:
    """A mail user logs in on 993 with the password they use for submission; then LOGOUT."""
    name = f"imap: {address} port 993 login"
    advice = ("IMAP and SMTP AUTH share Dovecot's users (/etc/dovecot/mailhost-users): check "
              "`doveadm auth test USER` and Dovecot's log (`journalctl -u dovecot`)")

    def attempt(client, user, password, expected):
        code, _ = client.login(user, password)
        return result(name, code == "OK", expected, f"LOGIN {code}", advice)
    return as_mail_user(name, "logs in with their password", advice, settings, secrets,
                        lambda: open_imaps(settings, address, verified_context(settings)),
                        attempt)


def login_offered_before_tls(capabilities) -> list[str]:
    """What a server's capabilities before TLS offer to log in with: AUTH= mechanisms, and
    LOGIN unless LOGINDISABLED is there."""
    offered = [c for c in capabilities if c.upper().startswith("AUTH=")]
    if "LOGINDISABLED" not in {c.upper() for c in capabilities}:
        offered.append("LOGIN")
    return offered


def no_login_before_tls_check(settings: Settings, address: str) -> CheckResult:
    name = f"imap: {address} port 143 no login before TLS"
    expected = "STARTTLS offered; LOGINDISABLED and no AUTH= before it"
    advice = ("passwords must never cross the network in clear: Dovecot's ssl = required "
              "(the deploy's) refuses any login before STARTTLS")

    def check():
        with imaplib.IMAP4(address, IMAP_PORT, timeout=TIMEOUT) as client:
            capabilities = list(client.capabilities)
        offered = login_offered_before_tls(capabilities)
        passed = not offered and "STARTTLS" in capabilities
        return result(name, passed, expected, "CAPABILITY " + " ".join(capabilities), advice)
    return guarded(name, expected, advice, check)
