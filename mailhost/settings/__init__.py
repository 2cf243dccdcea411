"""Settings: everything deploy.py reads from host.data, validated once into one typed object.

A wrong value stops the run before anything changes, with one line:
``settings: KEY = VALUE: what is expected``. Secrets are not settings: see mailhost.secrets.

- values.py: the value types and their validators (names, addresses, URLs, numbers...);
- backup.py: the value types of the backup settings (restic's repository, schedule, host key);
- model.py: the Settings model, its checks across keys, and load_settings;
- keys.py: which keys host data may hold (the model's, pyinfra's own), checked first;
- messages.py: the lines the user reads when a setting is wrong.

The package imports nothing of mailhost above it (only mailhost.records and mailhost.spf);
importers use the names below, from mailhost.settings.
"""

from mailhost.settings.backup import BackupRepository
from mailhost.settings.messages import SettingsError
from mailhost.settings.model import (
    CLOUDFLARE_API,
    LETSENCRYPT,
    SECRET_KEYS,
    Settings,
    load_settings,
)
from mailhost.settings.values import (
    DOCUMENTATION_NETWORKS,
    MAX_ROTATING_SELECTOR,
    domain_name,
    email_address,
)

__all__ = (
    "CLOUDFLARE_API",
    "DOCUMENTATION_NETWORKS",
    "LETSENCRYPT",
    "MAX_ROTATING_SELECTOR",
    "SECRET_KEYS",
    "BackupRepository",
    "Settings",
    "SettingsError",
    "domain_name",
    "email_address",
    "load_settings",
)
