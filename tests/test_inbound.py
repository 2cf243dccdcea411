"""Inbound checks and the From rule, off the lab: chasquid's post-data hook run as chasquid runs
it (environment, message on stdin), rspamd's files rendered from the settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sample import sample_settings

from mailhost.host import rspamd
from mailhost.host.users import sender_owners
from mailhost.operations.files import render

SETTINGS = sample_settings(
    mail_domains=["example.test", "example.org"],
    mail_users=["alice@example.test", "bob@example.test", "carol@example.org"],
    mail_aliases={"sales@example.test": ["alice@example.test"],
                  "fwd@example.test": ["inbox@example.net"]})


@pytest.fixture(scope="module")
def hook(tmp_path_factory):
    path = tmp_path_factory.mktemp("hook") / "post-data"
    path.write_text(render("chasquid/post-data.py.j2", SETTINGS,
                           owners=sender_owners(SETTINGS), signing={}))
    return path


def run_hook(hook, from_lines, auth_as="alice@example.test", mail_from=None,
             remote_addr="198.51.100.1:40000"):
    headers = "".join(f"From: {line}\r\n" for line in from_lines)
    message = f"{headers}To: inbox@example.net\r\nSubject: hi\r\n\r\nhello\r\n".encode()
    # the loopback scanner port is closed here: an inbound message is accepted unchecked
    env = {"PATH": os.environ["PATH"], "AUTH_AS": auth_as, "REMOTE_ADDR": remote_addr,
           "MAIL_FROM": mail_from if mail_from is not None else auth_as,
           "RCPT_TO": "inbox@example.net"}
    return subprocess.run([sys.executable, str(hook)], input=message, env=env,
                          capture_output=True, timeout=30)


REFUSED = [
    # (From header lines, the reason the client reads after 5.7.1)
    (["bob@example.test"], "<bob@example.test>: From address not owned by user alice@"),
    (["a@example.org"], "<a@example.org>: From address not owned by user alice@"),
    (["carol@example.org"], "<carol@example.org>: From address not owned by user alice@"),
    (['"x" <ceo@example.test>,'], "From header cannot be parsed"),
    (['"x" <alice@example.test>,'], "From header cannot be parsed"),
    (["CEO <alice@example.test>, "], "From header cannot be parsed"),
    (["alice@example.test (Alice)"], "From header cannot be parsed"),
    (["Alice <alice@example.test>>"], "From header cannot be parsed"),
    (["<alice@example.test"], "From header cannot be parsed"),
    (["alice"], "From header cannot be parsed"),
    (["<>"], "From header cannot be parsed"),
    (['"a\\" <b@example.test>'], "From header cannot be parsed"),
    (["alice@example.test, bob@example.test"], "From header holds more than one address"),
    (["alice@example.test <bob@example.test>"], "From header holds more than one address"),
    (["Undisclosed: alice@example.test, bob@example.test;"],
     "From header holds more than one address"),
    (["alice@example.test", "alice@example.test"], "more than one From header"),
    ([""], "From header empty"),
    ([], "From header missing"),
]


@pytest.mark.parametrize("from_lines,reason", REFUSED)
def test_hook_refuses_a_from_that_is_not_one_owned_address(hook, from_lines, reason):
    result = run_hook(hook, from_lines)
    assert result.returncode == 20, result
    last = result.stdout.decode().strip().splitlines()[-1]
    assert last.startswith("5.7.1 ") and reason in last, last


ACCEPTED = ["alice@example.test", "<alice@example.test>", "Alice <alice@example.test>",
            '"Alice, Sales" <sales@example.test>', "Alice Q. Smith <ALICE@example.test>",
            "=?utf-8?q?Al=C3=AFce?= <alice@example.test>",
            '"A \\"quoted\\" name" <alice@example.test>',
            "sales@example.test"]


@pytest.mark.parametrize("value", ACCEPTED)
def test_hook_accepts_one_address_the_user_owns(hook, value):
    result = run_hook(hook, [value], mail_from="alice@example.test")
    assert result.returncode == 0, result
    assert b"5.7.1" not in result.stdout


def test_hook_refuses_an_envelope_sender_the_user_does_not_own(hook):
    result = run_hook(hook, ["alice@example.test"], mail_from="bob@example.test")
    assert result.returncode == 20
    assert b"5.7.1 <bob@example.test>: Sender address rejected: not owned by user" in result.stdout


def test_hook_accepts_inbound_mail_unchecked_when_rspamd_does_not_answer(hook):
    """Mail from outside is rspamd's to judge; with nothing on its port (here) the hook lets it
    through, as Postfix's milter_default_action = accept does, and says so on stderr."""
    result = run_hook(hook, ["ceo@example.test"], auth_as="", mail_from="friend@example.net")
    assert result.returncode == 0, result
    assert b"rspamd did not answer" in result.stderr


@pytest.mark.parametrize("address,ip", [("198.51.100.1:4000", "198.51.100.1"),
                                        ("[2001:db8::1]:4000", "2001:db8::1"),
                                        ("2001:db8::1", "2001:db8::1")])
def test_hook_reads_the_remote_address_chasquid_gives(hook, address, ip):
    namespace: dict = {}
    source = hook.read_text()
    exec(compile(source[:source.index("auth_as = ")], "post-data", "exec"), namespace)
    assert namespace["remote_ip"](address) == ip


def test_rspamd_files_follow_the_settings():
    """Greylisting off by default (no Redis, no greylist action); on: Redis and the action;
    rspamd never signs; the From rule knows each address's owners."""
    off = {path: render(template, SETTINGS, listen=rspamd.LISTEN, from_rule=rspamd.FROM_RULE,
                        owners=sender_owners(SETTINGS))
           for path, template in rspamd.files(SETTINGS).items()}
    on_settings = sample_settings(greylisting=True)
    on = {path: render(template, on_settings, listen=rspamd.LISTEN, from_rule=rspamd.FROM_RULE,
                       owners=sender_owners(on_settings))
          for path, template in rspamd.files(on_settings).items()}
    local = "/etc/rspamd/local.d/"
    assert "enabled = false;" in off[local + "greylist.conf"]
    assert "greylist = null;" in off[local + "actions.conf"]
    assert 'servers = "127.0.0.1:6379";' in on[local + "greylist.conf"]
    assert "greylist = 4;" in on[local + "actions.conf"]
    assert "enabled = false;" in off[local + "dkim_signing.conf"]
    assert "sign_inbound = false;" in off[local + "arc.conf"]
    assert 'reject = "reject";' in off[local + "dmarc.conf"]
    assert 'bind_socket = "127.0.0.1:11332";' in off[local + "worker-proxy.inc"]
    assert "test_patterns" not in off[local + "options.inc"].replace("spam_test_patterns", "")
    lua = off["/etc/rspamd/rspamd.local.lua"]
    assert '["sales@example.test"] = { ["alice@example.test"] = true, },' in lua
    assert '["fwd@example.test"]' not in lua  # forwarded outside: nobody sends as it


def test_test_patterns_only_when_asked():
    options = render("rspamd/options.inc.j2", sample_settings(spam_test_patterns=True))
    assert 'gtube_patterns = "all";' in options
