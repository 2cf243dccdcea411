"""scripts/import-mail without a host: its arguments are checked into one line each before
anything is read or connected, and the old provider's password goes only into the root-only
file doveadm reads (over SSH's stdin), never into a command line or the output. The import
itself, against the lab's old provider: tests/test_import_mail_lab.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sample import BASE
from secrecy import leaked

from mailhost.cli import import_mail
from mailhost.cli.import_mail import (
    Importer,
    OldServer,
    Refused,
    dovecot_quoted,
    imapc_config,
    imaps_url,
    main,
    parse_status,
    run_import,
)
from mailhost.secrets import Secret, import_password

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = 'p"a\\ss %u word$'
GOOD = ["alice@example.test", "--from", "imaps://imap.old.example:993", "--user",
        "alice@old.example"]


@pytest.fixture
def inventory(tmp_path):
    """An inventory of one managed host whose mailboxes are alice's and bob's."""
    data = {**BASE, "mail_manage_host": True, "secrets_dir": str(tmp_path / "secrets"),
            "secrets_file": str(tmp_path / "secrets.toml"),
            "mail_users": ["alice@example.test", "bob@example.test"]}
    path = tmp_path / "inventory.py"
    path.write_text(f"mail_hosts = [('mail.example.test', {data!r})]\n")
    return path


@pytest.mark.parametrize("url, host, port", [
    ("imaps://imap.old.example:993", "imap.old.example", 993),
    ("imaps://IMAP.Old.Example", "imap.old.example", 993),
    ("imaps://imap.old.example:10993/", "imap.old.example", 10993),
    ("imaps://[2001:db8::40]:993", "2001:db8::40", 993),
])
def test_an_imaps_url_becomes_a_host_and_port(url, host, port):
    assert imaps_url(url) == (host, port)


@pytest.mark.parametrize("url, expected", [
    ("imap://imap.old.example", "expected imaps://HOST[:PORT]"),
    ("https://imap.old.example", "expected imaps://HOST[:PORT]"),
    ("imap.old.example", "expected imaps://HOST[:PORT]"),
    ("imaps://imap.old.example:99999", "expected imaps://HOST[:PORT]"),
    ("imaps://imap.old.example/INBOX", "nothing after the port"),
    ("imaps://alice:secret@imap.old.example", "expected no user or password in the URL"),
    ("imaps://imap..example", "expected imaps://HOST[:PORT]"),
])
def test_a_bad_url_says_what_is_expected(url, expected):
    with pytest.raises(ValueError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        imaps_url(url)


@pytest.mark.parametrize("args, line", [
    (["alice", *GOOD[1:]], "scripts/import-mail: address = 'alice': expected an e-mail address"),
    ([GOOD[0], "--from", "imap://imap.old.example", *GOOD[3:]],
     "scripts/import-mail: --from = 'imap://imap.old.example': expected imaps://HOST[:PORT]"),
    ([*GOOD[:3], "--user", "alice at old"],
     "scripts/import-mail: --user = 'alice at old': expected an e-mail address"),
])
def test_bad_input_is_one_line_naming_the_field_before_any_connection(inventory, capsys,
                                                                      monkeypatch, args, line):
    monkeypatch.setattr(import_mail, "connect_host", lambda *a: pytest.fail("connected"))
    assert main([str(inventory), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(line), err
    assert len(err.strip().splitlines()) == 1, err


def command_line(inventory, *args, env=None) -> subprocess.CompletedProcess:
    """The command in a process of its own (reading an inventory patches the process with
    gevent, which a test process must not get), its stdin not a terminal."""
    return subprocess.run([sys.executable, "-m", "mailhost.cli.import_mail", str(inventory),
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env=env)


def test_an_address_that_is_no_mailbox_of_the_inventory_is_refused_in_one_line(inventory):
    result = command_line(inventory, "carol@example.test", *GOOD[1:])
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("scripts/")]
    assert lines == ["scripts/import-mail: address = 'carol@example.test': expected a mailbox "
                     f"of a host of {inventory} (its mail_users: alice@example.test, "
                     "bob@example.test)"], result.stderr


def test_a_password_in_the_url_is_never_shown(inventory, capsys):
    assert main([str(inventory), GOOD[0], "--from", "imaps://alice:hunter2hunter2@imap.x",
                 *GOOD[3:]]) == 2
    err = capsys.readouterr().err
    assert "hunter2" not in err and "--from = '***'" in err, err


def test_without_a_password_nor_a_terminal_the_line_says_where_to_put_it(inventory):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILHOST_IMPORT_")}
    result = command_line(inventory, *GOOD, env=env)  # no host: it stops before connecting
    assert result.returncode == 2, result.stderr
    err = result.stderr
    assert "password: none for alice@example.test: put it under [import_passwords]" in err
    assert "MAILHOST_IMPORT_PASSWORD_ALICE_EXAMPLE_TEST" in err


def test_the_password_comes_from_the_environment_or_the_secrets_table(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[import_passwords]\n"alice@example.test" = "from-the-file"\n')
    secrets.chmod(0o600)
    from sample import sample_settings

    settings = sample_settings(secrets_file=str(secrets))
    assert import_password(settings, "alice@example.test", {}) == Secret("from-the-file")
    env = {"MAILHOST_IMPORT_PASSWORD_ALICE_EXAMPLE_TEST": "from-the-environment"}
    assert import_password(settings, "alice@example.test", env) == Secret("from-the-environment")
    assert import_password(settings, "bob@example.test", {}) is None


def test_a_dovecot_value_is_quoted_and_escaped():
    assert dovecot_quoted(PASSWORD) == '"p\\"a\\\\ss %u word$"'


class FakeRemote:
    """The host: every command and what it got on stdin; doveadm's answers."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []
        self.copied = False
        self.version = "2.3.21 (47349e2482)\n"

    def run(self, command, stdin="", timeout=600):
        self.calls.append((command, stdin))
        if command == "dovecot --version":
            return 0, self.version, ""
        if "mailbox status" in command:
            if "=imapc" in command:
                return 0, "mailbox\tmessages\tvsize\nINBOX\t3\t300\nSent\t1\t100\n", ""
            rows = "INBOX\t3\t300\nSent\t1\t100\n" if self.copied else "INBOX\t0\t0\n"
            return 0, "mailbox\tmessages\tvsize\n" + rows, ""
        return 0, "", ""

    def start(self, command):
        self.calls.append((command, ""))
        self.copied = True
        remote = self

        class Channel:
            def exit_status_ready(self):
                return True

            def recv_ready(self):
                return bool(getattr(self, "left", True))

            def recv(self, size):
                self.left = False
                return b"pid 4242\nexit 0\n"

            def recv_exit_status(self):
                return 0

            def close(self):
                remote.calls.append(("(channel closed)", ""))

        return Channel()


