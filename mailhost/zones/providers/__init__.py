"""DNS providers: each reads a zone and applies a plan (see base.Provider)."""

from __future__ import annotations

from functools import partial

from mailhost.secrets import Secrets
from mailhost.settings import Settings
from mailhost.zones.providers.base import Provider, ProviderError

__all__ = ("Provider", "ProviderError", "make_provider")


def make_provider(settings: Settings, secrets: Secrets) -> Provider:
    """The provider the settings name, connected with the secrets."""
    if settings.dns_provider == "cloudflare":
        from mailhost.zones.providers.cloudflare import CloudflareProvider

        return CloudflareProvider(
            api_token=secrets.cloudflare_api_token.reveal(),
            base_url=settings.cloudflare_api_url,
        )
    if settings.dns_provider == "lexicon":
        from mailhost.lookup import zone_signed
        from mailhost.zones.providers.lexicon import LexiconProvider

        return LexiconProvider(settings.dns_lexicon_provider, settings.dns_lexicon_options,
                               {k: v.reveal() for k, v in secrets.lexicon.items()},
                               signed=partial(zone_signed, settings))
    from mailhost.zones.providers.rfc2136 import Rfc2136Provider

    return Rfc2136Provider(
        server=settings.dns_server,
        port=settings.dns_port,
        tsig_key_name=settings.dns_tsig_key_name,
        tsig_secret=secrets.tsig_secret.reveal(),
        tsig_algorithm=settings.dns_tsig_algorithm,
    )
