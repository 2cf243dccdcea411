"""Settings: everything deploy.py reads from host.data, validated once into one typed object
(mailhost.settings.model; the package re-exports what the rest of the tree imports)."""

from mailhost.settings.model import (
    CLOUDFLARE_API,
    DOCUMENTATION_NETWORKS,
    LETSENCRYPT,
    MAX_ROTATING_SELECTOR,
    OUR_PREFIXES,
    SECRET_KEYS,
    BackupRepository,
    Settings,
    SettingsError,
    domain_name,
    load_settings,
)

__all__ = [
    "CLOUDFLARE_API",
    "DOCUMENTATION_NETWORKS",
    "LETSENCRYPT",
    "MAX_ROTATING_SELECTOR",
    "OUR_PREFIXES",
    "SECRET_KEYS",
    "BackupRepository",
    "Settings",
    "SettingsError",
    "domain_name",
    "load_settings",
]
