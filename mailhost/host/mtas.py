"""The MTAs a host can run, each a list of components (mailhost.host): adding a component to
an MTA is one module and one entry in its ``components``."""

from __future__ import annotations

from mailhost.host import Mta, chasquid, dovecot, opendkim, postfix, postsrsd
from mailhost.settings import Settings

POSTFIX = Mta(
    name="postfix",
    components=(postsrsd, opendkim, dovecot, postfix),  # start order: postfix last
    dkim_signer=opendkim.USER,
    certificate_readers=postfix.CERTIFICATE_READERS,
    queue=postfix.QUEUE,
    old_tls_advice=postfix.OLD_TLS_ADVICE,
    cbc_advice=postfix.CBC_ADVICE,
    tls_configurable=True,
)
CHASQUID = Mta(
    name="chasquid",
    components=(chasquid,),
    dkim_signer=chasquid.USER,
    certificate_readers=chasquid.CERTIFICATE_READERS,
    queue=chasquid.QUEUE,
    old_tls_advice=chasquid.OLD_TLS_ADVICE,
    cbc_advice=chasquid.CBC_ADVICE,
    tls_configurable=False,
)
MTAS = {mta.name: mta for mta in (POSTFIX, CHASQUID)}


def mta_of(settings: Settings) -> Mta:
    """The MTA the host runs."""
    return MTAS[settings.mta]


def others(settings: Settings) -> list[Mta]:
    """The MTAs the host does not run (stopped when switching: port 25 is released first)."""
    return [mta for name, mta in MTAS.items() if name != settings.mta]
