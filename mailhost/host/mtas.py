"""The MTAs a host can run, each a list of components (mailhost.host): adding a component to
an MTA is one module and one entry in its ``components``."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType, ModuleType

from pyinfra import host
from pyinfra.api.exceptions import DeployError

from mailhost.facts import QueuedMessages
from mailhost.host import (
    Mta,
    backup,
    chasquid,
    dovecot,
    nginx,
    opendkim,
    postfix,
    postsrsd,
    resolver,
    rspamd,
    webmail,
)
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
# nginx (the MTA-STS policy) in both, only when MTA-STS is on; the webmail (Roundcube, PHP-FPM)
# in both, only when on, before nginx, which sends it its requests; the backup first in both (a
# restore brings the mailboxes back before anything delivers), after the resolver (unbound:
# validated DNS for Postfix's DANE, and a restore resolves through it)
POSTFIX = served_by(postfix, name="postfix",  # postfix last
                    components=(resolver, backup, postsrsd, opendkim, rspamd, dovecot, webmail,
                                nginx, postfix),
                    dkim_signer=opendkim.USER, tls_configurable=True)
CHASQUID = served_by(chasquid, name="chasquid",
                     components=(resolver, backup, rspamd, dovecot, webmail, nginx, chasquid),
                     dkim_signer=chasquid.USER, tls_configurable=False)
MTAS = MappingProxyType({mta.name: mta for mta in (POSTFIX, CHASQUID)})


def for_settings(mta: Mta, settings: Settings) -> Mta:
    """The MTA without the components these settings do not want (a component may declare
    ``wanted(settings)``: nginx only with MTA-STS), nor their certificate readers."""
    kept = tuple(c for c in mta.components if getattr(c, "wanted", lambda _: True)(settings))
    left_out = {u for c in mta.components if c not in kept for u in c.UNITS}
    return replace(mta, components=kept, certificate_readers=tuple(
        r for r in mta.certificate_readers if r.unit not in left_out))


def mta_of(settings: Settings) -> Mta:
    """The MTA the host runs, with the components its settings want."""
    return for_settings(MTAS[settings.mta], settings)


def others(settings: Settings) -> list[Mta]:
    """The MTAs the host does not run (stopped when switching: port 25 is released first)."""
    return [for_settings(mta, settings) for name, mta in MTAS.items() if name != settings.mta]


def refuse_a_switch_while_mail_waits(settings: Settings) -> None:
    """A switch of MTA never strands mail: while the queue of an MTA the host is leaving holds
    messages, the deploy stops before anything changes, saying how to empty it (a queue cannot
    be handed over: Postfix's and chasquid's queue files are each their own format)."""
    leaving = others(settings)
    counts = host.get_fact(QueuedMessages, spools={m.name: m.queue.spool for m in leaving})
    for mta in leaving:
        if counts.get(mta.name):
            raise DeployError(
                f"mta = {settings.mta!r}: the host's {mta.name} queue still holds "
                f"{counts[mta.name]} message(s) that a switch would strand; {mta.queue.drain}, "
                "then deploy again")
