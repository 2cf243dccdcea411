"""ManageSieve (RFC 5804, Dovecot's Pigeonhole on 4190), from the controller, over IPv4 and
IPv6: before STARTTLS no login is offered (no SASL mechanism), STARTTLS then presents a chain
valid for the hostname that expires in more than 14 days, and a mail user logs in with their
password. Nothing is read or changed in any user's scripts: every session ends with LOGOUT."""

from __future__ import annotations

import base64
import socket
import ssl

from mailhost.checks import CheckResult, as_mail_user, guarded, result
from mailhost.checks.smtp import TIMEOUT, judged_certificate, verified_context
from mailhost.paths import TLS_DIR
from mailhost.secrets import Secrets
from mailhost.settings import Settings

PORT = 4190
ADVICE = ("Dovecot serves ManageSieve (dovecot-managesieved, `protocols = ... sieve` in "
          "/etc/dovecot/dovecot.conf, which the deploy writes): check `systemctl status "
          "dovecot`, `journalctl -u dovecot` and that the firewall opens 4190")


class ManageSieveError(Exception):
    """The server answered NO or BYE, or not in the protocol."""


class ManageSieve:
    """A ManageSieve session to an address: the capabilities it announced (``capabilities``:
    name -> value), STARTTLS and AUTHENTICATE PLAIN; ``sock`` is the TLS socket after
    STARTTLS."""

    def __init__(self, address: str, port: int = PORT):
        self.sock = socket.create_connection((address, port), timeout=TIMEOUT)
        self.reader = self.sock.makefile("rb")
        self.capabilities = self._capabilities()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self._send("LOGOUT")
        except OSError:
            pass
        self.sock.close()

    def _send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def _response(self) -> list[str]:
        """The lines up to the OK that ends a response; NO or BYE raise."""
        lines = []
        while True:
            raw = self.reader.readline(8192)
            if not raw:
                raise ManageSieveError("connection closed")
            line = raw.decode(errors="replace").rstrip("\r\n")
            word = line.split(" ", 1)[0].upper()
            if word == "OK":
                return lines
            if word in ("NO", "BYE"):
                raise ManageSieveError(line)
            lines.append(line)

    def _capabilities(self) -> dict[str, str]:
        found = {}
        for line in self._response():
            name, _, value = line.partition(" ")
            found[name.strip('"').upper()] = value.strip().strip('"')
        return found

    def starttls(self, context: ssl.SSLContext, hostname: str) -> ManageSieve:
        """STARTTLS, the chain verified by CONTEXT for HOSTNAME; the capabilities the server
        announces inside TLS (RFC 5804 2.2)."""
        self._send("STARTTLS")
        self._response()
        self.sock = context.wrap_socket(self.sock, server_hostname=hostname)
        self.reader = self.sock.makefile("rb")
        self.capabilities = self._capabilities()
        return self

    def authenticate(self, user: str, password: str) -> None:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self._send(f'AUTHENTICATE "PLAIN" "{token}"')
        self._response()


def open_tls(settings: Settings, address: str, context: ssl.SSLContext) -> ManageSieve:
    return ManageSieve(address).starttls(context, settings.mail_hostname)


def checks_of_address(settings: Settings, secrets: Secrets, address: str) -> list[CheckResult]:
    """Every ManageSieve check of one address."""
    found = [no_login_before_tls_check(address), certificate_check(settings, address)]
    if settings.mail_domains:  # a host that is only a backup MX has no users to log in as
        found.append(login_check(settings, secrets, address))
    return found


def no_login_before_tls_check(address: str, port: int = PORT) -> CheckResult:
    name = f"sieve: {address} port {port} no login before STARTTLS"
    expected = "STARTTLS offered, no SASL mechanism before it"
    advice = ("passwords must never cross the network in clear: Dovecot's ssl = required "
              "(the deploy's) offers no mechanism before STARTTLS; " + ADVICE)

    def check():
        with ManageSieve(address, port) as client:
            capabilities = client.capabilities
        mechanisms = capabilities.get("SASL", "").split()
        found = ", ".join(f"{k} {v}".strip() for k, v in capabilities.items())
        return result(name, "STARTTLS" in capabilities and not mechanisms, expected, found,
                      advice)
    return guarded(name, expected, advice, check)


def certificate_check(settings: Settings, address: str) -> CheckResult:
    name = f"sieve: {address} port {PORT} TLS certificate"
    expected = f"after STARTTLS, a chain valid for {settings.mail_hostname}"
    advice = (f"Dovecot reads the certificate the MTA reads ({TLS_DIR}): check the SMTP "
              "certificate checks first; " + ADVICE)

    def check():
        passed, found = judged_certificate(
            settings, lambda context: open_tls(settings, address, context))
        return result(name, passed, expected, found, advice)
    return guarded(name, expected, advice, check)


def login_check(settings: Settings, secrets: Secrets, address: str) -> CheckResult:
    """A mail user logs in after STARTTLS with the password they use for IMAP; then LOGOUT."""
    name = f"sieve: {address} port {PORT} login"
    advice = ("ManageSieve, IMAP and SMTP AUTH share Dovecot's users: check `doveadm auth test "
              "USER`; " + ADVICE)

    def attempt(client, user, password, expected):
        try:
            client.authenticate(user, password)
        except ManageSieveError as error:
            return result(name, False, expected, f"AUTHENTICATE: {error}", advice)
        return result(name, True, expected, "AUTHENTICATE PLAIN OK", advice)
    return as_mail_user(name, "logs in with their password", advice, settings, secrets,
                        lambda: open_tls(settings, address, verified_context(settings)),
                        attempt)
