"""The backup component's decisions (facts in -> operations out, see fakehost.py), its files,
its secrets and its check's judgement (mailhost.host.backup, mailhost.checks.backup)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from fakehost import FakeHost, Recorder, on
from pyinfra.operations import apt, files, server
from sample import sample_settings
from secrecy import leaked

from mailhost import facts
from mailhost.checks import OK, WARNING
from mailhost.checks import backup as backup_check
from mailhost.host import backup, resolver
from mailhost.host.mtas import CHASQUID, POSTFIX
from mailhost.operations.files import render
from mailhost.secrets import BackupSecrets, Secret, Secrets, load_secrets
from mailhost.settings import SettingsError

SFTP = {"backup_repository": "sftp:backup@198.51.100.20:/restic",
        "backup_sftp_host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKey comment"}
# a throwaway key made for this run (no key, not even a dummy one, is kept in the repository)
SSH_KEY = ed25519.Ed25519PrivateKey.generate().private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
    serialization.NoEncryption()).decode().strip()
CREDENTIALS = BackupSecrets(password=Secret("restic password 0123"), ssh_key=Secret(SSH_KEY))


@pytest.fixture
def ops(monkeypatch):
    """The operations the component calls (secret_file too), recorded in order."""
    log = []
    for module, name in [(server, "shell"), (files, "put"), (files, "file"),
                         (files, "directory"), (apt, "packages"), (backup, "secret_file")]:
        monkeypatch.setattr(module, name, Recorder(name, log))
    return log


def fresh_host(paths_found=None):
    return FakeHost({facts.PathStates: paths_found or {}})


def test_first_in_both_mtas_and_nothing_without_a_repository(ops):
    # first after the resolver (a restore resolves the repository's host through it)
    assert POSTFIX.components[:2] == CHASQUID.components[:2] == (resolver, backup)
    assert "restic" not in POSTFIX.packages and backup.TIMER not in POSTFIX.units
    with on(fresh_host()):
        facts.read_paths(backup.ROOTS)
        assert backup.configure(sample_settings(), Secrets()) == set()
    assert ops == []


def test_backups_taken_out_of_the_settings_stop_the_timer_and_remove_the_credentials(
        ops, monkeypatch):
    shell = Recorder("shell", ops)
    monkeypatch.setattr(server, "shell", shell)
    timer = {"type": "f", "user": "root", "group": "root", "mode": 644, "sha256": "x",
             "target": None}
    with on(fresh_host({f"{backup.UNIT_DIR}/{backup.TIMER}": timer})):
        facts.read_paths(backup.ROOTS)
        assert backup.configure(sample_settings(), Secrets()) == set()
    assert ops == ["shell: Backups off: the timer stopped, restic's credentials removed"]
    disable, remove, _ = shell.calls[0]["commands"]
    assert disable.startswith(f"systemctl disable --now {backup.TIMER}")
    assert backup.PASSWORD_FILE in remove and backup.SSH_KEY in remove, remove


def test_a_fresh_host_installs_restic_and_restores_before_the_timer_starts(ops):
    settings = sample_settings(**SFTP, restore_from_backup=True)
    with on(fresh_host()):
        facts.read_paths(backup.ROOTS)
        assert backup.configure(settings, Secrets(backup=CREDENTIALS)) == set()
    assert backup.packages(settings) == ["restic"] and backup.packages(sample_settings()) == []
    restore = ops.index("shell: Restore the mailboxes from the latest backup (once, before the "
                        "MTA starts)")
    assert restore < ops.index("shell: mailhost-backup.timer running and enabled")
    assert ops[-1] == "shell: First backup (restic)"  # after the restore: what came back
    assert "secret_file: restic's repository password" in ops
    assert "secret_file: restic's SSH key" in ops
    assert not leaked({"password": "restic password 0123", "key": SSH_KEY}, "\n".join(ops))


def test_a_host_that_restored_once_never_restores_again(ops):
    settings = sample_settings(**SFTP, restore_from_backup=True)
    marker = {path: {"type": "f", "user": "root", "group": "root", "mode": 644,
                     "sha256": None, "target": None}
              for path in (backup.RESTORED, backup.LAST_SUCCESS)}
    with on(fresh_host(marker)):
        facts.read_paths(backup.ROOTS)
        backup.configure(settings, Secrets(backup=CREDENTIALS))
    assert not [op for op in ops if "Restore" in op or "First backup" in op]


def test_files_pin_the_sftp_host_key_and_keep_the_retention():
    settings = sample_settings(**SFTP, backup_schedule="*-*-* 03:30", backup_keep_weekly=0)
    data = backup.render_data(settings)
    wrapper = render("backup/restic.sh.j2", settings, **data)
    assert (f"-o UserKnownHostsFile={backup.KNOWN_HOSTS} -o StrictHostKeyChecking=yes"
            in wrapper) and "backup@198.51.100.20 -s sftp" in wrapper
    assert backup.known_hosts(settings) == ("198.51.100.20 ssh-ed25519 "
                                            "AAAAC3NzaC1lZDI1NTE5AAAAIHostKey\n")
    script = render("backup/backup.sh.j2", settings, **data).splitlines()
    assert "for path in /var/mail/vhosts /etc/mailhost/dkim /etc/letsencrypt; do" in script
    assert "$restic backup --tag mailhost $paths" in script
    assert "$restic forget --tag mailhost --prune --keep-daily 7 --keep-monthly 12" in script
    assert script[-1] == f"date +%s > {backup.LAST_SUCCESS}"  # only after both succeeded
    timer = render("backup/mailhost-backup.timer.j2", settings, **data).splitlines()
    assert "OnCalendar=*-*-* 03:30" in timer and "Persistent=true" in timer
    restore = render("backup/restore.sh.j2", settings, **data)
    assert "--target / --include /var/mail/vhosts" in restore
    env = backup.environment(settings, CREDENTIALS)
    assert env.splitlines()[0] == "RESTIC_REPOSITORY='sftp:backup@198.51.100.20:/restic'"
    assert "AWS_" not in env and "restic password" not in env  # the password has its own file


def test_s3_credentials_go_into_the_environment_file_only():
    settings = sample_settings(backup_repository="s3:https://s3.example.com/bucket/mail")
    credentials = BackupSecrets(Secret("restic password 0123"), None, Secret("AKIAEXAMPLE"),
                                Secret("s3cr3t/key+x="))
    env = backup.environment(settings, credentials)
    assert "AWS_SECRET_ACCESS_KEY='s3cr3t/key+x='" in env.splitlines()
    assert backup.sftp_command(settings) is None


@pytest.mark.parametrize(("secrets_text", "line"), [
    ("", "MAILHOST_BACKUP_PASSWORD: not set"),
    ('backup_password = "short"', "at least 12 characters"),
    ('backup_password = "long enough password"', "MAILHOST_BACKUP_SSH_KEY: not set"),
    ('backup_password = "long enough password"\nbackup_ssh_key = "not a key at all"',
     "expected an SSH private key"),
])
def test_backup_secrets_are_required_by_the_repository_kind(secrets_text, line, tmp_path):
    path = tmp_path / "secrets.toml"
    path.write_text('tsig_secret = "c2VjcmV0"\n' + secrets_text + "\n")
    path.chmod(0o600)
    settings = sample_settings(**SFTP, secrets_file=str(path))
    with pytest.raises(SettingsError) as refused:
        load_secrets(settings, environ={"MAILHOST_PASSWORD_ALICE_EXAMPLE_TEST": "x" * 12,
                                        "MAILHOST_PASSWORD_BOB_EXAMPLE_TEST": "y" * 12})
    assert line in str(refused.value) and "\n" not in str(refused.value)
    assert "long enough password" not in str(refused.value)


def test_an_s3_key_that_could_leave_its_quotes_is_refused(tmp_path):
    settings = sample_settings(backup_repository="s3:https://s3.example.com/bucket")
    with pytest.raises(SettingsError, match="backup_s3_secret_access_key: expected letters"):
        load_secrets(settings, environ={
            "MAILHOST_TSIG_SECRET": "c2VjcmV0", "MAILHOST_BACKUP_PASSWORD": "p" * 16,
            "MAILHOST_BACKUP_S3_ACCESS_KEY_ID": "AKIA", "MAILHOST_PASSWORD_ALICE_EXAMPLE_TEST":
            "x" * 12, "MAILHOST_PASSWORD_BOB_EXAMPLE_TEST": "y" * 12,
            "MAILHOST_BACKUP_S3_SECRET_ACCESS_KEY": "abc'; touch /tmp/x; '"})


CALENDAR = """  Original form: daily
Normalized form: *-*-* 00:00:00
    Next elapse: Thu 2026-11-26 00:00:00 UTC
       From now: 2h left
       Iter. #2: Fri 2026-11-27 00:00:00 UTC
       From now: 1 day 2h left
