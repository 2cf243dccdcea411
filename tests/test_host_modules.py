"""The host modules' decisions, facts in -> operations out (see fakehost.py): which pyinfra
operations a step adds for what the host has, and what the MTA profiles say."""

import hashlib

import pytest
from fakehost import FakeHost, Recorder, key, on
from pyinfra.facts.files import File, Link, Sha256File
from pyinfra.operations import files, server
from sample import sample_settings

from mailhost import facts, paths
from mailhost.host import base, chasquid, firewall, in_place, put_text, render, tls, units, users
from mailhost.host.mtas import CHASQUID, MTAS, POSTFIX, mta_of, others
from mailhost.secrets import Secrets


@pytest.fixture
def ops(monkeypatch):
    """Every pyinfra operation the host modules call, recorded instead of run."""
    recorders, log = {}, []
    for module, names in [(server, ["shell", "user", "group", "hostname"]),
                          (files, ["put", "file", "directory", "link", "line", "template"])]:
        for name in names:
            recorder = Recorder(name, log)
            recorders[f"{module.__name__.rsplit('.', 1)[1]}.{name}"] = recorder
            monkeypatch.setattr(module, name, recorder)
    recorders["log"] = log
    return recorders


def called(ops) -> list[str]:
    """Each operation called, in order, as 'OPERATION: its name'."""
    return ops["log"]


def states(**units_state):
    return {unit: {"active": "active" in s, "enabled": "enabled" in s}
            for unit, s in units_state.items()}


def test_converge_stops_the_other_mta_first_then_starts_and_restarts(ops):
    host = FakeHost({facts.SystemdUnitStates: states(
        chasquid="active enabled", postfix="", opendkim="active enabled",
        dovecot="active enabled")})
    with on(host):
        units.converge(running=["opendkim", "dovecot", "postfix"], stopped=["chasquid"],
                       restart={"dovecot", "postfix"})
    assert called(ops) == ["shell: chasquid stopped and disabled",
                           "shell: Restart dovecot", "shell: postfix running and enabled"]
    assert [name for name, _ in host.fact_calls] == ["SystemdUnitStates"]  # one round trip


def test_converge_converged_adds_nothing(ops):
    host = FakeHost({facts.SystemdUnitStates: states(postfix="active enabled", chasquid="")})
    with on(host):
        units.activate(["postfix"])
        units.converge(running=["postfix"], stopped=["chasquid"])
    assert called(ops) == []


def test_profiles_name_every_unit_package_and_signer():
    assert POSTFIX.units == ["postsrsd", "opendkim", "rspamd", "dovecot", "postfix"]
    assert CHASQUID.units[0] == "rspamd" and "rspamd" in POSTFIX.packages
    assert "postsrsd" in POSTFIX.packages and "dns-root-data" in POSTFIX.packages
    assert CHASQUID.units[-1] == "chasquid.service" and CHASQUID.dkim_signer == "chasquid"
    assert POSTFIX.dkim_signer == "opendkim"
    assert mta_of(sample_settings(mta="chasquid")) is CHASQUID
    assert others(sample_settings()) == [CHASQUID] and set(MTAS) == {"postfix", "chasquid"}
    assert POSTFIX.queue.ages("1000\n{\"arrival_time\": 400}\n") == [600]
    assert CHASQUID.queue.ages("1000\n700.5\n\n") == [300]


def test_an_mta_restarts_the_units_of_the_components_that_changed(monkeypatch):
    from mailhost.host import dovecot, opendkim, postfix, postsrsd, rspamd
    changed = {"opendkim": {"opendkim"}, "postfix": set(), "dovecot": set(), "postsrsd": set(),
               "rspamd": set()}
    for component in (postsrsd, opendkim, rspamd, dovecot, postfix):
        name = component.__name__.rsplit(".", 1)[1]
        monkeypatch.setattr(component, "configure",
                            lambda settings, secrets, name=name: changed[name])
    assert POSTFIX.configure(None, None) == {"opendkim"}


@pytest.mark.parametrize(("mta", "lines"), [
    ("postfix", ["systemctl reload postfix || true"]),
    ("chasquid", ['install -o chasquid -g chasquid -m 600 "$live/privkey.pem" '
                  "/etc/chasquid/certs/mail.example.test/privkey.pem",
                  "systemctl restart chasquid || true"]),
])
def test_deploy_hook_hands_a_renewal_to_each_certificate_reader(mta, lines):
    settings = sample_settings(mta=mta)
    hook = render("tls/deploy-hook.sh.j2", settings, mta=mta_of(settings))
    assert 'ln -sfn "$live/fullchain.pem" /etc/mailhost/tls/fullchain.pem' in hook
    for line in lines:
        assert line in hook.splitlines()
    assert ("chasquid" in hook) == (mta == "chasquid")


