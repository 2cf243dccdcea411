"""DANE key rollover: the phases (mailhost.keys.dane), the TLSA values each phase publishes, and the
host's script (templates/tls/key-rollover.sh.j2) run for real with openssl against a certbot
lineage laid out as certbot lays it out, including a switch stopped midway."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sample import sample_settings
from test_dane import TLSA_NAME, ZONE, key_pair, provider_of, reader, signed_knot  # noqa: F401

from mailhost import paths
from mailhost.keys import dane
from mailhost.keys.steps import KeySteps
from mailhost.operations.files import template
from mailhost.zones.sync import ZoneSync, records_by_zone, tlsa_records

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
TTL = 300


def step(has_next=False, seen=None, asked=False, visible=False, now=NOW):
    return dane.rollover_step(has_next, seen, asked, lambda: visible, now, TTL)


def test_a_rollover_goes_one_phase_per_deploy():
    assert step() == dane.Rollover()
    made = step(asked=True)
    assert made.make and made.next_key and not made.switch
    waiting = step(has_next=True)
    assert not (waiting.make or waiting.mark_seen or waiting.switch)
    assert "answered by every authoritative server" in waiting.waiting
    marked = step(has_next=True, visible=True)
    assert marked.mark_seen and marked.seen == NOW and not marked.switch
    assert "the switch after 2026-11-26 06:10 UTC" in marked.waiting
    early = step(has_next=True, seen=NOW, now=NOW + timedelta(seconds=2 * TTL - 1))
    assert not early.switch and "06:10" in early.waiting
    due = step(has_next=True, seen=NOW, now=NOW + timedelta(seconds=2 * TTL))
    assert due.switch and not due.mark_seen
    assert "now: renew the certificate over the next key" in dane.describe("mail.x", due)
    assert dane.describe("mail.x", step()).startswith("DANE mail.x: key steady")
    assert dane.parse_seen(["not a time"]) is None
    assert dane.parse_seen([dane.seen_text(marked).strip()]) == NOW


def values_in_plan(plan):
    return [line for line in plan.lines() if "TLSA" in line]


def test_the_tlsa_set_holds_both_keys_during_a_rollover_and_only_the_new_one_after(
        signed_knot, tmp_path):  # noqa: F811
    settings = sample_settings(secrets_dir=str(tmp_path))
    provider = provider_of(signed_knot)
    current, upcoming = key_pair()[1], key_pair()[1]
    old, new = dane.tlsa_of_public_key(current), dane.tlsa_of_public_key(upcoming)
    from test_dane import certificate
    certificate[0] = current
    try:
        steps = KeySteps()  # the run's, as deploy.py keeps them
        steps.keep_tls(settings, step())
        (records,) = records_by_zone({"mail": settings}, reader(key_pair()[1]), steps)
        sync = ZoneSync(records, provider, memory=tmp_path / "dns")
        sync.apply(sync.plan())

        # publish: the next key is made in this run: the plan shows it pending, beside the
        # current one; applied (the key exists then), both values are in the set
        steps.keep_tls(settings, step(asked=True))
        (records,) = records_by_zone({"mail": settings}, reader(key_pair()[1]), steps)
        tlsa = [r for r in records.desired if r.rtype == "TLSA"]
        assert [set(r.values) for r in tlsa] == [{old, dane.NEXT_PENDING}]
        (records,) = records_by_zone({"mail": settings}, reader(key_pair()[1], upcoming), steps)
        sync = ZoneSync(records, provider, memory=tmp_path / "dns")
        plan = sync.plan()
        assert [line.split()[1] for line in values_in_plan(plan)] == ["MODIFY"]
        sync.apply(plan)
        assert sorted(provider.read(ZONE, {(TLSA_NAME, "TLSA")})[0].values) == sorted([old, new])

        # switch: the main operation keeps both; the one after certbot shows the new key alone
        steps.keep_tls(settings, step(has_next=True, seen=NOW, now=NOW + timedelta(hours=1)))
        (records,) = records_by_zone({"mail": settings}, reader(key_pair()[1], upcoming), steps)
        assert values_in_plan(ZoneSync(records, provider, memory=tmp_path / "dns").plan()) == []
        after = tlsa_records({"mail": settings}, reader(key_pair()[1], upcoming), ZONE,
                             pending=True, steps=steps)
        assert [r.values for r in after.desired] == [(new,)]
        # applied after a switch that failed: the host still has both keys: no change
        failed = tlsa_records({"mail": settings}, reader(key_pair()[1], upcoming), ZONE,
                              steps=steps)
        assert values_in_plan(ZoneSync(failed, provider, memory=tmp_path / "dns").plan()) == []
        # applied after the switch: the certificate's key is the next one, the next is gone
        certificate[0] = upcoming
        done = tlsa_records({"mail": settings}, reader(key_pair()[1]), ZONE, steps=steps)
        sync = ZoneSync(done, provider, memory=tmp_path / "dns")
        sync.apply(sync.plan())
        assert provider.read(ZONE, {(TLSA_NAME, "TLSA")})[0].values == (new,)
    finally:
        certificate[0] = None


# --- the host's script, for real ---


def openssl(*args, cwd=None):
    subprocess.run(["openssl", *args], check=True, cwd=cwd, capture_output=True)


def public_of(path: Path, certificate: bool = False) -> str:
    """The base64 DER public key of a key file, or of a certificate."""
    if certificate:
        pem = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-pubkey"], check=True,
                             capture_output=True).stdout
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pem,
                             check=True, capture_output=True).stdout
    else:
        der = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
    return base64.b64encode(der).decode()


FAKE_CERTBOT = """#!/bin/sh
# what certbot certonly --reuse-key --force-renewal does to a lineage, with a self-signed CA
set -e
[ "${CERTBOT_FAILS:-}" = 1 ] && { echo "the CA is down" >&2; exit 1; }
[ "${CERTBOT_KILLED:-}" = before ] && { kill -KILL $PPID; exit 1; }
cd "$ROOT/archive"
n=$(( $(ls cert*.pem | wc -l) + 1 ))
cp "$(readlink -f "$ROOT/live/privkey.pem")" privkey$n.pem
openssl req -x509 -key privkey$n.pem -subj /CN=mail.example.test -days 2 -out cert$n.pem \\
    2>/dev/null
