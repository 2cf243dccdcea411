"""nginx: serves each mail domain's MTA-STS policy (RFC 8461) at
``https://mta-sts.DOMAIN/.well-known/mta-sts.txt`` when ``mta_sts_mode`` is not "off", and with
``mail_client_autoconfig`` the files mail clients set themselves up from (mailhost.dns.autoconfig:
Mozilla's ``https://autoconfig.DOMAIN/mail/config-v1.1.xml``, Outlook's answer to a POST at
``https://autodiscover.DOMAIN/autodiscover/autodiscover.xml``), and with ``webmail`` Roundcube at
``https://MAIL_HOSTNAME/`` (mailhost.host.webmail: only its index.php through PHP-FPM, and its
static files); nothing else (404 for any other path or name, nothing on port 80: certbot's
HTTP-01 keeps it). A component of both MTAs, there only when one of them is on (``wanted``):
nothing is installed, opened or started otherwise.
The clients' files are written into the configuration itself (``return 200``): nginx serves a
static file to GET only, and Outlook asks with POST.

The ``nginx`` package: the one name every supported image ships (the ``-light`` flavour's
packaging differs between releases, and would only drop modules this configuration never
loads). Its own configuration
replaces the package's whole ``nginx.conf``, so the default site is never loaded. It reads the
certificate the MTA reads (paths.TLS_CERT: self-signed until certbot's, whose names include
every ``mta-sts.DOMAIN``), TLS 1.2 and 1.3 only; the renewal hook reloads it.

All turned off on a host that served a policy (``retired``): nginx stopped and disabled (deploy.py
puts it in units.converge's ``stopped``), then our nginx.conf and policy directory removed
(``remove_leftovers``). The package stays installed: stopped and disabled, it listens on
nothing (the firewall closes 443 too), removing it is an apt transaction on every such run's
path for no gain, and turning MTA-STS on again only needs our files back.
"""

from __future__ import annotations

import shlex

from pyinfra.operations import server

from mailhost.dns import autoconfig, mta_sts
from mailhost.facts import known_state
from mailhost.host import CertificateReader, webmail
from mailhost.host.dovecot import CIPHERS
from mailhost.keys.steps import KeySteps
from mailhost.operations.files import directory, put_text, write_template
from mailhost.settings import Settings
from mailhost.settings.fleet import ALONE, FleetView

PACKAGES = ("nginx",)
UNITS = ("nginx",)
CONFIG = "/etc/nginx/nginx.conf"
POLICY_DIR = "/etc/nginx/mta-sts"  # POLICY_DIR/DOMAIN.txt, read by the workers (www-data)
ROOTS = (CONFIG, POLICY_DIR)
CERTIFICATE_READERS = (CertificateReader("nginx", after_renewal="reload"),)
HTTPS_PORT = 443


def wanted(settings: Settings) -> bool:
    """Whether the host runs nginx at all: only to serve an MTA-STS policy, the clients'
    autoconfiguration or the webmail."""
    return (settings.mta_sts_mode != "off" or settings.mail_client_autoconfig
            or webmail.wanted(settings))


def retired(settings: Settings) -> bool:
    """MTA-STS off on a host that still has our policy directory (read by read_paths: no
    round trip; a host that never served a policy has none). The directory goes last
    (``remove_leftovers``): a run stopped midway is finished by the next one."""
    if wanted(settings):
        return False
    known, state = known_state(POLICY_DIR)
    return not known or state is not None


def stopped_units(settings: Settings) -> list[str]:
    """nginx when MTA-STS was turned off on this host (units.converge stops and disables it);
    none otherwise (an nginx of the host's own, without our policy directory, is left alone)."""
    return list(UNITS) if retired(settings) else []


def remove_leftovers(settings: Settings) -> None:
    """MTA-STS turned off: our nginx.conf, then the policy directory, removed (after nginx is
    stopped); nothing on a host that never served a policy, nor on a second run.

    + settings: mta_sts_mode
    """
    if not retired(settings):
        return
    server.shell(name="MTA-STS off: nginx's configuration and the policies removed",
                 commands=[f"rm -f {shlex.quote(CONFIG)}", f"rm -rf {shlex.quote(POLICY_DIR)}"])


def ports(settings: Settings) -> tuple[int, ...]:
    """443, for the policy, the clients' files and the webmail (the component is left out
    entirely when none is on)."""
    return (HTTPS_PORT,) if wanted(settings) else ()


def quoted(text: str) -> str:
    """TEXT as an nginx string in single quotes (no variables: a ``$`` is refused, as are
    quotes and backslashes, which no file of ours holds)."""
    if any(c in text for c in "'\\$"):
        raise ValueError(f"cannot be written into nginx.conf as is: {text[:60]!r}")
    return f"'{text}'"


def client_sites(settings: Settings) -> list[tuple[str, str, str, str]]:
    """(autoconfig name, its file, autodiscover name, its answer), each file as an nginx string,
    for each mail domain with mail_client_autoconfig ([] without)."""
    if not settings.mail_client_autoconfig:
        return []
    answer = quoted(autoconfig.autodiscover_response(settings))
    return [(autoconfig.autoconfig_host(domain),
             quoted(autoconfig.mozilla_config(domain, settings)),
             autoconfig.autodiscover_host(domain), answer)
            for domain in settings.mail_domains]


def webmail_site(settings: Settings) -> dict | None:
    """What nginx needs to serve the webmail at https://MAIL_HOSTNAME/ (None when off)."""
    if not webmail.wanted(settings):
        return None
    return {"name": settings.mail_hostname, "root": webmail.DOCUMENT_ROOT,
            "socket": webmail.FPM_SOCKET, "body_megabytes": webmail.UPLOAD_MEGABYTES + 5}


def configure(settings: Settings, secrets, steps: KeySteps | None = None,
              fleet: FleetView = ALONE) -> set[str]:
    """The policy file of each mail domain, the clients' files, and the server that serves only
    them; what to restart.

    + settings: mta_sts_mode, mta_sts_max_age, mail_client_autoconfig, mail_domains,
      mail_hostname, imap_starttls, webmail
    + fleet: the host's part of the inventory (the policy names every MX of the domain)
    """
    policies = mta_sts.policy_of(settings, fleet.mx)
    directory(POLICY_DIR, mode="755", name="MTA-STS policy directory")
    changed = [put_text(f"{POLICY_DIR}/{domain}.txt", text, name=f"MTA-STS policy of {domain}")
               for domain, text in policies.items()]
    sites = [(mta_sts.policy_host(domain), f"{POLICY_DIR}/{domain}.txt") for domain in policies]
    changed.append(write_template("nginx/nginx.conf.j2", CONFIG, settings, sites=sites,
                                  policy_path=mta_sts.POLICY_PATH, ciphers=CIPHERS,
                                  client_sites=client_sites(settings),
                                  autoconfig_path=autoconfig.AUTOCONFIG_PATH,
                                  autodiscover_path=autoconfig.AUTODISCOVER_PATH,
                                  webmail=webmail_site(settings)))
    return set(UNITS) if any(changed) else set()