def test_opendkim_tables_use_the_record_name():
    settings = sample_settings(mail_domains=["example.test", "example.net"])
    keys = {"example.test": ("mail._domainkey.example.test", "/k1"),
            "example.net": ("mail._domainkey.example.net", "/k2")}
    assert render("opendkim/KeyTable.j2", settings, keys=keys).split("\n")[:2] == [
        "mail._domainkey.example.test example.test:mail:/k1",
        "mail._domainkey.example.net example.net:mail:/k2"]
    assert render("opendkim/SigningTable.j2", settings, keys=keys).splitlines()[0] == (
        "*@example.test mail._domainkey.example.test")


def test_templates_get_the_host_paths():
    main_cf = render("postfix/main.cf.j2", sample_settings(), smtp_address_preference="any")
    assert f"virtual_mailbox_base = {paths.MAILBOX_ROOT}" in main_cf
    assert f"virtual_uid_maps = static:{paths.VMAIL_UID}" in main_cf


def test_put_text_and_directory_skip_what_read_paths_saw_in_place(ops):
    content = "mail.example.test\n"
    state = {"/etc/mailname": {"type": "f", "user": "root", "group": "root", "mode": 644,
                               "sha256": hashlib.sha256(content.encode()).hexdigest(),
                               "target": None},
             "/var/mail/vhosts": {"type": "d", "user": "vmail", "group": "vmail", "mode": 2750,
                                  "sha256": None, "target": None}}
    with on(FakeHost({facts.PathStates: state})):
        facts.read_paths(["/etc/mailname", "/var/mail/vhosts"])
        assert put_text("/etc/mailname", content) is False
        assert put_text("/etc/mailname", "other\n") is True  # differs
        assert put_text("/etc/elsewhere", content) is True  # not read: the operation decides
        assert put_text("/var/mail/vhosts/x/y/z/deeper", content) is True  # below the depth
        assert in_place("/var/mail/vhosts", "d", "2750", "vmail", "vmail")
        assert not in_place("/var/mail/vhosts", "d", "2770")
        assert not in_place("/var/mail/vhosts/example.test", "d")  # read: it is missing
    assert [call["dest"] for call in ops["files.put"].calls] == ["/etc/mailname",
                                                                 "/etc/elsewhere",
                                                                 "/var/mail/vhosts/x/y/z/deeper"]


def test_firewall_resets_to_our_ports_from_any_other_state(ops):
    with on(FakeHost({firewall.FirewallState: {"ssh_port": 2222, "rules": [
            "Status: active", "2222/tcp ALLOW Anywhere", "25/tcp ALLOW Anywhere"]}})):
        firewall.configure(POSTFIX.ports)
    assert ops["server.shell"].calls[0]["commands"] == [
        "ufw --force reset >/dev/null", "ufw default deny incoming", "ufw default allow outgoing",
        "ufw allow 2222/tcp", "ufw allow 25/tcp", "ufw allow 465/tcp", "ufw allow 587/tcp",
        "ufw --force enable"]
    ops["server.shell"].calls.clear()
    with on(FakeHost(data={})):
        firewall.configure(CHASQUID.ports)
    commands = ops["server.shell"].calls[0]["commands"]
    assert "ufw allow 22/tcp" in commands and commands[-1] == "ufw --force enable"


def test_identity_changes_only_what_differs(ops):
    settings = sample_settings()
    hosts = ["127.0.0.1 localhost", "198.51.100.10 mail.example.test mail",
             "2001:db8::10 old.example.test old"]
    host = FakeHost({facts.HostIdentity: {"hostname": "mail.example.test", "hosts": hosts}})
    with on(host):
        base.configure_identity(settings)
    assert called(ops) == ["put: /etc/mailname", "line: /etc/hosts: 2001:db8::10"]
    assert HostIdentity_parses()


def HostIdentity_parses():
    return facts.HostIdentity().process(["vps", "--", "127.0.0.1 localhost"]) == {
        "hostname": "vps", "hosts": ["127.0.0.1 localhost"]}


def test_apt_proxy_written_or_removed(ops):
    with on(FakeHost({facts.PathStates: {}})):
        facts.read_paths(base.ROOTS)
        base.configure_apt(sample_settings())  # no proxy, and no file: nothing to do
        base.configure_apt(sample_settings(apt_proxy="http://198.51.100.1:3128"))
    assert called(ops) == ["put: apt proxy"]
    with on(FakeHost()):
        base.configure_apt(sample_settings())  # not read: the operation decides
    assert called(ops)[-1] == "file: No apt proxy"


def test_vmail_accounts_created_only_when_missing_or_wrong(ops):
    vmail = {"users": {"vmail": users.VMAIL_ACCOUNT},
             "groups": {"vmail": {"gid": 5000, "members": ["chasquid"]}}}
    with on(FakeHost({facts.Accounts: vmail, facts.PathStates: {}})):
        users.mailbox_root(delivering_user="chasquid")
    assert called(ops) == ["directory: Mailboxes"]
    ops["log"].clear()
    with on(FakeHost({facts.Accounts: {"users": {}, "groups": {}}})):
        users.mailbox_root(delivering_user="chasquid")
    assert called(ops) == ["group: vmail group", "user: vmail user",
                           "user: chasquid may deliver into the mailboxes (group vmail)",
                           "directory: Mailboxes"]
    assert facts.Accounts().process(["vmail:x:5000:5000::/var/mail/vhosts:/usr/sbin/nologin",
                                     "vmail:x:5000:chasquid,other"]) == {
        "users": {"vmail": users.VMAIL_ACCOUNT},
        "groups": {"vmail": {"gid": 5000, "members": ["chasquid", "other"]}}}


