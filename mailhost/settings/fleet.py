"""The hosts of one inventory as one mail system: what each host needs to know of the others.

A mail domain has its mail host (the host listing it in ``mail_domains``: the mailboxes, MX 10)
and may have backup MX hosts (those listing it in ``backup_mx_for``: MX 20). A backup MX
accepts mail only for the addresses its mail host accepts (the mail host's users and aliases,
read here from the same inventory, so nothing is typed twice), holds it while the mail host
is down and hands it over when it answers. ``fleet_view`` gives one host its part of that;
``check_fleet`` refuses an inventory where a backup names a domain nobody hosts.

A domain moves from host A to host B (``move_from`` on B): B is its mail host, A its backup MX
until the move is over (A relays what still reaches it to B); A's last snapshot of the domain's
mailboxes reaches B before the domain's MX points at B (mailhost.host.move).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailhost.settings.messages import SettingsError
from mailhost.settings.model import Settings


@dataclass(frozen=True)
class Peer:
    """Another host of the inventory, as this one reaches it."""

    hostname: str
    addresses: tuple[str, ...]  # its IPv4 and IPv6


@dataclass(frozen=True)
class HeldDomain:
    """A domain this host is the backup MX of."""

    domain: str
    mail_hosts: tuple[Peer, ...]  # where the held mail goes (the domain's MX 10)
    recipients: tuple[str, ...]  # every address the mail hosts accept in the domain


@dataclass(frozen=True)
class Move:
    """A domain moving to this host from OLD (a host of the inventory, by name)."""

    domain: str
    old: str
    users: tuple[str, ...]  # this host's users in the domain: the mailboxes merged here


@dataclass(frozen=True)
class FleetView:
    """One host's part of the fleet."""

    mx: dict[str, tuple[str, ...]]  # each domain it serves: every MX host, in MX order
    held: tuple[HeldDomain, ...] = ()  # the domains it is the backup MX of
    backups: tuple[Peer, ...] = ()  # the backup MX hosts of its own domains
    moves_in: tuple[Move, ...] = ()  # domains moving here (move_from)
    moves_out: tuple[str, ...] = ()  # domains moving away from here (another host's move_from)

    @property
    def held_domains(self) -> list[str]:
        return [h.domain for h in self.held]


ALONE = FleetView(mx={})  # a host by itself (scripts/check, a test): its own name only


def mx_hosts(fleet: dict[str, Settings], domain: str) -> tuple[str, ...]:
    """Every MX host of DOMAIN in the inventory: its mail hosts, then its backup MX hosts."""
    names = [s.mail_hostname for s in fleet.values() if domain in s.mail_domains]
    names += [s.mail_hostname for s in fleet.values() if domain in s.backup_mx_for]
    return tuple(dict.fromkeys(names))


def recipients(settings: Settings, domain: str) -> tuple[str, ...]:
    """The addresses a mail host accepts in DOMAIN: its users, its aliases and postmaster@
    (which every mail domain has, RFC 5321 4.5.1)."""
    found = {a for a in [*settings.mail_users, *settings.mail_aliases]
             if a.rpartition("@")[2] == domain}
    return tuple(sorted(found | {f"postmaster@{domain}"}))


def peer(settings: Settings) -> Peer:
    addresses = [str(settings.ipv4), *([str(settings.ipv6)] if settings.ipv6 else [])]
    return Peer(settings.mail_hostname, tuple(addresses))


def fleet_view(fleet: dict[str, Settings], name: str) -> FleetView:
    """Host NAME's part of the inventory's FLEET (every host's settings, by host name)."""
    own = fleet[name]
    domains = [*own.mail_domains, *own.backup_mx_for]
    held = []
    for domain in own.backup_mx_for:
        hosts = [s for s in fleet.values() if domain in s.mail_domains]
        held.append(HeldDomain(domain, tuple(peer(s) for s in hosts), tuple(sorted(
            {a for s in hosts for a in recipients(s, domain)}))))
    backups = {s.mail_hostname: peer(s) for s in fleet.values()
               if set(s.backup_mx_for) & set(own.mail_domains)}
    moves_in = tuple(Move(domain, old, tuple(u for u in own.mail_users
                                             if u.rpartition("@")[2] == domain))
                     for domain, old in own.move_from.items())
    moves_out = tuple(d for s in fleet.values() for d, old in s.move_from.items() if old == name)
    return FleetView(mx={d: mx_hosts(fleet, d) for d in domains}, held=tuple(held),
                     backups=tuple(backups.values()), moves_in=moves_in, moves_out=moves_out)


def check_fleet(fleet: dict[str, Settings]) -> None:
    """A backup MX of a domain that no host of the inventory hosts would accept mail it can
    hand to nobody: refused in one line (SettingsError; the caller names the host)."""
    hosted = {d for s in fleet.values() for d in s.mail_domains}
    for name, settings in fleet.items():
        for domain in settings.backup_mx_for:
            if domain not in hosted:
                raise SettingsError(
                    f"{name}: settings: backup_mx_for = {domain!r}: expected a domain another "
                    "host of this inventory has in mail_domains (the backup MX hands its mail "
                    "to that host, and accepts only its addresses)")
        for domain, old in settings.move_from.items():
            check_move(fleet, name, domain, old)


def check_move(fleet: dict[str, Settings], name: str, domain: str, old: str) -> None:
    """Host NAME's move of DOMAIN from host OLD: OLD is a host of the inventory, relays the
    domain to NAME meanwhile (backup_mx_for) and has the snapshot that carries its mailboxes
    (backup_repository)."""
    def refused(expected: str) -> SettingsError:
        return SettingsError(f"{name}: settings: move_from = {{{domain!r}: {old!r}}}: "
                             f"expected {expected}")
    if old not in fleet:
        raise refused(f"a host of this inventory ({', '.join(n for n in fleet if n != name)})")
    if domain not in fleet[old].backup_mx_for:
        raise refused(f"{old} to have {domain} in backup_mx_for while the domain moves (it "
                      "relays to this host what still reaches it, until the old MX's TTL has "
                      "passed): docs/fleet.md")
    if fleet[old].backup_repository is None:
        raise refused(f"{old} to have backup_repository (the domain's mailboxes reach this "
                      "host through its snapshot there)")
    if not (fleet[old].mail_manage_host and fleet[name].mail_manage_host):
        raise refused("both hosts managed here (mail_manage_host = True): the move runs on "
                      "them")
