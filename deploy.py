"""Turn a VPS into a mail host and publish its DNS records.

    pyinfra inventory/prod.py deploy.py          # apply (asks first; -y to skip)
    pyinfra inventory/prod.py deploy.py --dry    # show every host and DNS change, write nothing

The story, in order: settings of every host validated once (mailhost.settings) -> the host's
base, firewall and DKIM keys -> the MTA with a certificate that exists now -> the DNS records
of each zone, planned and applied once per zone (mailhost.dnssync) -> the ACME certificate
(its HTTP-01 challenge needs the A record) -> verification.
"""

from pyinfra import host, inventory

from mailhost.dkim import host_key_path, kinds_for, local_key_path
from mailhost.facts import DkimPublicKey
from mailhost.host import base, chasquid, firewall, postfix, tls
from mailhost.operations import dkim, dns, verify
from mailhost.run import current_run

run = current_run(inventory)
settings = run.settings[host.name]
secrets = run.secrets[host.name]
DKIM_SIGNER = {"postfix": "opendkim", "chasquid": "chasquid"}
MTAS = {"postfix": postfix, "chasquid": chasquid}
mta, other_mta = MTAS[settings.mta], MTAS["chasquid" if settings.mta == "postfix" else "postfix"]


def read_host_key(owner_settings, path):
    """The public half of a DKIM key on the host whose settings these are (None: no key)."""
    for name, candidate in run.settings.items():
        if candidate is owner_settings and candidate.mail_manage_host:
            return inventory.get_host(name).get_fact(DkimPublicKey, path=path)
    return None


if settings.mail_manage_host:
    base.configure_apt(settings)
    base.configure_identity(settings)
    base.configure_ipv6(settings)
    base.install_packages(["ufw", *tls.packages(settings), *mta.PACKAGES])
    firewall.configure()

for domain in settings.mail_domains:
    for kind in kinds_for(settings):
        on_host = settings.mail_manage_host
        dkim.key(
            name=f"DKIM {kind} key of {domain}",
            local_path=str(local_key_path(settings, domain, kind)),
            remote_path=host_key_path(settings, domain, kind) if on_host else None,
            kind=kind,
            rsa_bits=settings.rsa_bits,
            owner=DKIM_SIGNER[settings.mta],
        )

if settings.mail_manage_host:
    tls.configure(settings, secrets)
    restart = mta.configure(settings, secrets)
    other_mta.deactivate()  # switching MTAs: the old one releases port 25 first
    mta.activate(restart)

for zone in run.zones_applied_by(host.name):
    dns.zone_records(
        name=f"DNS records of {zone}",
        zone=zone,
        preview=run.preview(zone, read_host_key),
        refresh=lambda zone=zone: run.zone_sync(zone, read_host_key),
    )

if settings.mail_manage_host:
    tls.obtain_certificate(settings)
    tls.activate()

if settings.mail_manage_host:
    verify.checks(name="Checks of the mail host", settings=settings, secrets=secrets)
