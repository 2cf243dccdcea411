"""unbound: the host's own validating DNS resolver, for both MTAs.

Postfix enforces the DANE of the servers it sends to (``smtp_tls_security_level = dane``), which
it can do only with answers validated by a resolver it trusts: one on the host itself, reached
at 127.0.0.1 (``options trust-ad``: glibc 2.31+ drops the AD bit otherwise). unbound validates
from the root's trust anchor the Ubuntu package ships and keeps fresh (RFC 5011).

``/etc/resolv.conf`` becomes a plain file naming only 127.0.0.1. On Ubuntu it is a symlink to
systemd-resolved's stub (127.0.0.53, which does not validate and clears the AD bit): the link
is replaced; resolved keeps running for its other users, unbound and it do not share an address.
Postfix copies resolv.conf into its chroot when it starts: a change restarts it.

unbound reads every ``/etc/unbound/unbound.conf.d/*.conf``: ours is ``mailhost.conf``; the lab
adds its own there (forwarding to its DNS, its zones' trust anchors), as an internet would.
It is started from ``configure``, before resolv.conf names it, so every later step (a restore
from backup, certbot) resolves. After the deploy writes a zone, unbound forgets what it cached
of it (``forget``: ``unbound-control``, which Ubuntu 24.04's package enables on a local socket;
where it is not enabled nothing is flushed, and a stale answer lasts its negative TTL).
"""

from __future__ import annotations

from pyinfra.api import QuoteString, StringCommand
from pyinfra.operations import files, server

from mailhost.facts import known_state
from mailhost.host import units
from mailhost.keys.steps import KeySteps
from mailhost.operations.files import put_text, render
from mailhost.settings import Settings
from mailhost.settings.fleet import ALONE, FleetView

# dns-root-data: the root trust anchor unbound starts from (/usr/share/dns/root.key); only a
# Recommends of unbound, and without it unbound does not start (seen in the chasquid world)
PACKAGES = ("unbound", "dns-root-data")
UNITS = ("unbound",)
CONFIG = "/etc/unbound/unbound.conf.d/mailhost.conf"
RESOLV_CONF = "/etc/resolv.conf"
ROOTS = (CONFIG, RESOLV_CONF)
LISTEN = "127.0.0.1"
RESOLV_CONF_TEXT = (f"# Managed by mailhost (mailhost/host/resolver.py): the host's unbound\n"
                    f"nameserver {LISTEN}\noptions edns0 trust-ad\n")
# Postfix reads a copy of resolv.conf in its chroot, made when it starts
RESOLV_CONF_READERS = frozenset({"postfix"})


def forget(zone: str) -> None:
    """unbound drops what it cached under ZONE: after the deploy changed the zone, the host
    sees the new records at once (a name asked before it existed is otherwise answered
    NXDOMAIN from the cache, even synthesized from a cached NSEC, for the SOA's negative TTL).

    + zone: the DNS zone the deploy just wrote
    """
    server.shell(name=f"unbound forgets what it cached of {zone}", commands=[StringCommand(
        "unbound-control flush_zone", QuoteString(zone), ">/dev/null 2>&1 || true")])


def configure(settings: Settings, secrets, steps: KeySteps | None = None,
              fleet: FleetView = ALONE) -> set[str]:
    """unbound's configuration, unbound running, then resolv.conf naming it; what to restart.

    + settings: nothing of them (the resolver is the same on every host)
    """
    changed = put_text(CONFIG, render("unbound/mailhost.conf.j2", settings, listen=LISTEN),
                       name="unbound: the host's validating resolver")
    units.activate(UNITS, restart=set(UNITS) if changed else set())
    known, state = known_state(RESOLV_CONF)
    if known and state is not None and state["type"] == "l":  # systemd-resolved's stub
        files.link(name="resolv.conf: no longer systemd-resolved's stub", path=RESOLV_CONF,
                   present=False)
    if put_text(RESOLV_CONF, RESOLV_CONF_TEXT, name="resolv.conf names the host's unbound"):
        return set(RESOLV_CONF_READERS)
    return set()
