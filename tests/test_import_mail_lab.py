"""scripts/import-mail in the lab: alice's mailbox at the lab's old provider (imap.old.example,
Dovecot in the receiver's namespace: 5,012 messages in 7 folders, non-ASCII folder names,
8-bit messages, one of 20 MB, flags and a keyword) arrives whole in her mailbox on the host
(every folder, message, flag and internal date compared over IMAP on both sides), a second
run copies nothing, and a run killed midway and run again leaves no message twice. The old
password is read from the lab's secrets file and never shows in a process list, here or on
the host. With Dovecot 2.3 (Ubuntu 24.04, Postfix) and 2.4 (Debian 13, chasquid) on the
host."""

from __future__ import annotations

import imaplib
import json
import re
import signal
import ssl
import subprocess
import time

import pytest
from lab_world import (
    HOSTNAME,
    ROOT,
    VPS4,
    deploy,
    fresh_lab,
    lab,
    secrets,
    ssh,
    tls_context,
    world_id,
)
from lab_world import world_env as env_of
from secrecy import leaked

from lab.old_provider import FOLDERS, MESSAGES, OLD_HOSTNAME, UNCERTIFIED_NAME

pytestmark = pytest.mark.lab

# Dovecot 2.3 on Ubuntu 24.04 with Postfix; Dovecot 2.4 (its own settings) on Debian 13
WORLDS = [("ubuntu-24.04", "postfix", "rfc2136", "http-01"),
          ("debian-13", "chasquid", "rfc2136", "dns-01")]
ALICE = "alice@example.test"
MAILDIR = "/var/mail/vhosts/example.test/alice"
COMMAND = [str(ROOT / "scripts" / "import-mail"), "inventory/lab.py", ALICE, "--from",
           "imaps://imap.old.example:993", "--user", "alice@old.example", "--json"]


@pytest.fixture(scope="module", params=WORLDS, ids=[world_id(w) for w in WORLDS])
def world(request):
    """A fresh lab with the old provider, deployed in this world; its status."""
    status = fresh_lab(request.param[0], "--old-provider")
    status["world"] = request.param
    deploy(status, "-y")
    yield status
    lab("down")  # nothing of this world is left running after its tests


@pytest.fixture
def empty_mailbox(world):
    """alice's mailbox on the host, empty (as before her first import)."""
    ssh(f"rm -rf {MAILDIR} && doveadm mailbox list -u {ALICE} >/dev/null")
    assert count_here() == 0


def count_here() -> int:
    """Messages in alice's Maildir on the host (every folder), counted from the files."""
    return int(ssh(f"find {MAILDIR} \\( -path '*/cur/*' -o -path '*/new/*' \\) -type f "
                   "2>/dev/null | wc -l").strip() or 0)


def import_mail(world, **env: str) -> tuple[int, dict, str]:
    result = subprocess.run(COMMAND, cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env=env_of(world, **env))
    try:
        counts = json.loads(result.stdout)
    except ValueError:
        counts = {}
    return result.returncode, counts, result.stdout + result.stderr


class Imaps(imaplib.IMAP4_SSL):
    """IMAPS to an address, the certificate verified for a name."""

    def __init__(self, address: str, name: str, context: ssl.SSLContext):
        self.name = name
        super().__init__(address, 993, ssl_context=context)

    def _create_socket(self, timeout):
        plain = imaplib.IMAP4._create_socket(self, timeout)
        return self.ssl_context.wrap_socket(plain, server_hostname=self.name)


def mailbox(address: str, user: str, password: str, context: ssl.SSLContext,
            server_hostname: str) -> dict[str, list]:
    """Every selectable folder (its IMAP name, "/" separated) -> its messages' (Message-ID,
    flags, internal date), sorted."""
    with Imaps(address, server_hostname, context) as client:
        client.login(user, password)
        found = {}
        for line in client.list()[1]:
            flags, separator, name = re.match(rb'\((.*?)\) "(.)" (.*)', line).groups()
            if b"\\Noselect" in flags:
                continue
            name = name.decode().strip('"')
            _, count = client.select(f'"{name}"', readonly=True)
            messages = []
            if int(count[0]):
                _, data = client.fetch("1:*", "(FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS "
                                              "(MESSAGE-ID)])")
                for item in data:
                    if isinstance(item, tuple):
                        flags_ = set(re.search(rb"FLAGS \((.*?)\)", item[0]).group(1).split())
                        date = re.search(rb'INTERNALDATE "(.*?)"', item[0]).group(1)
                        messages.append((item[1].strip(), tuple(sorted(flags_ - {b"\\Recent"})),
                                         date))
            found[name.replace(separator.decode(), "/")] = sorted(messages)
        return found


def old_mailbox(world) -> dict[str, list]:
    old = world["old_provider"]
    context = ssl.create_default_context(cafile=old["ca_file"])
    return mailbox(address=old["ipv4"], user=old["user"],
                   password=secrets(world)["import_passwords"][ALICE], context=context,
                   server_hostname=old["hostname"])


def new_mailbox(world) -> dict[str, list]:
    return mailbox(address=VPS4, user=ALICE,
                   password=secrets(world)["passwords"][ALICE], context=tls_context(world),
                   server_hostname=HOSTNAME)


def assert_whole(world, old: dict) -> None:
    """Every folder of the old mailbox is here with the same messages (none twice), flags
    and internal dates; the folders only the host has (Junk, Trash...) hold nothing."""
    new = new_mailbox(world)
    assert set(old) <= set(new), sorted(set(old) - set(new))
    for folder, messages in old.items():
        assert len(new[folder]) == len(messages), folder
        assert new[folder] == messages, folder
    assert all(not new[f] for f in set(new) - set(old)), sorted(set(new) - set(old))


