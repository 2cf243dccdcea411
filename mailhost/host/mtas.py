"""The MTAs a host can run, each a list of components (mailhost.host): adding a component to
an MTA is one module and one entry in its ``components``."""

from __future__ import annotations

from types import ModuleType

from mailhost.host import Mta, chasquid, dovecot, opendkim, postfix, postsrsd, rspamd
from mailhost.settings import Settings


def served_by(server: ModuleType, name: str, components: tuple[ModuleType, ...],
              dkim_signer: str, tls_configurable: bool) -> Mta:
    """The MTA whose SMTP server is the module ``server``: it declares CERTIFICATE_READERS,
    QUEUE, OLD_TLS_ADVICE and CBC_ADVICE."""
    return Mta(name=name, components=components, dkim_signer=dkim_signer,
               certificate_readers=server.CERTIFICATE_READERS, queue=server.QUEUE,
               old_tls_advice=server.OLD_TLS_ADVICE, cbc_advice=server.CBC_ADVICE,
               tls_configurable=tls_configurable)


POSTFIX = served_by(postfix, name="postfix",
                    components=(postsrsd, opendkim, rspamd, dovecot, postfix),  # postfix last
                    dkim_signer=opendkim.USER, tls_configurable=True)
CHASQUID = served_by(chasquid, name="chasquid", components=(rspamd, chasquid),
                     dkim_signer=chasquid.USER, tls_configurable=False)
MTAS = {mta.name: mta for mta in (POSTFIX, CHASQUID)}


def mta_of(settings: Settings) -> Mta:
    """The MTA the host runs."""
    return MTAS[settings.mta]


def others(settings: Settings) -> list[Mta]:
    """The MTAs the host does not run (stopped when switching: port 25 is released first)."""
    return [mta for name, mta in MTAS.items() if name != settings.mta]
