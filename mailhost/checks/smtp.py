"""SMTP, from the controller, as the world sees the host, over IPv4 and IPv6: the banner names
the host; 25 and 587 (STARTTLS) and 465 (TLS) present a chain valid for the hostname that
expires in more than 14 days; TLS below 1.2 is refused; no AUTH before TLS; no open relay;
authenticated submission works. No message is ever sent: every dialogue ends with RSET."""

from __future__ import annotations

import smtplib
import ssl
import warnings
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from mailhost.checks import WARNING, CheckResult, as_mail_user, guarded, result
from mailhost.paths import TLS_DIR, live_certificate_dir
from mailhost.secrets import Secrets
from mailhost.settings import Settings

PROBE_HELO = "mailhost-check.invalid"
TIMEOUT = 20
MIN_DAYS = 14
STARTTLS_PORTS, TLS_PORT = (25, 587), 465


def addresses(settings: Settings) -> list[str]:
    return [str(settings.ipv4)] + ([str(settings.ipv6)] if settings.ipv6 else [])


def checks_of_address(settings: Settings, secrets: Secrets, address: str,
                      mta) -> list[CheckResult]:
    """Every SMTP check of one address (mta: the host's MTA profile, for its TLS advice)."""
    found = [banner_check(settings, address)]
    for port in (*STARTTLS_PORTS, TLS_PORT):
        found.append(certificate_check(settings, address, port, mta))
    for port in (*STARTTLS_PORTS, TLS_PORT):
        found.append(old_tls_check(settings, address, port, mta))
    for port in STARTTLS_PORTS:
        found.append(auth_after_tls_check(settings, address, port))
    found.append(relay_check(settings, address))
    if settings.mail_domains:  # a host that is only a backup MX has no users to log in as
        found.append(submission_check(settings, secrets, address))
    found.extend(hardening_checks(settings, address, mta))
    return found


def open_smtp(settings: Settings, address: str, port: int,
              context: ssl.SSLContext | None = None) -> smtplib.SMTP:
    """A session after EHLO; with a context, inside TLS (STARTTLS, or implicit on 465)."""
    if port == TLS_PORT:
        client = smtplib.SMTP_SSL(context=context or unverified_context(), timeout=TIMEOUT)
    else:
        client = smtplib.SMTP(timeout=TIMEOUT)
    client._host = settings.mail_hostname  # the name TLS sends (SNI) and checks the chain for
    try:
        client.connect(address, port)
        client.ehlo(PROBE_HELO)
        if context is not None and port != TLS_PORT:
            client.starttls(context=context)
            client.ehlo(PROBE_HELO)
    except BaseException:
        client.close()
        raise
    return client


def verified_context(settings: Settings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.check_ca_file)


def unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def legacy_context() -> ssl.SSLContext:
    """A client that offers only TLS 1.0 and 1.1, with every cipher (SECLEVEL=0: OpenSSL 3
    refuses them otherwise, and the check would prove nothing)."""
    context = unverified_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def banner_check(settings: Settings, address: str) -> CheckResult:
    name = f"smtp: {address} port 25 banner"
    expected = f"220 {settings.mail_hostname} ..."
    advice = (f"the greeting on port 25 must name {settings.mail_hostname} (Postfix: "
              "myhostname and smtpd_banner); check that the MTA listens on port 25 and that "
              "the firewall (ufw) and the provider let port 25 in")

    def check():
        client = smtplib.SMTP(timeout=TIMEOUT)
        try:
            code, message = client.connect(address, 25)
            banner = message.decode(errors="replace").splitlines()[0] if message else ""
            client.quit()
        finally:
            client.close()
        return result(name, code == 220 and settings.mail_hostname in banner.split(),
                      expected, f"{code} {banner}", advice)
    return guarded(name, expected, advice, check)


def describe_certificate(der: bytes) -> tuple[str, int]:
    """'CN, issuer CN, expires DATE (in N days)' and N."""
    certificate = x509.load_der_x509_certificate(der)
    days = (certificate.not_valid_after_utc - datetime.now(UTC)).days

    def common_name(name):
        values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return values[0].value if values else name.rfc4514_string()
    when = certificate.not_valid_after_utc.strftime("%Y-%m-%d")
    left = f"in {days} days" if days >= 0 else f"expired {-days} days ago"
    return (f"{common_name(certificate.subject)}, issued by {common_name(certificate.issuer)}, "
            f"expires {when} ({left})"), days


