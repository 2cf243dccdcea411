"""Our pyinfra operations, facts in -> commands out (see fakehost.py): every branch of
mailhost/operations/ (but dns.py, covered by the DNS tests)."""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from fakehost import FakeHost, key, on, run, text
from pyinfra.api import OperationError
from pyinfra.facts.files import File, Sha256File

from mailhost import facts
from mailhost.checks import all as checks_all
from mailhost.keys.dkim import generate_key
from mailhost.operations import dkim, run_or_fail, secret_file, verify
from mailhost.secrets import Secret

SECRET = Secret("user:{SHA512-CRYPT}$6$hash\n")
SECRET_SHA = hashlib.sha256(SECRET.reveal().encode()).hexdigest()
PATH = "/etc/dovecot/mailhost-users"
OWNED = {"user": "root", "group": "dovecot", "mode": 640}


def secret(host, **overrides):
    arguments = {"path": PATH, "content": SECRET, "group": "dovecot", "mode": "640"}
    return [text(c) for c in run(secret_file.secret_file, host, **(arguments | overrides))]


def test_secret_file_differs_installs_through_staging():
    host = FakeHost({Sha256File: "0" * 64})
    assert secret(host) == ["<_install>"]


def test_secret_file_missing_installs():
    assert secret(FakeHost({Sha256File: None})) == ["<_install>"]


def test_secret_file_same_content_wrong_owner_fixes_owner_and_mode():
    host = FakeHost({Sha256File: SECRET_SHA, File: {**OWNED, "group": "root", "mode": 644}})
    assert secret(host) == [f"chown root:dovecot {PATH} && chmod 640 {PATH}"]


def test_secret_file_in_place_yields_nothing():
    assert secret(FakeHost({Sha256File: SECRET_SHA, File: OWNED})) == []


def test_secret_file_read_with_read_paths_needs_no_fact():
    state = {PATH: {"type": "f", "sha256": SECRET_SHA, "target": None, **OWNED}}
    host = FakeHost({facts.PathStates: state})
    with on(host):
        facts.read_paths(["/etc/dovecot"])
        assert [text(c) for c in secret_file.secret_file._inner(
            path=PATH, content=SECRET, group="dovecot", mode="640")] == []
    assert [name for name, _ in host.fact_calls] == ["PathStates"]


def test_secret_file_install_stages_then_installs_and_never_shows_the_secret():
    host = FakeHost()
    with on(host, executing=True):
        secret_file._install(PATH, SECRET, "root", "dovecot", "640")
    staged = next(iter(host.uploads))
    assert staged.startswith("/etc/mailhost/private/") and host.uploads[staged] == SECRET.reveal(
    ).encode()
    assert host.commands[0].startswith("mkdir -p -m 0700 /etc/mailhost/private")
    assert host.commands[1] == (f"install -o root -g dovecot -m 640 {staged} {PATH} "
                                f"&& rm -f {staged}")
    assert all("SHA512" not in command for command in host.commands)


def test_run_or_fail_fails_the_operation_when_the_command_fails():
    with on(FakeHost(shell_ok=False)), pytest.raises(OperationError, match="command failed"):
        run_or_fail("false")


REMOTE = "/etc/mailhost/dkim/example.test/mail.rsa.pem"


@pytest.fixture(scope="module")
def pem():
    return generate_key("ed25519")


def key_op(host, local_path, remote_path=REMOTE, owner="opendkim"):
    return [text(c) for c in run(dkim.key, host, local_path=str(local_path),
                                 remote_path=remote_path, kind="ed25519", owner=owner)]


def test_dkim_key_neither_here_nor_there_is_generated_then_uploaded(tmp_path):
    host = FakeHost({Sha256File: None})
    assert key_op(host, tmp_path / "k.pem") == ["<_generate>", "<_upload>"]


def test_dkim_key_only_on_the_host_is_read_back(tmp_path):
    host = FakeHost({Sha256File: "ab" * 32})
    assert key_op(host, tmp_path / "k.pem") == ["<_fetch>"]


