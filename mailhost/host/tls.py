"""TLS: certbot on the host, a certificate for the mail hostname, renewal that reloads the MTA.

The MTA always reads paths.TLS_CERT and paths.TLS_KEY. Until certbot has a
certificate they point at the host's self-signed one (ssl-cert's snakeoil), so a CA that fails
never leaves the host without mail; certbot's deploy hook then points them at the real one.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from pyinfra import host
from pyinfra.api import FactBase, QuoteString, StringCommand
from pyinfra.facts.files import File, Link
from pyinfra.operations import files, python, server

from mailhost.dns import autoconfig, mta_sts
from mailhost.facts import known_lines, known_state
from mailhost.host import Mta
from mailhost.keys.dane import (
    Rollover,
    next_tlsa_answered,
    parse_seen,
    rollover_request,
    rollover_step,
    seen_text,
    tlsa_of_public_key,
)
from mailhost.keys.dkim import clock
from mailhost.operations.files import directory, put_text, write_template
from mailhost.operations.secret_file import secret_file
from mailhost.paths import (
    ACME_CA_BUNDLE,
    ACME_DIR,
    ACME_DNS_CREDENTIALS,
    CERTBOT_TIMER,
    MAILHOST_ETC,
    NEXT_KEY,
    NEXT_KEY_SEEN,
    TLS_CERT,
    TLS_DEPLOY_HOOK,
    TLS_DIR,
    TLS_HELD,
    TLS_KEY,
    TLS_KEY_ROLLOVER,
    live_certificate_dir,
)
from mailhost.secrets import Secret, Secrets
from mailhost.settings import Settings

SNAKEOIL_CERT = "/etc/ssl/certs/ssl-cert-snakeoil.pem"
SNAKEOIL_KEY = "/etc/ssl/private/ssl-cert-snakeoil.key"
PACKAGES = ("certbot", "ssl-cert", "ca-certificates", "openssl")
DNS_PLUGINS = MappingProxyType({"rfc2136": "python3-certbot-dns-rfc2136",
               "cloudflare": "python3-certbot-dns-cloudflare",
               "lexicon": "python3-lexicon"})  # no certbot plugin: our manual hook uses it
LEXICON_HOOK = f"{ACME_DIR}/lexicon-hook"


def packages(settings: Settings) -> tuple[str, ...]:
    """certbot, and for DNS-01 its plugin for the DNS provider."""
    if settings.acme_challenge == "dns-01":
        return (*PACKAGES, DNS_PLUGINS[settings.dns_provider])
    return PACKAGES


RENEWAL_ENVIRONMENT = "/etc/systemd/system/certbot.service.d/mailhost-ca.conf"


def live_dir(settings: Settings) -> str:
    return live_certificate_dir(settings.mail_hostname)


def roots(settings: Settings) -> list[str]:
    """What this module writes under or reads (facts.read_paths)."""
    return [MAILHOST_ETC, RENEWAL_ENVIRONMENT, live_dir(settings)]


def has_certificate(settings: Settings) -> bool:
    """Whether certbot has the host's certificate."""
    path = f"{live_dir(settings)}/fullchain.pem"
    known, state = known_state(path)
    return state is not None if known else host.get_fact(File, path=path) is not None


def certificate_names(settings: Settings) -> list[str]:
    """The names the certificate must hold: the mail hostname, with MTA-STS on every
    ``mta-sts.DOMAIN`` (nginx serves the policies with it), and with mail_client_autoconfig
    every ``autoconfig.DOMAIN`` and ``autodiscover.DOMAIN`` (nginx serves the clients' files)."""
    policy_hosts = [mta_sts.policy_host(d) for d in settings.mail_domains]
    return [settings.mail_hostname, *(policy_hosts if settings.mta_sts_mode != "off" else []),
            *autoconfig.host_names(settings)]


class CertificateNames(FactBase):
    """The DNS names of a PEM certificate's subjectAltName ([] when there is no such file)."""

    @staticmethod
    def default():
        return []

    def command(self, path):
        return StringCommand("! test -e", QuoteString(path), "|| openssl x509 -noout -ext "
                             "subjectAltName -in", QuoteString(path), "2>/dev/null || true")

    def process(self, output):
        return [item.strip()[4:].lower() for line in output for item in line.split(",")
                if item.strip().startswith("DNS:")]