cp cert$n.pem fullchain$n.pem
for f in cert privkey fullchain; do ln -sfn ../archive/$f$n.pem "$ROOT/live/$f.pem"; done
[ "${CERTBOT_KILLED:-}" = after ] && { kill -KILL $PPID; exit 1; }
RENEWED_LINEAGE="$ROOT/live" "$ROOT/deploy-hook"
"""

FAKE_HOOK = """#!/bin/sh
ln -sfn "$RENEWED_LINEAGE/fullchain.pem" "$ROOT/tls/fullchain.pem"
ln -sfn "$RENEWED_LINEAGE/privkey.pem" "$ROOT/tls/privkey.pem"
echo reloaded >> "$ROOT/hook-ran"
"""


@pytest.fixture
def lineage(tmp_path):
    """A certbot lineage (archive/ and live/ links) of one EC key, the daemons' links to it,
    and the key-rollover script rendered for these paths."""
    root = tmp_path
    for name in ("archive", "live", "tls"):
        (root / name).mkdir()
    archive = root / "archive"
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-out", archive / "privkey1.pem")
    openssl("req", "-x509", "-key", archive / "privkey1.pem", "-subj", "/CN=mail.example.test",
            "-days", "2", "-out", archive / "cert1.pem")
    (archive / "fullchain1.pem").write_bytes((archive / "cert1.pem").read_bytes())
    for name in ("cert", "privkey", "fullchain"):
        (root / "live" / f"{name}.pem").symlink_to(f"../archive/{name}1.pem")
    for name in ("fullchain", "privkey"):
        (root / "tls" / f"{name}.pem").symlink_to(root / "live" / f"{name}.pem")
    for name, text in [("certbot", FAKE_CERTBOT), ("deploy-hook", FAKE_HOOK)]:
        (root / name).write_text(text)
        (root / name).chmod(0o755)
    fake_paths = SimpleNamespace(
        live_certificate_dir=lambda host: str(root / "live"),
        NEXT_KEY=str(root / "tls/next-key.pem"), NEXT_KEY_SEEN=str(root / "tls/next-key.seen"),
        TLS_HELD=str(root / "tls/held"), TLS_CERT=str(root / "tls/fullchain.pem"),
        TLS_KEY=str(root / "tls/privkey.pem"), TLS_DEPLOY_HOOK=str(root / "deploy-hook"))
    assert set(vars(fake_paths)) <= set(vars(paths))  # the names the real template uses
    from jinja2 import Template
    script = Template(Path(template("tls/key-rollover.sh.j2")).read_text()).render(
        p=fake_paths, s=SimpleNamespace(mail_hostname="mail.example.test"))
    (root / "key-rollover").write_text(script)
    (root / "key-rollover").chmod(0o700)
    return root


def rollover(root: Path, *args, **environment):
    env = {**os.environ, "ROOT": str(root), **environment}
    return subprocess.run([root / "key-rollover", *args], env=env, capture_output=True,
                          text=True)


def switch(root: Path, **environment):
    return rollover(root, "switch", str(root / "certbot"), **environment)


def served(root: Path) -> tuple[str, str]:
    """(the key of the certificate the daemons read, the key they read)."""
    return (public_of(root / "tls/fullchain.pem", certificate=True),
            public_of(root / "tls/privkey.pem"))


def test_make_writes_one_next_key_of_the_current_keys_type_and_prints_no_key(lineage):
    made = rollover(lineage, "make")
    assert made.returncode == 0, made.stderr
    assert "PRIVATE KEY" not in made.stdout + made.stderr
    next_key = lineage / "tls/next-key.pem"
    assert oct(next_key.stat().st_mode & 0o777) == "0o600"
    text = subprocess.run(["openssl", "pkey", "-in", next_key, "-noout", "-text_pub"],
                          check=True, capture_output=True, text=True).stdout
    assert "prime256v1" in text
    first = next_key.read_bytes()
    assert rollover(lineage, "make").returncode == 0
    assert next_key.read_bytes() == first  # made once
    assert public_of(next_key) != public_of(lineage / "live/privkey.pem")


def test_switch_renews_over_the_next_key_and_the_old_key_goes(lineage):
    rollover(lineage, "make")
    upcoming = public_of(lineage / "tls/next-key.pem")
    result = switch(lineage)
    assert result.returncode == 0, result.stderr
    assert served(lineage) == (upcoming, upcoming)
    assert os.readlink(lineage / "tls/privkey.pem") == str(lineage / "live/privkey.pem")
    assert not (lineage / "tls/next-key.pem").exists() and not (lineage / "tls/held").exists()
    assert (lineage / "hook-ran").read_text() == "reloaded\n"
    assert switch(lineage).stdout.startswith("key-rollover: no next key")


def test_a_failed_certbot_leaves_the_current_pair_and_the_next_key(lineage):
    rollover(lineage, "make")
    before = served(lineage)
    result = switch(lineage, CERTBOT_FAILS="1")
    assert result.returncode == 1 and "the current key and certificate stay" in result.stderr
    assert served(lineage) == before and before[0] == before[1]
    assert public_of(lineage / "live/cert.pem", certificate=True) == \
        public_of(lineage / "live/privkey.pem")
    assert (lineage / "tls/next-key.pem").exists() and not (lineage / "tls/held").exists()


def test_a_switch_killed_during_certbot_is_undone_then_done(lineage):
    rollover(lineage, "make")
    before = served(lineage)
    upcoming = public_of(lineage / "tls/next-key.pem")
    killed = switch(lineage, CERTBOT_KILLED="before")
    assert killed.returncode != 0
    # the lineage's key file holds the next key, but the daemons read the held pair
    assert public_of(lineage / "live/privkey.pem") == upcoming
    assert served(lineage) == before
    assert rollover(lineage, "undo").returncode == 0
    assert served(lineage) == before
    assert os.readlink(lineage / "tls/fullchain.pem") == str(lineage / "live/fullchain.pem")
    assert not (lineage / "tls/held").exists() and (lineage / "tls/next-key.pem").exists()
    assert switch(lineage).returncode == 0
    assert served(lineage) == (upcoming, upcoming)


def test_a_switch_killed_after_certbot_saved_is_finished(lineage):
    rollover(lineage, "make")
    upcoming = public_of(lineage / "tls/next-key.pem")
    assert switch(lineage, CERTBOT_KILLED="after").returncode != 0
    assert not (lineage / "hook-ran").exists()
    assert rollover(lineage, "undo").returncode == 0
    assert served(lineage) == (upcoming, upcoming)
    assert (lineage / "hook-ran").exists()  # the hook certbot did not get to run
    assert not (lineage / "tls/next-key.pem").exists() and not (lineage / "tls/held").exists()


def test_undo_with_nothing_held_changes_nothing(lineage):
    before = served(lineage)
    assert rollover(lineage, "undo").returncode == 0
    assert served(lineage) == before and not (lineage / "hook-ran").exists()


# --- scripts/rotate-tls-key ---

from test_cli import ROOT, cli  # noqa: E402, F401  (the fixture)


def rotate_tls_key(inventory, name):
    return subprocess.run([sys.executable, "-m", "mailhost.cli.rotate_tls_key", str(inventory),
                           name], cwd=ROOT, capture_output=True, text=True)


def test_rotate_tls_key_marks_the_request_on_the_controller(cli):  # noqa: F811
    wrong = rotate_tls_key(cli.inventory, "mx.example.test")
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == ("scripts/rotate-tls-key: mail_hostname = "
                                    "'mx.example.test': expected one of mail.example.test")
    pasted = rotate_tls_key(cli.inventory, "mail.example.test ")  # a stray space: shown
    assert pasted.returncode == 2 and "'mail.example.test '" in pasted.stderr
    assert not (cli.secrets_dir / "tls").exists()  # nothing written on a refusal
    asked = rotate_tls_key(cli.inventory, "mail.example.test")
    assert asked.returncode == 0, asked.stderr
    mark = cli.secrets_dir / "tls" / "mail.example.test.rollover-asked"
    assert mark.exists() and str(mark) in asked.stdout
    assert oct(mark.parent.stat().st_mode & 0o777) == "0o700"


def test_the_next_tlsa_is_waited_for_only_where_a_tlsa_is_published(
        signed_knot, knot_world, tmp_path):  # noqa: F811
    from mailhost.keys.dane import next_tlsa_answered

    current, upcoming = key_pair()[1], key_pair()[1]
    old, new = dane.tlsa_of_public_key(current), dane.tlsa_of_public_key(upcoming)
    unsigned = sample_settings(secrets_dir=str(tmp_path), dns_server=knot_world.server.address,
                               dns_port=knot_world.server.port)
    assert next_tlsa_answered(unsigned, new)  # no TLSA at all: nothing to wait for
    signed = sample_settings(secrets_dir=str(tmp_path), dns_server=signed_knot.address,
                             dns_port=signed_knot.port)
    provider = provider_of(signed_knot)
    from mailhost.dns.records import RecordSet
    from mailhost.zones.desired import ZoneRecords
    from mailhost.zones.plan import Ownership

    def publish(*values):
        records = ZoneRecords(ZONE, [RecordSet(TLSA_NAME, "TLSA", 300, values)],
                              Ownership(frozenset({(TLSA_NAME, "TLSA")})))
        sync = ZoneSync(records, provider, memory=tmp_path / "dns")
        sync.apply(sync.plan())
    publish(old)
    assert not next_tlsa_answered(signed, new)  # the old set only: wait
    publish(old, new)
    assert next_tlsa_answered(signed, new)


def test_a_dns_error_is_not_an_answer(monkeypatch, tmp_path):
    import dns.exception

    from mailhost import lookup

    def unreachable(settings):
        raise dns.exception.Timeout()
    monkeypatch.setattr(lookup, "every_server_answers", lambda *a: False)
    monkeypatch.setattr(lookup, "zone_resolver", unreachable)
    assert not dane.next_tlsa_answered(sample_settings(secrets_dir=str(tmp_path)), "3 1 1 b")


# --- the host's part in a deploy (facts in, operations out: fakehost.py) ---

from fakehost import FakeHost, Recorder, on  # noqa: E402
from pyinfra.operations import python, server  # noqa: E402

from mailhost import facts  # noqa: E402
from mailhost.host import tls  # noqa: E402

FILE = {"type": "f", "user": "root", "group": "root", "mode": 600, "sha256": "x", "target": None}
DIRECTORY = {**FILE, "type": "d", "mode": 700, "sha256": None}
LIVE = "/etc/letsencrypt/live/mail.example.test"
CURRENT, UPCOMING = "3 1 1 aa", "3 1 1 bb"


@pytest.fixture
def operations(monkeypatch):
    """server.shell, python.call and put_text recorded, the clock at NOW."""
    log: list[str] = []
    recorders = {"shell": Recorder("shell", log), "call": Recorder("call", log),
                 "put": Recorder("put", log)}
    monkeypatch.setattr(server, "shell", recorders["shell"])
    monkeypatch.setattr(python, "call", recorders["call"])
    monkeypatch.setattr(tls, "put_text", lambda path, text, mode, name:
                        recorders["put"](name=name, path=path, text=text))
    monkeypatch.setattr(tls, "clock", lambda settings: NOW)
    recorders["log"] = log
    return recorders


def rollover_on(settings, found: dict, next_key: str | None = None):
    """The deploy's rollover steps on a host where read_paths finds FOUND; (step, ops log)."""
    host = FakeHost({facts.PathStates: found})
    with on(host):
        facts.read_paths(tls.roots(settings), contents=[paths.NEXT_KEY_SEEN])
        step = tls.key_rollover(settings, lambda path: next_key if path == paths.NEXT_KEY
                                else None)
        tls.advance_rollover(settings, step)
        tls.switch_key(settings, step)
    return step


