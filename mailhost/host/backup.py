"""Backups with restic (the distribution's package): what cannot be regenerated, the mailboxes
and the DKIM keys, encrypted and deduplicated into the repository named by
``backup_repository`` (sftp:, s3: or a path), on a systemd timer (``backup_schedule``), thinned
by ``backup_keep_daily/weekly/monthly``. A component of both MTAs (mailhost.host.mtas), first
in their lists: with ``restore_from_backup`` a fresh host gets the mailboxes of the latest
snapshot back before its MTA and Dovecot first start. Nothing is installed or written while
``backup_repository`` is None.

The repository password and its credentials (an SSH key, S3 keys) are secrets
(mailhost.secrets): root-only 0600 files in BACKUP_DIR (0700), never on a command line. Every
restic run on the host goes through one wrapper (RESTIC) that reads them; the repository is
initialised by the first backup run that finds none. The TLS key is backed up with certbot's
directory when DANE pins it (``backed_up``); the restore brings back the mailboxes only.
"""

from __future__ import annotations

import shlex

from pyinfra.operations import server

from mailhost import paths
from mailhost.facts import known_state
from mailhost.host import units
from mailhost.keys.steps import KeySteps
from mailhost.operations.files import directory, put_text, write_template
from mailhost.operations.secret_file import secret_file
from mailhost.secrets import BackupSecrets, Secret, Secrets
from mailhost.settings import Settings
from mailhost.settings.fleet import ALONE, FleetView

PACKAGES: tuple[str, ...] = ()  # restic only with a repository: packages(settings), in deploy.py
PACKAGE = "restic"
BACKUP_DIR = f"{paths.MAILHOST_ETC}/backup"
ENVIRONMENT = f"{BACKUP_DIR}/env"
PASSWORD_FILE = f"{BACKUP_DIR}/password"
SSH_KEY = f"{BACKUP_DIR}/ssh_key"
KNOWN_HOSTS = f"{BACKUP_DIR}/known_hosts"
RESTORED = f"{BACKUP_DIR}/restored"  # written once the restore ran (what it restored)
LAST_SUCCESS = f"{BACKUP_DIR}/last-success"  # the time of the last backup run that succeeded
CACHE_DIR = "/var/cache/mailhost-restic"
LIB = paths.MAILHOST_LIB
RESTIC = paths.BACKUP_RESTIC  # restic with this host's repository and credentials
BACKUP_SCRIPT = f"{LIB}/backup"
RESTORE_SCRIPT = f"{LIB}/restore"
SERVICE = paths.BACKUP_SERVICE
TIMER = "mailhost-backup.timer"
UNIT_DIR = "/etc/systemd/system"
UNITS: tuple[str, ...] = ()  # the timer, only with a repository (activated in configure)
ROOTS = (BACKUP_DIR, RESTIC, BACKUP_SCRIPT, RESTORE_SCRIPT, f"{UNIT_DIR}/{SERVICE}",
         f"{UNIT_DIR}/{TIMER}")
# what cannot be regenerated; a restore brings back the mailboxes (the DKIM keys come from the
# controller's secrets_dir, which the deploy uploads: see docs/operations.md, the disaster drill)
BACKED_UP = paths.BACKED_UP
RESTORED_PATHS = (paths.MAILBOX_ROOT,)
# with DANE the TLSA pins certbot's key: its whole directory (the key, the lineage, the account)
# is kept, so a rebuilt host can be given the same key by hand (it is not restored by itself)
CERTBOT_DIR = paths.CERTBOT_DIR


def backed_up(settings: Settings) -> list[str]:
    """What the backup holds: BACKED_UP, and certbot's directory when DANE pins its key."""
    return [*BACKED_UP, *([CERTBOT_DIR] if settings.dane == "auto" else [])]
TAG = paths.BACKUP_TAG


def retire_backups() -> None:
    """backup_repository taken out of the settings: the timer stopped and disabled, its units
    and restic's credentials removed (the repository itself, and restic, are left as they are);
    nothing when the timer's unit file is not there (read by read_paths)."""
    known, state = known_state(f"{UNIT_DIR}/{TIMER}")
    if known and state is None:
        return
    leftovers = " ".join(shlex.quote(p) for p in (
        f"{UNIT_DIR}/{TIMER}", f"{UNIT_DIR}/{SERVICE}", ENVIRONMENT, PASSWORD_FILE, SSH_KEY))
    server.shell(name="Backups off: the timer stopped, restic's credentials removed", commands=[
        f"systemctl disable --now {TIMER} 2>/dev/null || true",
        f"rm -f {leftovers}", "systemctl daemon-reload"])


def packages(settings: Settings) -> list[str]:
    """restic when there is a repository (installed with every other package, in one apt
    transaction: deploy.py)."""
    return [PACKAGE] if settings.backup_repository is not None else []


def environment(settings: Settings, secrets: BackupSecrets,
                password_file: str = PASSWORD_FILE) -> str:
    """The wrapper's environment file (sh syntax; values validated: no quote or control
    character can reach it)."""
    values = {"RESTIC_REPOSITORY": settings.backup_repository.location,
              "RESTIC_PASSWORD_FILE": password_file, "RESTIC_CACHE_DIR": CACHE_DIR}
    if secrets.s3_access_key_id is not None:
        values["AWS_ACCESS_KEY_ID"] = secrets.s3_access_key_id.reveal()
        values["AWS_SECRET_ACCESS_KEY"] = secrets.s3_secret_access_key.reveal()
    return "".join(f"{key}='{value}'\n" for key, value in values.items())