def missing_names(settings: Settings) -> list[str]:
    """The names the host's certificate must hold and does not (all when there is none)."""
    wanted = certificate_names(settings)
    if not has_certificate(settings):
        return wanted
    if wanted == [settings.mail_hostname]:
        return []  # the certificate was asked for this name: no need to read it
    present = host.get_fact(CertificateNames, path=f"{live_dir(settings)}/fullchain.pem")
    return [name for name in wanted if name not in present]


def configure(settings: Settings, secrets: Secrets, mta: Mta) -> None:
    """Links to a certificate that exists now (self-signed until certbot has one), the hook
    (which hands a renewal to each of the MTA's certificate readers), and for DNS-01 the
    provider credentials certbot's plugin reads (root only)."""
    directory(TLS_DIR, mode="755", name="TLS directory")
    certificate = has_certificate(settings)
    for link, fallback in [(TLS_CERT, SNAKEOIL_CERT), (TLS_KEY, SNAKEOIL_KEY)]:
        name = link.rsplit("/", 1)[1]
        target = f"{live_dir(settings)}/{name}" if certificate else fallback
        if _link_target(link) != target:
            files.link(name=f"TLS {name} -> {target}", path=link, target=target, force=True)
    write_template("tls/deploy-hook.sh.j2", TLS_DEPLOY_HOOK, settings, mode="755", mta=mta)
    if settings.dane == "auto":
        write_template("tls/key-rollover.sh.j2", TLS_KEY_ROLLOVER, settings, mode="700")
    if settings.acme_challenge == "dns-01":
        directory(ACME_DIR, mode="700", name="ACME credentials directory")
        secret_file(name=f"DNS-01 credentials ({settings.dns_provider})",
                    path=ACME_DNS_CREDENTIALS,
                    content=_dns_credentials(settings, secrets))
        if settings.dns_provider == "lexicon":
            write_template("tls/lexicon-hook.py.j2", LEXICON_HOOK, settings, mode="700")
    if settings.acme_ca_bundle:
        put_text(ACME_CA_BUNDLE, Path(settings.acme_ca_bundle).read_text(),
                 name="ACME server's CA bundle")
        put_text(RENEWAL_ENVIRONMENT,
                 f"[Service]\nEnvironment=REQUESTS_CA_BUNDLE={ACME_CA_BUNDLE}\n",
                 name="certbot renewals trust the ACME server's CA")


def _link_target(path: str) -> str | None:
    known, state = known_state(path)
    if known:
        return state["target"] if state is not None and state["type"] == "l" else None
    return (host.get_fact(Link, path=path) or {}).get("link_target")


def _dns_credentials(settings: Settings, secrets: Secrets) -> Secret:
    """What certbot's plugin on the VPS reads: the DNS-01 credential when one is set (a key
    or token that may only write _acme-challenge records), else the provisioning one."""
    if settings.dns_provider == "cloudflare":
        token = secrets.cloudflare_acme_api_token or secrets.cloudflare_api_token
        return Secret(f"dns_cloudflare_api_token = {token.reveal()}\n")
    if settings.dns_provider == "lexicon":  # lexicon's option names: the hook's config
        credentials = secrets.acme_lexicon or secrets.lexicon
        options = {**settings.dns_lexicon_options,
                   **{k: v.reveal() for k, v in credentials.items()}}
        return Secret("".join(f"{k} = {v}\n" for k, v in sorted(options.items())))
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
    """Ask the ACME CA for a certificate once, and again when it lacks a name it must hold
    (``certificate_names``: MTA-STS turned on); certbot renews it, with the same names.

    HTTP-01 (default): certbot's standalone server, port 80 opened only around the challenge
    (certbot's pre/post hooks, kept for renewals). DNS-01: certbot's plugin for the DNS provider
    writes the ``_acme-challenge`` TXT record; no port is opened.
    A failure (the CA down or unreachable, a challenge refused) shows certbot's own message
    and does not stop the run: mail keeps flowing on the self-signed fallback, and the checks
    that follow mark the certificate and fail the run, naming what is missing. The next run
    asks again; the deploy hook then hands the certificate to every daemon.
    """
    missing = missing_names(settings)
    if not missing:
        return
    names = certificate_names(settings)
    what = ", ".join(names) if len(missing) == len(names) else \
        f"{settings.mail_hostname}, adding {', '.join(missing)}"
    server.shell(name=f"Certificate for {what} from the ACME CA",
                 commands=[certbot_certonly(settings)], _ignore_errors=True)


