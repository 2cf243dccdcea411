"""What restarts when the From rule or what it depends on changes (facts in, operations out,
see fakehost.py): an MTA configured on a fresh host, then configured again on that host with
one file found different, as deploy.py runs it: ``mta.configure`` says what to restart and
``units.converge`` restarts exactly that (and starts what is not running)."""

from __future__ import annotations

import pytest
from fakehost import FakeHost, Recorder, key, on
from pyinfra.facts.files import Sha256File
from sample import sample_settings, self_signed_pem
from test_host_modules import after, ops, secret_files  # noqa: F401 (fixtures)

from mailhost import facts, paths
from mailhost.host import chasquid, rspamd, tls, units, users
from mailhost.host.mtas import mta_of
from mailhost.secrets import Secret, Secrets

RUNNING = {"active": True, "enabled": True}


def configured(mta_name: str, recorded, tmp_path):
    """(settings, secrets, the host's files once an MTA was configured on a fresh host)."""
    (tmp_path / "ca.pem").write_bytes(self_signed_pem("ca.lab.test", -1, 30)[0])
    settings = sample_settings(mta=mta_name, acme_ca_bundle=str(tmp_path / "ca.pem"),
                               mail_users=["alice@example.test", "bob@example.test"],
                               mail_aliases={"sales@example.test": ["alice@example.test"]})
    secrets = Secrets(tsig_secret=Secret("tsig"), passwords={
        address: Secret(f"password of {address}") for address in settings.mail_users})
    configure(settings, secrets, FakeHost({chasquid.DebianPackageVersion: (1, 13)}))
    written = after(recorded)
    for recorder in recorded.values():
        if isinstance(recorder, Recorder):
            recorder.calls.clear()
    recorded["log"].clear()
    return settings, secrets, written


def configure(settings, secrets, host):
    """As deploy.py: read what is in place, TLS, the MTA; then its units converge with the
    MTA's restarts. What the MTA asked to restart."""
    mta = mta_of(settings)
    with on(host):
        facts.read_paths([*tls.roots(settings), *users.ROOTS, *mta.roots],
                         contents=users.hash_files(settings))
        tls.configure(settings, secrets, mta)
        restart = mta.configure(settings, secrets)
        units.converge(running=mta.units, restart=restart)
    return restart


def again_with(settings, secrets, written, changed_path: str | None = None):
    """Configure again on the converged host, every unit running, CHANGED_PATH found
    different (an older rule, a hand edit)."""
    states = dict(written)
    if changed_path:
        states[changed_path] = {**states[changed_path], "sha256": "0" * 64}
    copies = f"{paths.CHASQUID_CONFIG}/certs/{settings.mail_hostname}"
    host = FakeHost({
        chasquid.DebianPackageVersion: (1, 13), facts.PathStates: states,
        facts.SystemdUnitStates: {unit: RUNNING for unit in mta_of(settings).units},
        facts.Accounts: {"users": {"vmail": users.VMAIL_ACCOUNT},
                         "groups": {"vmail": {"gid": paths.VMAIL_GID,
                                              "members": [chasquid.USER]}}},
        Sha256File: {key(path=paths.TLS_CERT): "c", key(path=f"{copies}/fullchain.pem"): "c",
                     key(path=paths.TLS_KEY): "k", key(path=f"{copies}/privkey.pem"): "k"}})
    return configure(settings, secrets, host)


# (MTA, the file found different, what restarts, whether systemd re-reads its units first)
CHANGES = [
    ("postfix", "/etc/rspamd/rspamd.local.lua", {"rspamd"}, False),
    ("postfix", "/etc/rspamd/local.d/settings.conf", {"rspamd"}, False),
    ("postfix", "/etc/postfix/master.cf", {"postfix"}, False),
    ("postfix", rspamd.READY_DROP_IN, set(), True),  # read at the next start
    ("chasquid", "/etc/rspamd/rspamd.local.lua", {"rspamd"}, False),
    # the hook runs afresh for every message
    ("chasquid", f"{paths.CHASQUID_CONFIG}/hooks/post-data", set(), False),
    ("chasquid", chasquid.TLS_DROP_IN, {"chasquid.service"}, True),  # GODEBUG: read at start
    ("chasquid", chasquid.STOP_DROP_IN, set(), True),
]


@pytest.mark.parametrize("mta_name,path,restarted,reload", CHANGES,
                         ids=[f"{m}-{p.rsplit('/', 1)[1]}" for m, p, _, _ in CHANGES])
def test_a_changed_file_restarts_what_reads_it_and_nothing_else(secret_files, tmp_path,  # noqa: F811
                                                                  mta_name, path, restarted,
                                                                  reload):
    settings, secrets, written = configured(mta_name, secret_files, tmp_path)
    assert path in written
    assert again_with(settings, secrets, written, path) == restarted
    log = secret_files["log"]
    assert [line for line in log if line.startswith("shell: Restart ")] == [
        f"shell: Restart {unit}" for unit in mta_of(settings).units if unit in restarted]
    assert not [line for line in log if "running and enabled" in line]
    assert any("systemd reads" in line for line in log) == reload, log
    assert f"put: {path}" in log, log


@pytest.mark.parametrize("mta_name", ["postfix", "chasquid"])
def test_nothing_changed_nothing_restarts(secret_files, tmp_path, mta_name):  # noqa: F811
    settings, secrets, written = configured(mta_name, secret_files, tmp_path)
    assert again_with(settings, secrets, written) == set()
    assert [line for line in secret_files["log"] if line.startswith("shell: ")] == []
