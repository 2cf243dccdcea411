# The lab's fleet: the three VPS that `scripts/lab up --vps 3` boots, from one inventory.
#
#     scripts/lab up --vps 3
#     pyinfra inventory/lab-fleet.py deploy.py       # the three hosts, in parallel
#
#   mail.example.test   the mail host of example.test (as in inventory/lab.py): MX 10
#   mx2.example.test    the backup MX of example.test (backup_mx_for): MX 20, holds its mail
#                       while mail.example.test is away; no mailbox of its own
#   mail.shop.test      the mail host of shop.test, a domain in a zone of its own
#
# Each host is inventory/lab.py's host with its own name, addresses, domain and users; every
# other setting (DNS provider, ACME, proxy, checks: the MAILHOST_LAB_* variables included) is
# that file's, so the two inventories cannot drift. example.test's MTA-STS policy names both
# of its MX hosts.

import runpy
from pathlib import Path

import lab.common as _common

_lab = runpy.run_path(str(Path(__file__).with_name("lab.py")))
_base = _lab["mail_hosts"][0][1]


def _host(vps, mail_domains, mail_users, aliases, **settings):
    """inventory/lab.py's host, as VPS (one of lab.common.FLEET) serving MAIL_DOMAINS (or
    the backup MX of settings' backup_mx_for)."""
    domain = (mail_domains or settings.get("backup_mx_for"))[0]
    return (vps.hostname, {
        **_base,
        "ssh_hostname": vps.ipv4,
        "mail_hostname": vps.hostname,
        "ipv4": vps.ipv4,
        "ipv6": vps.ipv6,
        "mail_domains": mail_domains,
        "mail_users": mail_users,
        "mail_aliases": aliases,
        "dmarc_rua": [f"mailto:dmarc@{domain}"],
        "tlsrpt_rua": [f"mailto:tlsrpt@{domain}"],
        "acme_email": f"postmaster@{domain}",
        # one restic repository per host on the lab's SFTP server
        "backup_repository": f"sftp:root@{_common.RX4}:/restic-{vps.key}",
        **settings,
    })


_example_users = _base["mail_users"]
_example_aliases = _base["mail_aliases"]
mail_hosts = [
    _host(_common.FLEET[0], ["example.test"], _example_users, _example_aliases),
    _host(_common.FLEET[1], [], [], {}, backup_mx_for=["example.test"], mta_sts_mode="off"),
    _host(_common.FLEET[2], ["shop.test"], ["carol@shop.test"], {
        "postmaster@shop.test": ["carol@shop.test"],
        "dmarc@shop.test": ["carol@shop.test"],
        "tlsrpt@shop.test": ["carol@shop.test"],
    }),
]
