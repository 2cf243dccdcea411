"""The MTAs a host can run, each a list of components (mailhost.host): adding a component to
an MTA is one module and one entry in its ``components``."""

from __future__ import annotations

from types import ModuleType

from mailhost.host import Mta, backup, chasquid, dovecot, opendkim, postfix, postsrsd, rspamd
from mailhost.settings import Settings


def served_by(server: ModuleType, name: str, components: tuple[ModuleType, ...],
              dkim_signer: str, tls_configurable: bool) -> Mta:
    """The MTA whose SMTP server is the module ``server``: it declares QUEUE, OLD_TLS_ADVICE
    and CBC_ADVICE; every component that reads the certificate declares CERTIFICATE_READERS
    (the SMTP server first: the hook hands it a renewal first)."""
    readers = [r for c in (server, *components) for r in getattr(c, "CERTIFICATE_READERS", ())]
    return Mta(name=name, components=components, dkim_signer=dkim_signer,
               certificate_readers=tuple(dict.fromkeys(readers)), queue=server.QUEUE,
               old_tls_advice=server.OLD_TLS_ADVICE, cbc_advice=server.CBC_ADVICE,
               tls_configurable=tls_configurable)


# Dovecot (IMAP, delivery, the users) in both, started before the SMTP server that uses it;
# the backup first in both (a restore brings the mailboxes back before anything delivers)
POSTFIX = served_by(postfix, name="postfix",
                    components=(backup, postsrsd, opendkim, rspamd, dovecot, postfix),
                    dkim_signer=opendkim.USER, tls_configurable=True)
CHASQUID = served_by(chasquid, name="chasquid", components=(backup, rspamd, dovecot, chasquid),
                     dkim_signer=chasquid.USER, tls_configurable=False)
MTAS = {mta.name: mta for mta in (POSTFIX, CHASQUID)}


def mta_of(settings: Settings) -> Mta:
    """The MTA the host runs."""
    return MTAS[settings.mta]


def others(settings: Settings) -> list[Mta]:
    """The MTAs the host does not run (stopped when switching: port 25 is released first)."""
    return [mta for name, mta in MTAS.items() if name != settings.mta]
