"""Our pyinfra facts: each command run for real here (bash, find, openssl) where it can be,
and each output parsed, every branch."""

import subprocess
from pathlib import Path

import pytest

from mailhost.facts import (
    IPV6_SYSCTLS,
    Accounts,
    BaseState,
    DebianPackageVersion,
    DkimPublicKey,
    PackageState,
    PathStates,
    QueuedMessages,
    SystemdUnitStates,
    parse_debian_version,
)
from mailhost.host.firewall import FirewallState
from mailhost.keys.dkim import generate_key, public_value, public_value_from_spki


def shell(command, env=None) -> list[str]:
    """Run a fact's command as pyinfra would (sh -c), its stdout as lines."""
    value = command.get_raw_value() if hasattr(command, "get_raw_value") else command
    result = subprocess.run(["sh", "-c", value], capture_output=True, text=True, env=env)
    return result.stdout.splitlines()


def test_dkim_public_key_reads_the_public_half_only(tmp_path):
    import base64
    pem = generate_key("rsa", 2048)
    (tmp_path / "k.pem").write_bytes(pem)
    fact = DkimPublicKey()
    output = shell(fact.command(str(tmp_path / "k.pem")))
    value = fact.process(output)
    assert public_value_from_spki(base64.b64decode(value)) == public_value(pem)
    assert "PRIVATE" not in "".join(output)
    assert fact.process(shell(fact.command(str(tmp_path / "missing.pem")))) is None
    assert fact.requires_command(str(tmp_path)) == "openssl"


def test_path_states_reads_files_directories_and_links_in_one_command(tmp_path):
    root = tmp_path / "etc"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.conf").write_text("hello\n")
    (root / "sub" / "a.conf").chmod(0o640)
    (root / "link").symlink_to(root / "sub" / "a.conf")
    (root / "deep" / "er" / "est").mkdir(parents=True)
    (root / "deep" / "er" / "est" / "far").write_text("x")
    fact = PathStates()
    states = fact.process(shell(fact.command([str(root), str(tmp_path / "missing")], depth=3)))
    a = states[str(root / "sub" / "a.conf")]
    assert a["type"] == "f" and a["mode"] == 640 and a["target"] is None
    assert a["sha256"] == "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
    assert states[str(root)]["type"] == "d" and states[str(root)]["sha256"] is None
    link = states[str(root / "link")]
    assert link["type"] == "l" and link["target"] == str(root / "sub" / "a.conf")
    assert link["sha256"] == a["sha256"]  # a link's hash is its target's
    assert str(root / "deep" / "er" / "est") in states
    assert str(root / "deep" / "er" / "est" / "far") not in states  # below depth
    assert not any(path.startswith(str(tmp_path / "missing")) for path in states)


def test_path_states_reads_the_lines_of_the_files_named_in_contents(tmp_path):
    (tmp_path / "users").write_text("alice:{SHA512-CRYPT}$6$a$b\nbob:x|y\n")
    (tmp_path / "empty").write_text("")
    (tmp_path / "not-asked").write_text("secret\n")
    fact = PathStates()
    (tmp_path / "elsewhere").write_text("x\n")
    asked = [str(tmp_path / name) for name in ("users", "empty", "missing", "elsewhere")]
    root = tmp_path / "root"
    root.mkdir()
    states = fact.process(shell(fact.command([str(tmp_path)], depth=1, contents=asked)))
    assert list(fact.process(shell(fact.command([str(root)], contents=asked)))) == [
        str(root)]  # files outside the roots are left out, their lines too
    output = ["a banner", "f|root|root|644||/a", "--", "ab  /a", "cd  /b", "--", "eA==|/c"]
    assert fact.process(output) == {
        "/a": {"type": "f", "user": "root", "group": "root", "mode": 644, "sha256": "ab",
               "target": None}}
    assert states[str(tmp_path / "users")]["lines"] == ["alice:{SHA512-CRYPT}$6$a$b", "bob:x|y"]
    assert states[str(tmp_path / "empty")]["lines"] == []
    assert "lines" not in states[str(tmp_path / "not-asked")]
    assert str(tmp_path / "missing") not in states
    assert "base64" not in fact.command([str(tmp_path)]).get_raw_value()  # none asked


def test_base_state_sections_parsed():
    fact = BaseState()
    output = ["a login banner", "== hostname", "vps", "== hosts", "127.0.0.1 localhost", "",
              "== sysctls", "net.ipv6.conf.all.disable_ipv6 = 1",
              "net.ipv6.conf.default.disable_ipv6 = 0", "net.ipv6.conf.lo.disable_ipv6 = x",
              "== netplan", "yes", "== default_interface", "ens3"]
    assert fact.process(output) == {
        "hostname": "vps", "hosts": ["127.0.0.1 localhost", ""],
        "sysctls": {IPV6_SYSCTLS[0]: 1, IPV6_SYSCTLS[1]: 0}, "netplan": True,
        "default_interface": "ens3"}
    # a Debian host: IPv6 not in the kernel (no keys), no netplan, no default route
    assert fact.process(["== hostname", "mail", "== hosts", "== sysctls", "== netplan",
                         "== default_interface"]) == {**fact.default(), "hostname": "mail"}


def test_base_state_command_runs_here():
    import socket
    fact = BaseState()
    state = fact.process(shell(fact.command()))
    assert state["hostname"] == socket.gethostname()
    assert state["hosts"] == Path("/etc/hosts").read_text().splitlines()
    assert state["netplan"] == Path("/etc/netplan").is_dir()
    assert set(state["sysctls"]) <= set(IPV6_SYSCTLS)
    assert all(value in (0, 1) for value in state["sysctls"].values())