"""


def test_the_check_judges_the_age_against_two_periods_of_the_schedule():
    assert backup_check.period_seconds(CALENDAR) == 86400
    assert backup_check.period_seconds("Failed to parse") == 86400
    listed = '[{"time":"2026-11-25T22:10:03.123456789Z","short_id":"1a2b3c4d"}]'
    last = backup_check.snapshot_time(listed)
    assert last == backup_check.snapshot_time('[{"time":"2026-11-25T23:10:03.5+01:00"}]')
    day = 86400
    assert backup_check.judge(last + 3600, last, day, "r").status == OK
    old = backup_check.judge(last + 3 * day, last, day, "r")
    assert old.status == WARNING and "3.0 days" in old.found and old.advice
    none = backup_check.judge(last, None, day, "r", error="Fatal: unable to open config file")
    assert none.status == WARNING and not none.blocking and "unable to open" in none.found
    assert backup_check.snapshot_time("[]") is None


def placed(path: str, text: str) -> dict:
    """A PathStates entry: PATH on the host holding TEXT (644, root)."""
    return {path: {"type": "f", "user": "root", "group": "root", "mode": 644,
                   "sha256": hashlib.sha256(text.encode()).hexdigest(), "target": None}}


def test_an_s3_repository_with_its_units_in_place_adds_only_what_differs(ops):
    """s3: no SSH key and no known_hosts file; no restore asked for; the service and the timer
    already as rendered: no daemon-reload; a first backup already done: none. An sftp
    repository without a pinned key has an empty known_hosts (trust on first use)."""
    settings = sample_settings(backup_repository="s3:https://s3.example.com/bucket/mail")
    credentials = BackupSecrets(Secret("restic password 0123"), None, Secret("AKIAEXAMPLE"),
                                Secret("s3cr3t/key+x="))
    data = backup.render_data(settings)
    found = {}
    for unit in (backup.SERVICE, backup.TIMER):
        path = f"{backup.UNIT_DIR}/{unit}"
        found |= placed(path, render(f"backup/{unit}.j2", settings, **data))
    found |= placed(backup.LAST_SUCCESS, "1700000000\n")
    with on(fresh_host(found)):
        facts.read_paths(backup.ROOTS)
        backup.configure(settings, Secrets(backup=credentials))
    assert "secret_file: restic's SSH key" not in ops
    assert not [op for op in ops if backup.KNOWN_HOSTS in op or "daemon-reload" in op
                or "systemd reads" in op or "Restore" in op or "First backup" in op], ops
    assert "secret_file: restic's repository password" in ops
    assert backup.known_hosts(sample_settings(
        backup_repository="sftp:backup@198.51.100.20:/restic")) == ""