def test_the_password_goes_only_to_the_root_only_file_over_stdin(capsys):
    remote = FakeRemote()
    server = OldServer("imap.old.example", 993, "alice@old.example")
    importer = Importer(remote, "alice@example.test", server)
    assert run_import(importer, Secret(PASSWORD), as_json=False) == 0
    out, err = capsys.readouterr()
    commands = [command for command, _ in remote.calls]
    assert leaked({"password": PASSWORD}, *commands, out, err) == []
    given = [stdin for _, stdin in remote.calls if stdin]
    assert given == [imapc_config(server, Secret(PASSWORD))]
    assert f"imapc_password = {dovecot_quoted(PASSWORD)}" in given[0]
    write = next(command for command, stdin in remote.calls if stdin)
    assert write.startswith("umask 077 && ") and "chmod 700 /run/mailhost-import" in write
    sync = next(c for c in commands if " sync " in c)
    assert "doveadm -c /run/mailhost-import/alice_at_example.test.conf sync -1 -R" in sync
    assert commands[-1] == "rm -f /run/mailhost-import/alice_at_example.test.conf"
    assert "imported 4 messages (0.0 MB), 1 new folders" in out, out
    assert "the old mailbox: 2 folders, 4 messages" in out, out


def test_dovecot_2_4_gets_its_own_settings():
    server = OldServer("imap.old.example", 993, "alice@old.example")
    old, new = (imapc_config(server, Secret(PASSWORD), v) for v in ((2, 3), (2, 4)))
    assert "imapc_ssl_verify = yes" in old and "imapc_features" in old
    assert new.startswith("dovecot_config_version = 2.4.0\n")
    assert "ssl_client_require_valid_cert = yes" in new and "imapc_features" not in new
    remote = FakeRemote()
    remote.version = "2.4.1-4 (7d8c0e5759)\n"
    assert run_import(Importer(remote, "alice@example.test", server), Secret(PASSWORD),
                      as_json=True) == 0
    assert any("-o mail_driver=imapc -o mail_path= " in c for c, _ in remote.calls)
    assert [stdin for _, stdin in remote.calls if stdin] == [
        imapc_config(server, Secret(PASSWORD), (2, 4))]


def test_a_dovecot_whose_settings_differ_is_refused_before_the_password_is_written():
    remote = FakeRemote()
    remote.version = "2.2.36 (1f10bfa63)\n"
    server = OldServer("imap.x.example", 993, "a@x.example")
    importer = Importer(remote, "alice@example.test", server)
    with pytest.raises(RuntimeError, match="the host's Dovecot is 2.2.36: expected 2.3 or 2.4"):
        run_import(importer, Secret(PASSWORD), as_json=False)
    assert remote.calls == [("dovecot --version", "")]


def test_doveadm_status_rows_are_read_by_column():
    text = "mailbox\tmessages\tvsize\nINBOX\t5000\t1290000\nProjets.Été 2024\t2\t712\n"
    assert parse_status(text) == {"INBOX": (5000, 1290000), "Projets.Été 2024": (2, 712)}
    assert parse_status("") == {}


def test_refused_is_one_line():
    assert issubclass(Refused, Exception)
