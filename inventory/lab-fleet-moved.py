# The lab's fleet with shop.test moved from mail.shop.test to mail.example.test (docs/fleet.md,
# "Moving a domain between hosts"): inventory/lab-fleet.py with three changes.
#
#     pyinfra inventory/lab-fleet.py deploy.py          # before: shop.test on mail.shop.test
#     pyinfra inventory/lab-fleet-moved.py deploy.py    # the move, in one run of every host
#
#   mail.example.test   now also the mail host of shop.test (its users, its aliases), with
#                       move_from = {"shop.test": "mail.shop.test"}: that host's last snapshot
#                       of the domain's mailboxes is merged here before shop.test's MX changes
#   mail.shop.test      no mail domain of its own any more: the backup MX of shop.test
#                       (backup_mx_for), relaying to mail.example.test what still reaches it
#                       while the old MX record is in caches; its Maildirs stay as they were
#   mx2.example.test    unchanged

import runpy
from pathlib import Path

_fleet = runpy.run_path(str(Path(__file__).with_name("lab-fleet.py")))
_example, _mx2, _shop = (dict(data) for _, data in _fleet["mail_hosts"])
_names = [name for name, _ in _fleet["mail_hosts"]]

_example.update({
    "mail_domains": [*_example["mail_domains"], *_shop["mail_domains"]],
    "mail_users": [*_example["mail_users"], *_shop["mail_users"]],
    "mail_aliases": {**_example["mail_aliases"], **_shop["mail_aliases"]},
    "move_from": {"shop.test": _names[2]},
})
_shop.update({
    "mail_domains": [],
    "mail_users": [],
    "mail_aliases": {},
    "backup_mx_for": ["shop.test"],
    "mta_sts_mode": "off",
})
mail_hosts = list(zip(_names, (_example, _mx2, _shop), strict=True))
