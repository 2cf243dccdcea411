"""TLS: certbot on the host, a certificate for the mail hostname, renewal that reloads the MTA.

The MTA always reads /etc/mailhost/tls/{fullchain,privkey}.pem. Until certbot has a
certificate they point at the host's self-signed one (ssl-cert's snakeoil), so a CA that fails
never leaves the host without mail; certbot's deploy hook then points them at the real one.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand
from pyinfra.facts.files import File, Link
from pyinfra.operations import files, server

from mailhost.host import template, units
from mailhost.operations.secret_file import secret_file
from mailhost.secrets import Secret, Secrets
from mailhost.settings import Settings

TLS_DIR = "/etc/mailhost/tls"
HOOK = "/etc/mailhost/tls/deploy-hook"
CA_BUNDLE = "/etc/mailhost/acme-ca-bundle.pem"
SNAKEOIL_CERT = "/etc/ssl/certs/ssl-cert-snakeoil.pem"
SNAKEOIL_KEY = "/etc/ssl/private/ssl-cert-snakeoil.key"
PACKAGES = ["certbot", "ssl-cert", "ca-certificates", "openssl"]
DNS_PLUGINS = {"rfc2136": "python3-certbot-dns-rfc2136",
               "cloudflare": "python3-certbot-dns-cloudflare"}
DNS_CREDENTIALS = "/etc/mailhost/acme/dns-credentials.ini"


def packages(settings: Settings) -> list[str]:
    """certbot, and for DNS-01 its plugin for the DNS provider."""
    if settings.acme_challenge == "dns-01":
        return [*PACKAGES, DNS_PLUGINS[settings.dns_provider]]
    return PACKAGES


def live_dir(settings: Settings) -> str:
    return f"/etc/letsencrypt/live/{settings.mail_hostname}"


def configure(settings: Settings, secrets: Secrets) -> None:
    """Links to a certificate that exists now (self-signed until certbot has one), the hook,
    and for DNS-01 the provider credentials certbot's plugin reads (root only)."""
    files.directory(name="TLS directory", path=TLS_DIR, mode="755")
    has_certificate = host.get_fact(File, path=f"{live_dir(settings)}/fullchain.pem") is not None
    for link, real, fallback in [("fullchain.pem", "fullchain.pem", SNAKEOIL_CERT),
                                 ("privkey.pem", "privkey.pem", SNAKEOIL_KEY)]:
        target = f"{live_dir(settings)}/{real}" if has_certificate else fallback
        if (host.get_fact(Link, path=f"{TLS_DIR}/{link}") or {}).get("link_target") != target:
            files.link(name=f"TLS {link} -> {target}", path=f"{TLS_DIR}/{link}", target=target,
                       force=True)
    files.template(name="certbot deploy hook", src=template("tls/deploy-hook.sh.j2"),
                   dest=HOOK, mode="755", s=settings)
    if settings.acme_challenge == "dns-01":
        files.directory(name="ACME credentials directory", path="/etc/mailhost/acme",
                        mode="700")
        secret_file(name=f"DNS-01 credentials ({settings.dns_provider})", path=DNS_CREDENTIALS,
                    content=_dns_credentials(settings, secrets))
    if settings.acme_ca_bundle:
        files.put(name="ACME server's CA bundle", src=settings.acme_ca_bundle, dest=CA_BUNDLE,
                  mode="644")
        files.put(
            name="certbot renewals trust the ACME server's CA",
            src=_renewal_environment(),
            dest="/etc/systemd/system/certbot.service.d/mailhost-ca.conf",
            mode="644",
        )


def _renewal_environment():
    from io import StringIO

    return StringIO(f"[Service]\nEnvironment=REQUESTS_CA_BUNDLE={CA_BUNDLE}\n")


def _dns_credentials(settings: Settings, secrets: Secrets) -> Secret:
    """What certbot's plugin on the VPS reads: the DNS-01 credential when one is set (a key
    or token that may only write _acme-challenge records), else the provisioning one."""
    if settings.dns_provider == "cloudflare":
        token = secrets.cloudflare_acme_api_token or secrets.cloudflare_api_token
        return Secret(f"dns_cloudflare_api_token = {token.reveal()}\n")
    if settings.dns_acme_tsig_key_name:
        name, secret = settings.dns_acme_tsig_key_name, secrets.acme_tsig_secret
    else:
        name, secret = settings.dns_tsig_key_name, secrets.tsig_secret
    return Secret(
        f"dns_rfc2136_server = {settings.dns_server}\n"
        f"dns_rfc2136_port = {settings.dns_port}\n"
        f"dns_rfc2136_name = {name}\n"
        f"dns_rfc2136_secret = {secret.reveal()}\n"
        f"dns_rfc2136_algorithm = {settings.dns_tsig_algorithm.upper()}\n"
    )


def obtain_certificate(settings: Settings) -> None:
    """Ask the ACME CA for a certificate once; certbot renews it.

    HTTP-01 (default): certbot's standalone server, port 80 opened only around the challenge
    (certbot's pre/post hooks, kept for renewals). DNS-01: certbot's plugin for the DNS provider
    writes the ``_acme-challenge`` TXT record; no port is opened.
    A failure stops the run with certbot's own message; mail keeps running on the fallback.
    """
    if host.get_fact(File, path=f"{live_dir(settings)}/fullchain.pem") is not None:
        return
    environment = f"REQUESTS_CA_BUNDLE={CA_BUNDLE} " if settings.acme_ca_bundle else ""
    if settings.acme_challenge == "dns-01":
        plugin = f"dns-{settings.dns_provider}"
        challenge = [
            "--authenticator", plugin, f"--{plugin}-credentials", DNS_CREDENTIALS,
            f"--{plugin}-propagation-seconds", str(settings.acme_dns_propagation_seconds),
        ]
    else:
        challenge = [
            "--standalone", "--preferred-challenges http",
            "--pre-hook", QuoteString("ufw allow 80/tcp >/dev/null 2>&1 || true"),
            "--post-hook", QuoteString("ufw delete allow 80/tcp >/dev/null 2>&1 || true"),
        ]
    command = StringCommand(
        environment + "certbot certonly --non-interactive --agree-tos",
        *challenge,
        "--server", QuoteString(settings.acme_directory),
        "--email", QuoteString(settings.acme_contact),
        "-d", QuoteString(settings.mail_hostname),
        "--deploy-hook", HOOK,
    )
    server.shell(name=f"Certificate for {settings.mail_hostname} from the ACME CA",
                 commands=[command])


def activate() -> None:
    """certbot's renewal timer active and enabled."""
    units.running("certbot.timer")