def test_the_lab_status_names_the_old_provider(world):
    old = world["old_provider"]
    assert old["running"] and old["imap_url"] == f"imaps://{OLD_HOSTNAME}:993"
    assert old["user"] == "alice@old.example" and old["messages"] == MESSAGES == 5012
    mailbox_ = old_mailbox(world)
    assert {f: len(m) for f, m in mailbox_.items()} == {
        "INBOX": 5000, "Sent": 3, "Drafts": 1, "Archive/2019": 3, "Re&AOc-us": 2,
        "Projets/&AMk-t&AOk- 2024": 2, "&ZeVnLIqe-": 1}  # Reçus, Projets/Été 2024, 日本語
    assert len(FOLDERS) == 7
    assert any(b"$Important" in flags for _, flags, _ in mailbox_["INBOX"])


def test_the_old_mailbox_arrives_whole_and_a_second_run_copies_nothing(world, empty_mailbox):
    old = old_mailbox(world)
    code, counts, output = import_mail(world)
    assert code == 0, output[-3000:]
    assert counts["old"]["messages"] == MESSAGES and counts["old"]["folders"] == 7, counts
    assert counts["imported"]["messages"] == MESSAGES, counts
    assert counts["imported"]["bytes"] == counts["old"]["bytes"] > 20 * 1024 * 1024, counts
    assert f"/{MESSAGES} messages copied" in output, output[-3000:]
    assert_whole(world, old)
    code, counts, output = import_mail(world)
    assert code == 0, output[-3000:]
    assert counts["imported"] == {"folders": 0, "messages": 0, "bytes": 0}, counts
    assert counts["here"]["messages"] == MESSAGES, counts
    assert_whole(world, old)
    assert old_mailbox(world) == old  # nothing changed at the old provider


def started_and_stopped(world, sig: int) -> tuple[int, str, str, str]:
    """The import started, then sent SIG once a few hundred messages are on the host: its
    exit status and output, and the process lists (on the host, here) while it ran."""
    process = subprocess.Popen(COMMAND, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=env_of(world))
    ssh(f"until [ $(find {MAILDIR} -path '*/cur/*' -type f 2>/dev/null | wc -l) -ge 300 ]; "
        "do sleep 0.05; done", timeout=120)
    on_host = ssh("ps -eo args")
    here = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    process.send_signal(sig)
    output = process.communicate(timeout=60)[0].decode(errors="replace")
    return process.returncode, output, on_host, here


def doveadm_gone() -> None:
    """No doveadm of an import left on the host, nor its configuration (the password)."""
    deadline = time.monotonic() + 30
    while "mailhost-import" in ssh("ps -eo args | grep '[d]oveadm -c'") \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "mailhost-import" not in ssh("ps -eo args | grep '[d]oveadm -c'")
    assert ssh("ls /run/mailhost-import/*.conf 2>/dev/null") == ""  # the password is gone


def test_killed_midway_and_run_again_nothing_is_copied_twice(world, empty_mailbox):
    old = old_mailbox(world)
    password = secrets(world)["import_passwords"][ALICE]
    # SIGKILL, as a crash or a lost laptop would: the host's doveadm stops once the
    # controller's end of the channel is gone
    _, output, on_host, here = started_and_stopped(world, signal.SIGKILL)
    assert "doveadm -c /run/mailhost-import/" in on_host and " sync -1 -R " in on_host
    assert leaked({"import password": password}, on_host, here, output) == []
    doveadm_gone()
    copied = count_here()
    assert 300 <= copied < MESSAGES, copied  # killed midway
    code, counts, output = import_mail(world)
    assert code == 0, output[-3000:]
    assert counts["imported"]["messages"] == MESSAGES - copied, (counts, copied)
    assert counts["here"]["messages"] == MESSAGES, counts
    assert count_here() == MESSAGES
    assert_whole(world, old)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_it_stops_doveadm_on_the_host_and_says_to_run_again(world, empty_mailbox,
                                                                        sig):
    code, output, _, _ = started_and_stopped(world, sig)
    assert code == 130, output[-3000:]
    assert "interrupted; doveadm stopped on the host. Run it again to go on" in output, output
    assert "Traceback" not in output, output
    doveadm_gone()
    assert 300 <= count_here() < MESSAGES
    code, counts, output = import_mail(world)
    assert code == 0 and counts["here"]["messages"] == MESSAGES, output[-3000:]


def test_a_wrong_old_password_is_one_line_and_changes_nothing(world, empty_mailbox):
    wrong = "not-the-old-password-1"
    code, counts, output = import_mail(world, MAILHOST_IMPORT_PASSWORD_ALICE_EXAMPLE_TEST=wrong)
    assert code == 1 and not counts, output[-3000:]
    assert "scripts/import-mail: could not read the old provider imaps://imap.old.example:993" \
        in output, output[-3000:]
    assert leaked({"wrong password": wrong}, output) == []
    doveadm_gone()
    assert count_here() == 0


def test_the_old_servers_certificate_is_verified(world, empty_mailbox):
    """The same server under a name its certificate does not hold: refused, nothing copied."""
    command = [*COMMAND[:4], f"imaps://{UNCERTIFIED_NAME}:993", *COMMAND[5:]]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=env_of(world))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert f"could not read the old provider imaps://{UNCERTIFIED_NAME}:993" in output, output
    assert "certificate" in output.lower(), output[-3000:]
    doveadm_gone()
    assert count_here() == 0
