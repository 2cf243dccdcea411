"""The From rule, off the lab, in both of its homes, case by case from one table: rspamd's
Lua rule (Postfix's, templates/rspamd/rspamd.local.lua.j2) under LuaJIT with a small fake of
rspamd's task API (tests/lua/rspamd_fake.lua), and chasquid's post-data hook run as chasquid
runs it. Both must give the same verdict and the same reason for every header block."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
USER = "alice@example.test"
FAKE = Path(__file__).parent / "lua" / "rspamd_fake.lua"
NOT_OWNED = "From address not owned by user alice@example.test"
BARE_CR = "a bare CR in the headers: not accepted from user alice@example.test"
SPACE_COLON = ("a space before a header name's colon (as in \"From :\"): not accepted from "
               "user alice@example.test")

# (id, the header lines alice sends (To and Subject follow), the reason she reads; None: sent)
CASES = [
    ("other-user", ["From: bob@example.test"], f"<bob@example.test>: {NOT_OWNED}"),
    ("other-domain", ["From: a@example.org"], f"<a@example.org>: {NOT_OWNED}"),
    ("other-users-alias", ["From: fwd@example.test"], f"<fwd@example.test>: {NOT_OWNED}"),
    ("trailing-comma", ['From: "x" <ceo@example.test>,'], "From header cannot be parsed"),
    ("comment", ["From: alice@example.test (Alice)"], "From header cannot be parsed"),
    ("double-bracket", ["From: Alice <alice@example.test>>"], "From header cannot be parsed"),
    ("empty-angle", ["From: <>"], "From header cannot be parsed"),
    ("bad-quote", ['From: "a\\" <b@example.test>'], "From header cannot be parsed"),
    ("two-addresses", ["From: alice@example.test, bob@example.test"],
     "From header holds more than one address"),
    ("address-as-name", ["From: alice@example.test <bob@example.test>"],
     "From header holds more than one address"),
    ("group", ["From: Undisclosed: alice@example.test, bob@example.test;"],
     "From header holds more than one address"),
    ("two-headers", ["From: alice@example.test", "From: bob@example.test"],
     "more than one From header: expected one address of user alice@example.test"),
    ("empty", ["From: "], "From header empty"),
    ("missing", [], "From header missing"),
    ("folded-second-address", ["From: alice@example.test,", " bob@example.test"],
     "From header holds more than one address"),
    ("encoded-word-address", ["From: =?utf-8?q?bob=40example.test?="],
     "From header cannot be parsed"),
    ("encoded-word-name-with-address", ["From: =?utf-8?q?bob@example.test?= <alice@example.test>"],
     "From header holds more than one address"),
    ("quoted-local-part-of-bob", ['From: "bob"@example.test'], f"<bob@example.test>: {NOT_OWNED}"),
    ("quoted-local-part-needing-quotes", ['From: "al ice"@example.test'],
     "From header cannot be parsed"),
    ("utf8-name-bobs-address", ["From: Ålice <bob@example.test>"],
     f"<bob@example.test>: {NOT_OWNED}"),
    # Sender, Resent-From and Resent-Sender are bound like From
    ("sender-bob", ["From: alice@example.test", "Sender: bob@example.test"],
     "<bob@example.test>: Sender address not owned by user alice@example.test"),
    ("resent-from-bob", ["From: alice@example.test", "Resent-From: Bob <bob@example.test>"],
     "<bob@example.test>: Resent-From address not owned by user alice@example.test"),
    ("resent-sender-bob", ["From: alice@example.test", "Resent-Sender: bob@example.test"],
     "<bob@example.test>: Resent-Sender address not owned by user alice@example.test"),
    ("sender-lower-case-name", ["From: alice@example.test", "sender: bob@example.test"],
     "<bob@example.test>: Sender address not owned by user alice@example.test"),
    ("two-senders", ["From: alice@example.test", "Sender: alice@example.test",
                     "Sender: bob@example.test"],
     "more than one Sender header: expected one address of user alice@example.test"),
    ("sender-two-addresses", ["From: alice@example.test",
                              "Sender: alice@example.test, bob@example.test"],
     "Sender header holds more than one address"),
    ("sender-unparseable", ["From: alice@example.test", "Sender: alice@example.test (me)"],
     "Sender header cannot be parsed"),
    ("sender-empty", ["From: alice@example.test", "Sender:"], "Sender header empty"),
    # a header block readers disagree on is refused whole
    ("bare-cr-pair", ["From: alice@example.test\rFrom: bob@example.test"], BARE_CR),
    ("bare-cr-pair-after-subject", ["From: alice@example.test",
                                    "Subject: hi\r\rFrom: bob@example.test"], BARE_CR),
    ("bare-cr-at-the-end", ["From: alice@example.test\r"], BARE_CR),
    ("space-before-colon", ["From : bob@example.test"], SPACE_COLON),
    ("space-before-colon-beside-from", ["From: alice@example.test", "From : bob@example.test"],
     SPACE_COLON),
    ("tab-before-colon-sender", ["From: alice@example.test", "Sender\t: bob@example.test"],
     SPACE_COLON),
    # sent
    ("bare", ["From: alice@example.test"], None),
    ("angle", ["From: <alice@example.test>"], None),
    ("name", ["From: Alice <alice@example.test>"], None),
    ("quoted-name-with-comma", ['From: "Alice, Sales" <sales@example.test>'], None),
    ("upper-case", ["From: Alice Q. Smith <ALICE@example.test>"], None),
    ("encoded-word-name", ["From: =?utf-8?q?Al=C3=AFce?= <alice@example.test>"], None),
    ("escaped-quotes", ['From: "A \\"quoted\\" name" <alice@example.test>'], None),
    ("alias", ["From: sales@example.test"], None),
    ("quoted-local-part", ['From: "alice"@example.test'], None),
    ("quoted-local-part-in-angle", ['From: Alice <"alice"@example.test>'], None),
    ("utf8-name", ["From: Ålice <alice@example.test>"], None),
    ("utf8-two-words", ["From: Ålice Ünderwood <alice@example.test>"], None),
    ("utf8-quoted-name", ['From: "Ålice, Sales" <alice@example.test>'], None),
    ("folded-name", ["From: Alice", " <alice@example.test>"], None),
    ("sender-herself", ["From: sales@example.test", "Sender: Alice <alice@example.test>"], None),
    ("from-bob-resent-from-her-alias",
     ["From: bob@example.test", "Resent-From: sales@example.test"],
     f"<bob@example.test>: {NOT_OWNED}"),
    ("resent-from-herself", ["From: alice@example.test", "Resent-From: alice@example.test",
                             "Resent-Sender: \"alice\"@example.test"], None),
]
IDS = [case[0] for case in CASES]


def header_block(lines: list[str]) -> bytes:
    return "".join(f"{line}\r\n" for line in [*lines, "To: inbox@example.net",
                                              "Subject: from rule"]).encode()


@pytest.fixture(scope="module")
def lua_verdicts(tmp_path_factory) -> dict[str, str]:
    """Every case's verdict from the Lua rule, in one LuaJIT run."""
    luajit = shutil.which("luajit")
    assert luajit, "luajit missing: apt-get install luajit (scripts/apt-packages.txt)"
    where = tmp_path_factory.mktemp("lua")
    rule = where / "rspamd.local.lua"
    rule.write_text(render("rspamd/rspamd.local.lua.j2", SETTINGS, listen=rspamd.LISTEN,
                           from_rule=rspamd.FROM_RULE, owners=sender_owners(SETTINGS)))
    paths = []
    for name, lines, _ in CASES:
        path = where / f"{name}.headers"
        path.write_bytes(header_block(lines) + b"\r\n")
        paths.append(str(path))
    result = subprocess.run([luajit, str(FAKE), str(rule), USER, *paths], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(CASES), result.stdout
    return dict(zip(IDS, lines, strict=True))


@pytest.fixture(scope="module")
def hook(tmp_path_factory):
    path = tmp_path_factory.mktemp("hook") / "post-data"
    path.write_text(render("chasquid/post-data.py.j2", SETTINGS,
                           owners=sender_owners(SETTINGS), signing={}))
    return path


def hook_verdict(hook: Path, message: bytes) -> str:
    env = {"PATH": os.environ["PATH"], "AUTH_AS": USER, "REMOTE_ADDR": "198.51.100.1:40000",
           "MAIL_FROM": USER, "RCPT_TO": "inbox@example.net"}
    result = subprocess.run([sys.executable, str(hook)], input=message, env=env,
                            capture_output=True, timeout=30)
    if result.returncode == 0:
        return "pass"
    assert result.returncode == 20, result
    last = result.stdout.decode().strip().splitlines()[-1]
    assert last.startswith("5.7.1 "), last
    return "reject\t" + last.removeprefix("5.7.1 ")


@pytest.mark.parametrize("name,lines,reason", CASES, ids=IDS)
def test_lua_rule_and_chasquids_hook_agree(lua_verdicts, hook, name, lines, reason):
    lua = lua_verdicts[name]
    chasquid = hook_verdict(hook, header_block(lines) + b"\r\nhello\r\n")
    if reason is None:
        assert lua == "pass", lua
    else:
        assert lua.startswith("reject\t") and reason in lua, lua
    assert chasquid == lua


def test_mail_from_outside_is_not_the_rules(tmp_path):
    """No authenticated user: the Lua rule leaves the message to rspamd's other rules."""
    rule = tmp_path / "rule.lua"
    rule.write_text(render("rspamd/rspamd.local.lua.j2", SETTINGS, listen=rspamd.LISTEN,
                           from_rule=rspamd.FROM_RULE, owners=sender_owners(SETTINGS)))
    headers = tmp_path / "h"
    headers.write_bytes(header_block(["From: bob@example.test"]) + b"\r\n")
    result = subprocess.run([shutil.which("luajit") or "luajit", str(FAKE), str(rule), "",
                             str(headers)], capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines() == ["pass"], result


def master_services(text: str) -> dict[str, list[str]]:
    """master.cf's services of type inet -> their -o overrides."""
    services: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line[0].isspace():
            if current:
                services[current].extend(line.split()[1:] if line.split()[0] == "-o" else [])
            continue
        fields = line.split()
        current = fields[0] if fields[1] == "inet" else None
        if current:
            services[current] = []
    return services


def test_postfix_submission_fails_closed_while_25_keeps_accepting():
    """A milter that does not answer (rspamd restarting, holding the From rule): submission
    defers (4xx), 25 keeps main.cf's choice (accept: inbound mail is not lost)."""
    from mailhost.host import postfix

    services = master_services(postfix.rendered("master.cf", SETTINGS))
    assert set(services) == {"smtp", "submission", "submissions"}
    for name in ("submission", "submissions"):
        assert "milter_default_action=tempfail" in services[name], services[name]
    assert not any(o.startswith("milter_default_action") for o in services["smtp"])
    main = postfix.rendered("main.cf", SETTINGS)
    assert "\nmilter_default_action = accept\n" in main