def certificate_check(settings: Settings, address: str, port: int, mta) -> CheckResult:
    how = "TLS" if port == TLS_PORT else "STARTTLS"
    name = f"smtp: {address} port {port} {how} certificate"
    expected = (f"a chain valid for {settings.mail_hostname}, expiring in more than "
                f"{MIN_DAYS} days")
    advice = (f"the MTA must present the ACME certificate of {settings.mail_hostname}: check "
              "`certbot certificates` and /var/log/letsencrypt on the host, that certbot.timer "
              f"renews it, and that {TLS_DIR} links point at "
              f"{live_certificate_dir(settings.mail_hostname)}; the deploy obtains it "
              "(it needs port 80 and the A/AAAA records, or DNS-01's records); a self-signed "
              "certificate means the ACME CA did not issue one yet (down, unreachable, or a "
              "challenge refused: the deploy's certificate step says which): mail flows on "
              "it meanwhile; run the deploy again" + "".join(
                  f"; {r.unit} presents its own copy, {r.copy_to}/{settings.mail_hostname}/, "
                  "which the deploy and the renewal hook refresh"
                  for r in mta.certificate_readers if r.copy_to))

    def check():
        passed, found = judged_certificate(
            settings, lambda context: open_smtp(settings, address, port, context))
        return result(name, passed, expected, found, advice)
    return guarded(name, expected, advice, check)


def judged_certificate(settings: Settings, open_with) -> tuple[bool, str]:
    """Whether the chain a server presents verifies and lasts more than MIN_DAYS, and what was
    found. ``open_with(context)`` connects (a client whose ``sock`` is the TLS socket); an
    untrusted chain is read again without verification, to say what it is."""
    problem = ""
    try:
        with open_with(verified_context(settings)) as client:
            der = client.sock.getpeercert(binary_form=True)
    except ssl.SSLCertVerificationError as error:
        problem = f"not trusted: {error.verify_message}; "
        with open_with(unverified_context()) as client:
            der = client.sock.getpeercert(binary_form=True)
    description, days = describe_certificate(der)
    if not problem and days <= MIN_DAYS:
        problem = f"expires within {MIN_DAYS} days; "
    return not problem, problem + description


def refused_client_check(settings: Settings, address: str, port: int, mta, refuses: str,
                         expected: str, advice: str, client_context, accepted) -> CheckResult:
    """Passes when the port refuses the TLS client ``client_context()`` makes; where it is let
    in, ``accepted(sock)`` says what was agreed (a warning where the MTA has no TLS settings)."""
    name = f"smtp: {address} port {port} refuses {refuses}"

    def check():
        try:
            with open_smtp(settings, address, port, client_context()) as client:
                agreed = accepted(client.sock)
        except ssl.SSLError as error:
            return result(name, True, expected, f"refused ({error.reason or error})", advice)
        if not mta.tls_configurable:  # nothing to configure: worth a look, not a failure
            return CheckResult(name, WARNING, expected, f"accepted {agreed}", advice,
                               required=False)
        return result(name, False, expected, f"accepted {agreed}", advice)
    return guarded(name, expected, advice, check)


def old_tls_check(settings: Settings, address: str, port: int, mta) -> CheckResult:
    return refused_client_check(
        settings, address, port, mta, refuses="TLS 1.0/1.1",
        expected="the TLS 1.0 and 1.1 handshake refused", advice=mta.old_tls_advice,
        client_context=legacy_context, accepted=lambda sock: sock.version())


def auth_after_tls_check(settings: Settings, address: str, port: int) -> CheckResult:
    name = f"smtp: {address} port {port} no AUTH before TLS"
    expected = "AUTH not offered before STARTTLS"
    advice = ("passwords must never cross the network in clear: offer AUTH only after TLS "
              "(Postfix: smtpd_tls_auth_only = yes)")

    def check():
        with open_smtp(settings, address, port) as client:
            offered = "auth" in client.esmtp_features
            features = " ".join(sorted(client.esmtp_features))
        found = f"EHLO offers: {features}"
        return result(name, not offered, expected, found, advice)
    return guarded(name, expected, advice, check)