def test_systemd_unit_states_one_line_per_unit():
    fact = SystemdUnitStates()
    command = fact.command(["postfix", "chasquid.socket"]).get_raw_value()
    assert command.startswith("for u in postfix chasquid.socket ; do")
    states = fact.process(["postfix active enabled", "", "chasquid.socket inactive",
                           "certbot.timer failed disabled"])
    assert states == {"postfix": {"active": True, "enabled": True},
                      "chasquid.socket": {"active": False, "enabled": False},
                      "certbot.timer": {"active": False, "enabled": False}}


def test_systemd_unit_states_command_runs_with_a_stand_in_systemctl(tmp_path):
    systemctl = tmp_path / "systemctl"
    systemctl.write_text('#!/bin/sh\n[ "$2" = postfix ] && { [ "$1" = is-active ] && echo active'
                         ' || echo enabled; exit 0; }\n[ "$1" = is-active ] && echo inactive\n'
                         'exit 1\n')
    systemctl.chmod(0o755)
    fact = SystemdUnitStates()
    output = shell(fact.command(["postfix", "gone"]), env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert fact.process(output) == {"postfix": {"active": True, "enabled": True},
                                    "gone": {"active": False, "enabled": False}}


@pytest.mark.parametrize(("text", "version"), [
    ("1.11-2+b2", (1, 11)), ("1:1.14.0-1", (1, 14)), ("2", (2, 0)), ("(none)", None), ("", None),
])
def test_debian_versions(text, version):
    assert parse_debian_version(text) == version
    assert DebianPackageVersion().process([text]) == version


def test_debian_package_version_command_asks_dpkg_then_apt():
    command = DebianPackageVersion().command("chasquid").get_raw_value()
    assert "dpkg-query -W" in command and "apt-cache policy chasquid" in command


def test_firewall_state_ssh_port_and_ufw_rules():
    fact = FirewallState()
    assert fact.process(["198.51.100.1 52000 198.51.100.10 2222", "Status: active ",
                         " 22/tcp  ALLOW  Anywhere"]) == {
        "ssh_port": 2222, "rules": ["Status: active", "22/tcp  ALLOW  Anywhere"]}
    assert fact.process([""]) == {"ssh_port": None, "rules": []} == fact.default()
    output = shell(fact.command(), env={"SSH_CONNECTION": "a 1 b 22", "PATH": "/usr/bin:/bin"})
    assert fact.process(output) == {"ssh_port": 22, "rules": []}  # no ufw here


def test_accounts_command_runs_here_and_missing_ones_are_left_out():
    fact = Accounts()
    found = fact.process(shell(fact.command(["root", "no-such-user"], ["root", "no-such-group"])))
    assert found == {"users": {"root": {"uid": 0, "gid": 0, "home": "/root",
                                        "shell": found["users"]["root"]["shell"]}},
                     "groups": {"root": {"gid": 0, "members": []}}}
    assert fact.process(["not an account line"]) == fact.default()


def test_package_state_reads_dpkg_and_its_audit():
    fact = PackageState()
    output = ["Desired=Unknown/Install/Remove/Purge/Hold", "||/ Name Version Architecture",
              "ii  postfix        3.8.6-1build2 amd64  High-performance mail transport agent",
              "iF  opendkim       2.11.0        amd64  Milter implementation of DKIM",
              "== audit",
              "The following packages are only half configured, probably due to problems",
              " opendkim             Milter implementation of DKIM", ""]
    state = fact.process(output)
    assert list(state["packages"]) == ["postfix"]  # a half-configured package is not installed
    assert state["audit"][1].strip().startswith("opendkim")
    assert fact.process(["ii  ufw  0.36.2-6  all  firewall", "== audit"]) == {
        "packages": {"ufw": {"0.36.2-6"}}, "audit": []}


def test_package_state_command_runs_here():
    state = PackageState().process(shell(PackageState().command()))
    assert "dpkg" in state["packages"] and state["audit"] == []


def test_queued_messages_counts_files_in_each_spool_here(tmp_path):
    """Run for real: a spool's files are counted below every directory named for it; a spool
    whose directories do not exist (MTA never installed) counts 0; names with spaces survive."""
    (tmp_path / "deferred" / "A").mkdir(parents=True)
    for name in ("deferred/A/1F2E", "deferred/A/2B3C", "hold/9D"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("queued")
    fact = QueuedMessages()
    spools = {"postfix": (str(tmp_path / "deferred"), str(tmp_path / "hold"),
                          str(tmp_path / "missing")),
              "chas quid": (str(tmp_path / "nothing here"),)}
    assert fact.process(shell(fact.command(spools).get_raw_value())) == {
        "postfix": 3, "chas quid": 0}
    assert fact.process(["a login banner", "postfix x"]) == {}


def test_facts_default_to_nothing_found():
    """What a fact is when its command prints nothing (pyinfra then uses the default)."""
    assert QueuedMessages().default() == {}
    assert PackageState().default() == {"packages": {}, "audit": []}


def test_certificate_names_read_here(tmp_path):
    """Run for real: the DNS names of a certificate file; none for a missing file."""
    from sample import self_signed_pem

    from mailhost.host.tls import CertificateNames

    pem, _, _ = self_signed_pem("mail.example.test", -1, 30)
    (tmp_path / "cert.pem").write_bytes(pem)
    fact = CertificateNames()
    assert fact.default() == []
    assert fact.process(shell(fact.command(str(tmp_path / "cert.pem")).get_raw_value())) == [
        "mail.example.test"]
    assert fact.process(shell(fact.command(str(tmp_path / "none.pem")).get_raw_value())) == []