def sftp_command(settings: Settings, ssh_key: str = SSH_KEY,
                 known: str = KNOWN_HOSTS) -> str | None:
    """How restic reaches an sftp: repository: ssh with the host's own key, never asking; the
    server's key pinned (backup_sftp_host_key), else trusted on first use."""
    repository = settings.backup_repository
    if repository.kind != "sftp":
        return None
    checking = "yes" if settings.backup_sftp_host_key else "accept-new"
    return (f"ssh -i {ssh_key} -o IdentitiesOnly=yes -o BatchMode=yes "
            f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking={checking} "
            f"-o ServerAliveInterval=60 {repository.user}@{repository.host} -s sftp")


def known_hosts(settings: Settings) -> str:
    """known_hosts naming the pinned SFTP server key ('' when none is pinned)."""
    if not settings.backup_sftp_host_key:
        return ""
    return f"{settings.backup_repository.host} {settings.backup_sftp_host_key}\n"


def forget_options(settings: Settings) -> str:
    """restic forget's retention: the counts that are not 0."""
    keep = {"daily": settings.backup_keep_daily, "weekly": settings.backup_keep_weekly,
            "monthly": settings.backup_keep_monthly}
    return " ".join(f"--keep-{period} {count}" for period, count in keep.items() if count)


def restore_needed(settings: Settings) -> bool:
    """Whether this run restores: asked for, and not done on this host yet (RESTORED: a
    second run never restores over newer mail)."""
    if settings.backup_repository is None or not settings.restore_from_backup:
        return False
    known, state = known_state(RESTORED)
    return not (known and state is not None)


def first_backup_needed(settings: Settings) -> bool:
    """Whether no backup run has succeeded on this host yet (LAST_SUCCESS missing)."""
    known, state = known_state(LAST_SUCCESS)
    return settings.backup_repository is not None and not (known and state is not None)


def render_data(settings: Settings) -> dict:
    """What the templates get besides ``s`` and ``p``."""
    return {"restic": RESTIC, "environment": ENVIRONMENT, "sftp_command": sftp_command(settings),
            "backed_up": backed_up(settings), "restored_paths": RESTORED_PATHS, "tag": TAG,
            "forget": forget_options(settings), "marker": RESTORED,
            "backup_script": BACKUP_SCRIPT, "service": SERVICE, "last_success": LAST_SUCCESS}


def configure(settings: Settings, secrets: Secrets, steps: KeySteps | None = None,
              fleet: FleetView = ALONE) -> set[str]:
    """restic, its credentials, the scripts and the timer; the restore of a fresh host (once,
    before the MTA starts); nothing without backup_repository.

    + settings: backup_repository, backup_sftp_host_key, backup_schedule, the retention,
      restore_from_backup
    + secrets: the repository password and credentials (secrets.backup)
    """
    if settings.backup_repository is None:
        retire_backups()
        return set()
    directory(BACKUP_DIR, user="root", group="root", mode="700")
    credentials = secrets.backup
    secret_file(name="restic's repository settings and credentials",
                content=Secret(environment(settings, credentials)), path=ENVIRONMENT)
    secret_file(name="restic's repository password", content=credentials.password,
                path=PASSWORD_FILE)
    if credentials.ssh_key is not None:
        key = credentials.ssh_key.reveal().strip() + "\n"
        secret_file(name="restic's SSH key", content=Secret(key), path=SSH_KEY)
    if settings.backup_repository.kind == "sftp":
        put_text(KNOWN_HOSTS, known_hosts(settings), mode="600")
    data = render_data(settings)
    write_template("backup/restic.sh.j2", RESTIC, settings, mode="755", **data)
    write_template("backup/backup.sh.j2", BACKUP_SCRIPT, settings, mode="755", **data)
    write_template("backup/restore.sh.j2", RESTORE_SCRIPT, settings, mode="755", **data)
    timer_changed = any([
        write_template("backup/mailhost-backup.service.j2", f"{UNIT_DIR}/{SERVICE}", settings,
                       **data),
        write_template("backup/mailhost-backup.timer.j2", f"{UNIT_DIR}/{TIMER}", settings,
                       **data),
    ])
    if timer_changed:
        server.shell(name="systemd reads the backup units", commands=["systemctl daemon-reload"])
    if restore_needed(settings):
        server.shell(name="Restore the mailboxes from the latest backup (once, before the MTA "
                          "starts)", commands=[RESTORE_SCRIPT])
    units.activate([TIMER], restart={TIMER} if timer_changed else set())
    if first_backup_needed(settings):
        # a new host is protected from its first deploy on (after a restore: what came back);
        # a repository out of reach does not stop the deploy: the backup check reports it
        server.shell(name="First backup (restic)", commands=[
            f"systemctl start {SERVICE} || echo 'the first backup failed: see journalctl -u "
            f"{SERVICE}; the check reports it'"])
    return set()