def test_dkim_key_controller_only(tmp_path, pem):
    assert key_op(FakeHost(), tmp_path / "k.pem", remote_path=None) == ["<_generate>"]
    (tmp_path / "k.pem").write_bytes(pem)
    assert key_op(FakeHost(), tmp_path / "k.pem", remote_path=None) == []


def test_dkim_key_differing_on_the_host_is_uploaded(tmp_path, pem):
    (tmp_path / "k.pem").write_bytes(pem)
    assert key_op(FakeHost({Sha256File: "ab" * 32}), tmp_path / "k.pem") == ["<_upload>"]


def test_dkim_key_same_key_owner_decides(tmp_path, pem):
    (tmp_path / "k.pem").write_bytes(pem)
    sha = hashlib.sha256(pem).hexdigest()
    right = FakeHost({Sha256File: sha, File: {"user": "opendkim", "mode": 600}})
    assert key_op(right, tmp_path / "k.pem") == [] and right.noops
    wrong = FakeHost({Sha256File: sha, File: {"user": "root", "mode": 600}})
    assert key_op(wrong, tmp_path / "k.pem") == ["<_set_owner>"]


def test_dkim_key_in_place_by_read_paths_needs_no_fact(tmp_path, pem):
    (tmp_path / "k.pem").write_bytes(pem)
    state = {REMOTE: {"type": "f", "user": "opendkim", "group": "root", "mode": 600,
                      "sha256": hashlib.sha256(pem).hexdigest(), "target": None}}
    host = FakeHost({facts.PathStates: state})
    with on(host):
        facts.read_paths(["/etc/mailhost"])
        assert list(dkim.key._inner(local_path=str(tmp_path / "k.pem"), remote_path=REMOTE,
                                    kind="ed25519", owner="opendkim")) == []
    assert [name for name, _ in host.fact_calls] == ["PathStates"]


def test_dkim_key_helpers_run_on_the_host(tmp_path, pem):
    local = tmp_path / "dkim" / "k.pem"
    host = FakeHost()
    host.files[REMOTE] = pem
    with on(host, executing=True):
        dkim._fetch(REMOTE, str(local))
        assert local.read_bytes() == pem and oct(local.stat().st_mode)[-3:] == "600"
        dkim._upload(str(local), REMOTE, "chasquid")
        dkim._generate("rsa", 2048, str(tmp_path / "new.pem"))
    assert host.uploads[REMOTE] == pem
    assert host.commands[-1] == (f"chmod 0600 {REMOTE} && chown chasquid {REMOTE} "
                                 f"{Path(REMOTE).parent}")
    assert b"PRIVATE KEY" in (tmp_path / "new.pem").read_bytes()
    with on(FakeHost(shell_ok=True), executing=True), pytest.raises(OperationError):
        dkim._fetch("/nowhere", str(tmp_path / "x.pem"))


def test_verify_notes_at_prepare_and_runs_checks_when_executing(monkeypatch):
    from mailhost.checks import FAILED, OK, CheckResult
    host = FakeHost()
    with on(host):
        assert list(verify.checks._inner(settings=None, secrets=None, mta=None)) == []
    assert host.noops == ["checks run after the changes"]

    passed = [CheckResult("dns: MX", OK, "x", "x")]
    monkeypatch.setattr(checks_all, "run_checks", lambda *_args: passed)
    with on(host, executing=True):
        assert list(verify.checks._inner(settings=None, secrets=None, mta=None)) == []
    failed = passed + [CheckResult("smtp: banner", FAILED, "x", "y")]
    monkeypatch.setattr(checks_all, "run_checks", lambda *_args: failed)
    with on(host, executing=True):
        commands = list(verify.checks._inner(settings=None, secrets=None, mta=None))
    assert [text(c) for c in commands] == ["<_fail>"]
    assert verify._fail(None, host, "one line") is False