def relay_check(settings: Settings, address: str) -> CheckResult:
    """An unauthenticated client asks to relay to an outside address; then RSET, nothing sent."""
    name = f"smtp: {address} port 25 no open relay"
    outside = settings.check_outside_recipient
    expected = f"RCPT TO:<{outside}> refused without authentication"
    advice = ("the MTA relays mail for anyone: spammers will use it within hours and every "
              "blocklist will list it. Relay only for authenticated users and the host itself "
              "(Postfix: smtpd_relay_restrictions = permit_mynetworks, "
              "permit_sasl_authenticated, reject_unauth_destination; mynetworks = loopback). "
              "chasquid relays only after AUTH, but takes every directory under "
              "/etc/chasquid/domains/ for a domain of its own: remove any that is not yours")

    def check():
        code, found = rcpt_reply(settings, address, outside)
        return result(name, code >= 400, expected, found, advice)
    return guarded(name, expected, advice, check)


def rcpt_reply(settings: Settings, address: str, recipient: str) -> tuple[int, str]:
    """Port 25's answer to RCPT TO:<RECIPIENT> from the null sender, then RSET (nothing is
    sent): (code, "code text")."""
    with open_smtp(settings, address, 25) as client:
        client.mail("")
        code, message = client.rcpt(recipient)
        client.rset()
    return code, f"{code} {message.decode(errors='replace')}"


def submission_check(settings: Settings, secrets: Secrets, address: str) -> CheckResult:
    """AUTH as a configured user, MAIL FROM it, RCPT to an outside address; then RSET."""
    name = f"smtp: {address} port 587 authenticated submission"
    outside = settings.check_outside_recipient
    advice = ("authenticated submission on 587 must work for the mail users: check the auth "
              "service (Dovecot for Postfix) and its users file, and the MTA's log")

    def attempt(client, user, password, expected):
        client.login(user, password)
        mail_code, _ = client.mail(user)
        code, message = client.rcpt(outside)
        client.rset()
        found = f"AUTH ok; MAIL {mail_code}; RCPT {code} {message.decode(errors='replace')}"
        return result(name, mail_code == 250 and code in (250, 251), expected, found, advice)
    return as_mail_user(name, f"may send to {outside}", advice, settings, secrets,
                        lambda: open_smtp(settings, address, 587, verified_context(settings)),
                        attempt)



# --- hardening: VRFY off; submission (587, 465) on Mozilla's "intermediate" TLS profile ---

SUBMISSION_PORTS = (587, TLS_PORT)
# non-AEAD (CBC) suites only, TLS 1.2 at most: a port on the intermediate profile refuses them
CBC_CIPHERS = "AES+SHA1:AES+SHA256:AES+SHA384:CAMELLIA:3DES:!AESGCM:!AESCCM:@SECLEVEL=0"


def hardening_checks(settings: Settings, address: str, mta) -> list[CheckResult]:
    return [vrfy_check(settings, address),
            *[cbc_refused_check(settings, address, port, mta) for port in SUBMISSION_PORTS]]


def cbc_context() -> ssl.SSLContext:
    """A TLS 1.2 client that offers only CBC ciphers."""
    context = unverified_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CBC_CIPHERS)
    return context


def vrfy_check(settings: Settings, address: str) -> CheckResult:
    name = f"smtp: {address} port 25 VRFY refused"
    probe = f"postmaster@{settings.first_domain}"
    expected = f"VRFY {probe} refused (5xx): nobody learns which addresses exist"
    advice = "turn VRFY off (Postfix: disable_vrfy_command = yes)"

    def check():
        with open_smtp(settings, address, 25) as client:
            code, message = client.verify(probe)
        found = f"{code} {message.decode(errors='replace')}"
        return result(name, code >= 500, expected, found, advice)
    return guarded(name, expected, advice, check)


def cbc_refused_check(settings: Settings, address: str, port: int, mta) -> CheckResult:
    return refused_client_check(
        settings, address, port, mta, refuses="CBC ciphers",
        expected="a TLS 1.2 client offering only CBC ciphers refused (Mozilla intermediate)",
        advice=mta.cbc_advice, client_context=cbc_context, accepted=lambda sock: sock.cipher()[0])