def certbot_certonly(settings: Settings, *extra: str) -> StringCommand:
    """certbot's command for the host's certificate (certificate_names), keeping its key."""
    names = certificate_names(settings)
    environment = ["env", f"REQUESTS_CA_BUNDLE={ACME_CA_BUNDLE}"] if settings.acme_ca_bundle else []
    if settings.acme_challenge == "dns-01" and settings.dns_provider == "lexicon":
        challenge = [
            "--manual", "--preferred-challenges dns",
            "--manual-auth-hook", QuoteString(f"{LEXICON_HOOK} auth"),
            "--manual-cleanup-hook", QuoteString(f"{LEXICON_HOOK} cleanup"),
        ]
    elif settings.acme_challenge == "dns-01":
        plugin = f"dns-{settings.dns_provider}"
        challenge = [
            "--authenticator", plugin, f"--{plugin}-credentials", ACME_DNS_CREDENTIALS,
            f"--{plugin}-propagation-seconds", str(settings.acme_dns_propagation_seconds),
        ]
    else:
        challenge = [
            "--standalone", "--preferred-challenges http",
            "--pre-hook", QuoteString("ufw allow 80/tcp >/dev/null 2>&1 || true"),
            "--post-hook", QuoteString("ufw delete allow 80/tcp >/dev/null 2>&1 || true"),
        ]
    return StringCommand(
        *environment, "certbot certonly --non-interactive --agree-tos --reuse-key", *extra,
        *challenge,
        "--server", QuoteString(settings.acme_directory),
        "--email", QuoteString(settings.acme_contact),
        "--cert-name", QuoteString(settings.mail_hostname),
        *[part for name in names for part in ("-d", QuoteString(name))],
        "--deploy-hook", TLS_DEPLOY_HOOK,
    )


TIMERS = (CERTBOT_TIMER,)  # renewals: started with the MTA's units (units.converge)


# --- DANE key rollover (mailhost.keys.dane) ---


def key_rollover(settings: Settings, read_key) -> Rollover:
    """This deploy's step of the host's key rollover (dane.rollover_step; deploy.py keeps it
    for the TLSA records); a steady Rollover with ``dane = "off"`` or before the first
    certificate.

    + read_key: a key path on the host -> its base64 DER public half (None: no key)
    """
    asked = rollover_request(settings.secrets_dir, settings.mail_hostname).exists()
    if settings.dane != "auto":
        step = Rollover()
    elif not has_certificate(settings):
        step = Rollover(waiting="the first certificate from the ACME CA" if asked else "")
    else:
        upcoming = tlsa_of_public_key(read_key(NEXT_KEY))
        step = rollover_step(
            has_next=upcoming is not None, seen=parse_seen(known_lines(NEXT_KEY_SEEN)[1]),
            asked=asked, now=clock(settings), ttl=settings.dns_ttl,
            visible=lambda: next_tlsa_answered(settings, upcoming))
    return step


def advance_rollover(settings: Settings, step: Rollover) -> None:
    """The step's host part before the DNS records: the next key made (and the controller's
    request cleared), or the time its TLSA was first answered everywhere recorded. A switch
    that a stopped run left midway is finished or undone first (the next step does it again)."""
    if known_state(TLS_HELD)[1] is not None:
        server.shell(name="A TLS key switch stopped midway finished or undone",
                     commands=[StringCommand(TLS_KEY_ROLLOVER, "undo")])
    if step.make:
        server.shell(name="DANE: the next TLS key made on the host",
                     commands=[StringCommand(TLS_KEY_ROLLOVER, "make")])
    request = rollover_request(settings.secrets_dir, settings.mail_hostname)
    if step.next_key and request.exists():  # made now, or a rollover under way answers it
        python.call(name=f"Rollover request {request} cleared",
                    function=request.unlink, missing_ok=True)
    if step.mark_seen:
        put_text(NEXT_KEY_SEEN, seen_text(step), mode="600",
                 name="DANE: the next key's TLSA answered by every authoritative server")


def switch_key(settings: Settings, step: Rollover) -> None:
    """The rollover's switch: certbot renews the certificate over the next key (its deploy
    hook hands it to every daemon), then the next key's files go; if certbot fails, the
    current key and certificate stay, and the run says so (the next run tries again)."""
    if step.switch:
        server.shell(name="DANE: the certificate renewed over the next TLS key",
                     commands=[StringCommand(TLS_KEY_ROLLOVER, "switch",
                                             certbot_certonly(settings, "--force-renewal"))],
                     _ignore_errors=True)