def test_fakehost_keys_facts_by_arguments():
    host = FakeHost({File: {key(path="/a"): {"mode": 600}}})
    assert host.get_fact(File, path="/a") == {"mode": 600}
    assert host.get_fact(File, path="/b") is None


def test_zone_records_yields_the_apply_only_when_the_preview_has_changes():
    from types import SimpleNamespace

    from mailhost.operations import dns
    empty = SimpleNamespace(empty=True, lines=lambda: ["= example.test: no DNS changes"])
    host = FakeHost()
    assert run(dns.zone_records, host, zone="example.test", preview=empty, refresh=None) == []
    assert host.noops == ["= example.test: no DNS changes"]
    changes = SimpleNamespace(empty=False)
    commands = run(dns.zone_records, host, zone="example.test", preview=changes, refresh=None)
    assert [text(c) for c in commands] == ["<_apply>"]


def test_an_empty_preview_notes_what_was_found_ours_only_when_the_run_executes(tmp_path):
    """Records found as we want them (written before the memory existed, or by hand) are
    remembered by a run with nothing to change; --dry (preparing only) writes nothing."""
    import json

    from mailhost.dns.records import RecordSet
    from mailhost.operations import dns
    from mailhost.zones.plan import Ownership, compute_plan
    dmarc = RecordSet("_dmarc.example.test", "TXT", 300, ("v=DMARC1; p=none",))
    preview = compute_plan("example.test", [dmarc], [dmarc], Ownership(frozenset({dmarc.key})))
    assert preview.empty
    memory = tmp_path / "dns" / "example.test"
    host = FakeHost()
    assert run(dns.zone_records, host, zone="example.test", preview=preview, refresh=None,
               memory=memory) == []
    assert not memory.exists()  # preparing (--dry): nothing written on the controller
    with on(host, executing=True):
        assert list(dns.zone_records._inner(zone="example.test", preview=preview,
                                            refresh=None, memory=memory)) == []
    assert json.loads((memory / "written.json").read_text()) == {
        "_dmarc.example.test TXT": ["v=DMARC1; p=none"]}


def test_zone_records_apply_refuses_a_pending_key_and_reports_errors_in_one_line():
    from types import SimpleNamespace

    from mailhost.keys.dkim import DKIM_PENDING
    from mailhost.operations import dns
    from mailhost.zones.plan import PlanError

    def sync(value, plan):
        record = SimpleNamespace(rtype="TXT", values=[value])
        return SimpleNamespace(zone="example.test", plan=plan,
                               records=SimpleNamespace(desired=[record]))

    with pytest.raises(OperationError, match="a DKIM key is missing on the controller"):
        dns._apply(lambda: sync(f"v=DKIM1; p={DKIM_PENDING}", None), None)

    def refused():
        raise PlanError("two SPF records")

    with pytest.raises(OperationError, match="^DNS zone example.test: two SPF records$"):
        dns._apply(lambda: sync("v=spf1 -all", refused), None)


def test_uploads_that_fail_fail_the_operation(tmp_path, pem):
    (tmp_path / "k.pem").write_bytes(pem)
    with on(FakeHost(upload_ok=False), executing=True):
        with pytest.raises(OperationError, match="could not upload the DKIM key"):
            dkim._upload(str(tmp_path / "k.pem"), REMOTE, "opendkim")
        with pytest.raises(OperationError, match=f"could not upload {PATH}"):
            secret_file._install(PATH, SECRET, "root", "dovecot", "640")


def test_a_dry_run_does_not_import_the_checks():
    """deploy.py's imports leave the checks (and checkdmarc's half second) for the checks' run."""
    code = ("import sys, pyinfra_cli.main, mailhost.run, mailhost.zones.sync, "
            "mailhost.operations.verify, mailhost.host.mtas; "
            "print(sorted(m for m in ('checkdmarc', 'mailhost.checks.all') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