WITH_CERTIFICATE = {f"{LIVE}/fullchain.pem": FILE}


def test_a_requested_rollover_makes_the_key_then_records_then_switches(
        operations, tmp_path, monkeypatch):
    settings = sample_settings(secrets_dir=str(tmp_path))
    request = dane.rollover_request(settings.secrets_dir, settings.mail_hostname)
    request.parent.mkdir(parents=True)
    request.write_text("asked\n")
    made = rollover_on(settings, WITH_CERTIFICATE)
    assert made.make
    assert operations["log"] == ["shell: DANE: the next TLS key made on the host",
                                 f"call: Rollover request {request} cleared"]
    assert operations["shell"].calls[0]["commands"][0].get_raw_value() == \
        f"{paths.TLS_KEY_ROLLOVER} make"
    operations["log"].clear()
    request.unlink()

    monkeypatch.setattr(tls, "next_tlsa_answered", lambda settings, value: True)
    marked = rollover_on(settings, WITH_CERTIFICATE, next_key=key_pair()[1])
    assert marked.mark_seen
    assert operations["log"] == [
        "put: DANE: the next key's TLSA answered by every authoritative server"]
    assert operations["put"].calls[0]["text"] == f"{NOW.isoformat()}\n"
    operations["log"].clear()

    seen = {**WITH_CERTIFICATE,
            paths.NEXT_KEY_SEEN: {**FILE, "lines": [(NOW - timedelta(hours=3)).isoformat()]}}
    switched = rollover_on(settings, seen, next_key=key_pair()[1])
    assert switched.switch
    assert operations["log"] == ["shell: DANE: the certificate renewed over the next TLS key"]
    call = operations["shell"].calls[-1]
    command = call["commands"][0].get_raw_value()
    assert command.startswith(f"{paths.TLS_KEY_ROLLOVER} switch ")
    assert "certbot certonly" in command and "--reuse-key --force-renewal" in command
    assert call["_ignore_errors"] is True