def test_tls_links_follow_the_certificate(ops, monkeypatch):
    monkeypatch.setattr("mailhost.host.tls.write_template", lambda *a, **k: False)
    settings = sample_settings()
    live = paths.live_certificate_dir(settings.mail_hostname)
    fresh = FakeHost({File: None, Link: None})
    with on(fresh):
        tls.configure(settings, Secrets(None, None, {}), POSTFIX)
        assert not tls.has_certificate(settings)
    assert [c["target"] for c in ops["files.link"].calls] == [tls.SNAKEOIL_CERT, tls.SNAKEOIL_KEY]
    ops["files.link"].calls.clear()
    certified = FakeHost({File: {"mode": 644}, Link: {
        key(path=paths.TLS_CERT): {"link_target": f"{live}/fullchain.pem"},
        key(path=paths.TLS_KEY): {"link_target": tls.SNAKEOIL_KEY}}})
    with on(certified):
        tls.configure(settings, Secrets(None, None, {}), POSTFIX)
        tls.obtain_certificate(settings)  # has one: certbot is not asked
    assert [c["target"] for c in ops["files.link"].calls] == [f"{live}/privkey.pem"]
    assert ops["server.shell"].calls == []


def test_certbot_command_for_each_challenge(ops):
    with on(FakeHost({File: None})):
        tls.obtain_certificate(sample_settings())
        tls.obtain_certificate(sample_settings(acme_challenge="dns-01"))
    http01, dns01 = (c["commands"][0].get_raw_value() for c in ops["server.shell"].calls)
    assert "--standalone" in http01 and "ufw allow 80/tcp" in http01
    assert "--authenticator dns-rfc2136" in dns01 and "--standalone" not in dns01
    assert f"--deploy-hook {paths.TLS_DEPLOY_HOOK}" in dns01
    assert tls.packages(sample_settings(acme_challenge="dns-01"))[-1].endswith("rfc2136")


def test_chasquid_signs_natively_from_1_14_and_copies_a_changed_certificate(ops):
    with on(FakeHost({chasquid.DebianPackageVersion: (1, 14)})):
        assert chasquid.native_dkim()
    with on(FakeHost({chasquid.DebianPackageVersion: (1, 11)})):
        assert not chasquid.native_dkim()
    with on(FakeHost({chasquid.DebianPackageVersion: None})):
        assert not chasquid.native_dkim()
    settings = sample_settings(mta="chasquid")
    copies = f"{paths.CHASQUID_CONFIG}/certs/{settings.mail_hostname}"
    host = FakeHost({Sha256File: {key(path=paths.TLS_CERT): "a", key(path=paths.TLS_KEY): "b",
                                  key(path=f"{copies}/fullchain.pem"): "a",
                                  key(path=f"{copies}/privkey.pem"): "old"}})
    with on(host):
        assert chasquid._certificate(settings) is True
    assert [c["name"] for c in ops["server.shell"].calls] == [
        f"chasquid's copy of {paths.TLS_KEY}"]


def test_a_fresh_host_gets_every_file_account_and_unit(ops, monkeypatch):
    """Facts that print nothing on a fresh host (no roots, no vmail, no units) give their
    defaults, and every step adds its operations."""
    with on(FakeHost()):
        facts.read_paths(["/etc/postfix", "/var/mail/vhosts"])
        users.mailbox_root()
        units.converge(running=["postfix"], stopped=["chasquid"])
        assert put_text("/etc/postfix/main.cf", "x\n") is True
    assert called(ops) == ["group: vmail group", "user: vmail user", "directory: Mailboxes",
                           "shell: postfix running and enabled", "put: /etc/postfix/main.cf"]
    assert facts.PathStates().process([]) == {} and facts.PathStates.default() == {}
    assert facts.Accounts.default() == {"users": {}, "groups": {}}


def test_chasquid_dkim_links_read_with_read_paths():
    link = "/etc/chasquid/domains/example.test/dkim:mail.pem"
    key = "/etc/mailhost/dkim/example.test/mail.rsa.pem"
    state = {link: {"type": "l", "target": key, "user": "root", "group": "root", "mode": 777,
                    "sha256": None}}
    with on(FakeHost({facts.PathStates: state})):
        facts.read_paths([paths.CHASQUID_CONFIG])
        assert chasquid._link_in_place(link, key)
        assert not chasquid._link_in_place(link, "/elsewhere")
        assert not chasquid._link_in_place(link, None)  # there, and should not be
        assert chasquid._link_in_place(link.replace("example.test", "example.net"), None)
    with on(FakeHost()):
        assert not chasquid._link_in_place(link, None)  # not read: the operation decides
