"""A mail domain moving between hosts of one inventory (``move_from`` on the new host; the old
host lists the domain in ``backup_mx_for`` meanwhile: docs/fleet.md, "Moving a domain").

In one run, after both hosts' MTAs are configured and before the domain's DNS changes: the old
host, whose Postfix now relays the domain to the new host instead of delivering it, takes a last
restic snapshot of the domain's mailboxes; the new host restores that snapshot into a
staging directory with the old host's repository credentials and merges each user's Maildir
into its own with Dovecot's one-way dsync (``doveadm sync -1 -R``: messages, folders, flags;
mail that reached the new host already is kept), then removes the staging copy and the
credentials (``send_and_receive``). Each side runs once (a marker in BACKUP_DIR), so a second run
changes nothing. Last, the new host asks the old one for what it relayed but still holds
(ETRN).
"""

from __future__ import annotations

import shlex

from pyinfra.operations import server

from mailhost import paths
from mailhost.facts import known_state
from mailhost.host.backup import (
    BACKUP_DIR,
    RESTIC,
    environment,
    known_hosts,
    sftp_command,
)
from mailhost.host.users import host_dovecot_users
from mailhost.operations.files import directory, put_text, write_template
from mailhost.operations.secret_file import secret_file
from mailhost.secrets import Secret, Secrets
from mailhost.settings import Settings
from mailhost.settings.fleet import FleetView, Move

STAGING = "/var/lib/mailhost-move"  # the restored snapshot, while it is merged


def tag(domain: str) -> str:
    """The tag of the old host's last snapshot of DOMAIN's mailboxes."""
    return f"{paths.BACKUP_TAG}-move-{domain}"


def sent_marker(domain: str) -> str:
    return f"{BACKUP_DIR}/moved-out-{domain}"


def received_marker(domain: str) -> str:
    return f"{BACKUP_DIR}/moved-in-{domain}"


def credentials_dir(domain: str) -> str:
    """Where the new host keeps the old host's repository credentials during the move."""
    return f"{BACKUP_DIR}/move-{domain}"


def _done(marker: str) -> bool:
    known, state = known_state(marker)
    return known and state is not None


def sending(fleet: FleetView) -> list[str]:
    """The domains moving away from this host whose last snapshot is not taken yet."""
    return [d for d in fleet.moves_out if not _done(sent_marker(d))]


def receiving(fleet: FleetView) -> list[Move]:
    """The domains moving here whose mailboxes have not come yet."""
    return [m for m in fleet.moves_in if not _done(received_marker(m.domain))]


def send_and_receive(name: str, fleet: FleetView, every_settings: dict[str, Settings],
                     every_secrets: dict[str, Secrets]) -> None:
    """One step of both hosts of a move (pyinfra runs it on both before either goes on): the
    old host's last snapshot of the domain's mailboxes, taken now that its Postfix relays the
    domain (nothing is delivered there after it); then the new host restores and merges it.

    + name: this host's name in the inventory
    + fleet: its part of the inventory (moves_out, moves_in)
    + every_settings, every_secrets: every host's, by name (the old host's repository and its
      credentials, kept on the new host only while the move runs)
    """
    out, into = sending(fleet), receiving(fleet)
    if not (out or into):
        return
    commands = []
    for domain in out:
        mailboxes = f"{paths.MAILBOX_ROOT}/{domain}"
        commands += [f"install -d -o {paths.VMAIL_UID} -g {paths.VMAIL_GID} {mailboxes}",
                    f"{RESTIC} backup --quiet --tag {tag(domain)} {mailboxes}",
                    f"date -u +%Y-%m-%dT%H:%M:%SZ > {sent_marker(domain)}"]
    names = ", ".join([*out, *(m.domain for m in into)])
    server.shell(name=f"Move of {names}: the old host's last snapshot of its mailboxes (restic, "
                      f"tag {paths.BACKUP_TAG}-move-DOMAIN)", commands=commands or ["true"])
    if out:  # their users, kept for the mail delivered here until Postfix relayed it, go now
        secret_file(name=f"Dovecot users: those of {', '.join(out)} gone (moved)",
                    content=Secret(host_dovecot_users(every_settings[name], every_secrets[name])),
                    path=paths.DOVECOT_USERS, group="dovecot", mode="640")
    for move in into:
        _receive(move, every_settings[move.old], every_secrets[move.old])


def _receive(move: Move, old: Settings, old_secrets: Secrets) -> None:
    credentials = old_secrets.backup
    where = credentials_dir(move.domain)
    directory(BACKUP_DIR, user="root", group="root", mode="700")
    directory(where, user="root", group="root", mode="700")
    password_file = f"{where}/password"
    secret_file(name=f"Move of {move.domain}: {move.old}'s repository settings and credentials",
                content=Secret(environment(old, credentials, password_file)),
                path=f"{where}/env")
    secret_file(name=f"Move of {move.domain}: {move.old}'s repository password",
                content=credentials.password, path=password_file)
    ssh_key, known = f"{where}/ssh_key", f"{where}/known_hosts"
    if credentials.ssh_key is not None:
        secret_file(name=f"Move of {move.domain}: {move.old}'s repository SSH key",
                    content=Secret(credentials.ssh_key.reveal().strip() + "\n"), path=ssh_key)
    if old.backup_repository.kind == "sftp":
        put_text(known, known_hosts(old), mode="600")
    script = f"{where}/receive"
    write_template("move/receive.sh.j2", script, old, mode="700", domain=move.domain,
                   old=move.old, environment=f"{where}/env",
                   sftp_command=sftp_command(old, ssh_key, known), tag=tag(move.domain),
                   staging=f"{STAGING}/{move.domain}", where=where,
                   users=" ".join(shlex.quote(u) for u in move.users),
                   marker=received_marker(move.domain), etrn=paths.ETRN_SCRIPT)
    server.shell(name=f"Move of {move.domain} from {move.old}: its mailboxes from that host's "
                      "last snapshot, merged here (restic restore, doveadm sync)",
                 commands=[script])