def test_no_rollover_without_dane_or_a_certificate_and_a_held_pair_is_undone_first(
        operations, tmp_path):
    settings = sample_settings(secrets_dir=str(tmp_path))
    request = dane.rollover_request(settings.secrets_dir, settings.mail_hostname)
    request.parent.mkdir(parents=True)
    request.write_text("asked\n")
    off = sample_settings(secrets_dir=str(tmp_path), dane="off")
    assert rollover_on(off, WITH_CERTIFICATE) == dane.Rollover()
    waiting = rollover_on(settings, {})  # asked before the first certificate
    assert not waiting.make and waiting.waiting == "the first certificate from the ACME CA"
    assert "rollover asked; next: the first certificate" in dane.describe("m", waiting)
    assert operations["log"] == []
    request.unlink()
    rollover_on(settings, {**WITH_CERTIFICATE, paths.TLS_HELD: DIRECTORY})
    assert operations["log"] == ["shell: A TLS key switch stopped midway finished or undone"]


def test_the_dns_operation_refuses_to_write_a_next_key_that_was_not_made():
    from pyinfra.api import OperationError

    from mailhost.operations import dns

    record = SimpleNamespace(rtype="TLSA", values=[CURRENT, dane.NEXT_PENDING])
    sync = SimpleNamespace(zone="example.test", records=SimpleNamespace(desired=[record]))
    with pytest.raises(OperationError, match="the next TLS key is missing on the host"):
        dns._apply(lambda: sync, None)
