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
from mailhost.settings import Settings

TLS_DIR = "/etc/mailhost/tls"
HOOK = "/etc/mailhost/tls/deploy-hook"
CA_BUNDLE = "/etc/mailhost/acme-ca-bundle.pem"
SNAKEOIL_CERT = "/etc/ssl/certs/ssl-cert-snakeoil.pem"
SNAKEOIL_KEY = "/etc/ssl/private/ssl-cert-snakeoil.key"
PACKAGES = ["certbot", "ssl-cert", "ca-certificates", "openssl"]


def live_dir(settings: Settings) -> str:
    return f"/etc/letsencrypt/live/{settings.mail_hostname}"


def configure(settings: Settings) -> None:
    """Links to a certificate that exists now (self-signed until certbot has one), the hook."""
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


def obtain_certificate(settings: Settings) -> None:
    """Ask the ACME CA for a certificate (HTTP-01 standalone) once; certbot renews it.

    Port 80 is opened only around the challenge (certbot's pre/post hooks, kept for renewals).
    A failure stops the run with certbot's own message; mail keeps running on the fallback.
    """
    if host.get_fact(File, path=f"{live_dir(settings)}/fullchain.pem") is not None:
        return
    environment = f"REQUESTS_CA_BUNDLE={CA_BUNDLE} " if settings.acme_ca_bundle else ""
    command = StringCommand(
        environment + "certbot certonly --non-interactive --agree-tos --standalone",
        "--preferred-challenges http",
        "--server", QuoteString(settings.acme_directory),
        "--email", QuoteString(settings.acme_contact),
        "-d", QuoteString(settings.mail_hostname),
        "--pre-hook", QuoteString("ufw allow 80/tcp >/dev/null 2>&1 || true"),
        "--post-hook", QuoteString("ufw delete allow 80/tcp >/dev/null 2>&1 || true"),
        "--deploy-hook", HOOK,
    )
    server.shell(name=f"Certificate for {settings.mail_hostname} from the ACME CA",
                 commands=[command])


def activate() -> None:
    """certbot's renewal timer active and enabled."""
    units.running("certbot.timer")
