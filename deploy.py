"""Turn a VPS into a mail host and publish its DNS records.

    pyinfra inventory/prod.py deploy.py          # apply (asks first; -y to skip)
    pyinfra inventory/prod.py deploy.py --dry    # show every host and DNS change, write nothing

The story, in order: settings of every host validated once (mailhost.settings) -> the DKIM
keys -> the host (mailhost.host: base, IPv6, firewall, TLS, MTA) -> the DNS records of each
zone, planned and applied once per zone (mailhost.dnssync) -> verification.
"""

from pyinfra import host, inventory

from mailhost.dkim import host_key_path, kinds_for, local_key_path
from mailhost.facts import DkimPublicKey
from mailhost.operations import dkim, dns
from mailhost.run import current_run

run = current_run(inventory)
settings = run.settings[host.name]


def read_host_key(owner_settings, path):
    """The public half of a DKIM key on the host whose settings these are (None: no key)."""
    for name, candidate in run.settings.items():
        if candidate is owner_settings and candidate.mail_manage_host:
            return inventory.get_host(name).get_fact(DkimPublicKey, path=path)
    return None


for domain in settings.mail_domains:
    for kind in kinds_for(settings):
        on_host = settings.mail_manage_host
        dkim.key(
            name=f"DKIM {kind} key of {domain}",
            local_path=str(local_key_path(settings, domain, kind)),
            remote_path=host_key_path(settings, domain, kind) if on_host else None,
            kind=kind,
            rsa_bits=settings.rsa_bits,
        )

for zone in run.zones_applied_by(host.name):
    dns.zone_records(
        name=f"DNS records of {zone}",
        zone=zone,
        preview=run.preview(zone, read_host_key),
        refresh=lambda zone=zone: run.zone_sync(zone, read_host_key),
    )
