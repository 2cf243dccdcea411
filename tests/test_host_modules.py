"""The host modules' decisions, facts in -> operations out (see fakehost.py): which pyinfra
operations a step adds for what the host has, and what the MTA profiles say."""

import hashlib
import runpy
import subprocess
import sys
from types import SimpleNamespace

import pytest
from fakehost import FakeHost, Recorder, key, on
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import File, FileContents, Link, Sha256File
from pyinfra.operations import apt, files, server
from sample import sample_settings, self_signed_pem

from mailhost import facts, paths
from mailhost.facts import in_place
from mailhost.host import base, chasquid, dovecot, firewall, postfix, tls, units, users
from mailhost.host.mtas import (
    CHASQUID,
    MTAS,
    POSTFIX,
    mta_of,
    others,
    refuse_a_switch_while_mail_waits,
)
from mailhost.operations import restarts
from mailhost.operations.files import put_text, render
from mailhost.secrets import Secret, Secrets


@pytest.fixture
def ops(monkeypatch):
    """Every pyinfra operation the host modules call, recorded instead of run."""
    recorders, log = {}, []
    for module, names in [(server, ["shell", "user", "group", "hostname", "sysctl"]),
                          (files, ["put", "file", "directory", "link", "line", "template"]),
                          (apt, ["packages"])]:
        for name in names:
            recorder = Recorder(name, log)
            recorders[f"{module.__name__.rsplit('.', 1)[1]}.{name}"] = recorder
            monkeypatch.setattr(module, name, recorder)
    recorders["log"] = log
    return recorders


# the marker queued before the first file a run changes (mailhost.operations.files.put_text)
OWED = "shell: Restarts owed from here (cleared once the services have restarted)"


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
    assert POSTFIX.units == ["unbound", "postsrsd", "opendkim", "rspamd", "dovecot", "nginx",
                             "postfix"]
    assert "nginx" not in mta_of(sample_settings()).units  # MTA-STS off: no web server
    assert CHASQUID.units[:2] == ["unbound", "rspamd"] and "rspamd" in POSTFIX.packages
    assert "postsrsd" in POSTFIX.packages and "dns-root-data" in POSTFIX.packages
    assert CHASQUID.units[-1] == "chasquid.service" and CHASQUID.dkim_signer == "chasquid"
    assert POSTFIX.dkim_signer == "opendkim"
    assert mta_of(sample_settings(mta="chasquid")).name == "chasquid"
    assert [m.name for m in others(sample_settings())] == ["chasquid"]
    assert set(MTAS) == {"postfix", "chasquid"}
    assert POSTFIX.queue.ages("1000\n{\"arrival_time\": 400}\n") == [600]
    assert CHASQUID.queue.ages("1000\n700.5\n\n") == [300]


def test_an_mta_restarts_the_units_of_the_components_that_changed(monkeypatch):
    from mailhost.host import (
        backup,
        dovecot,
        nginx,
        opendkim,
        postfix,
        postsrsd,
        resolver,
        rspamd,
        webmail,
    )
    changed = {"opendkim": {"opendkim"}, "postfix": set(), "dovecot": set(), "postsrsd": set(),
               "rspamd": set(), "nginx": set(), "backup": set(), "resolver": set(),
               "webmail": set()}
    for component in (resolver, backup, postsrsd, opendkim, rspamd, dovecot, webmail, nginx,
                      postfix):
        name = component.__name__.rsplit(".", 1)[1]
        monkeypatch.setattr(component, "configure",
                            lambda settings, secrets, steps, fleet, name=name: changed[name])
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
    keys = {"example.test": ("mail._domainkey.example.test", "mail", "/k1"),
            "example.net": ("mail._domainkey.example.net", "mail", "/k2")}
    assert render("opendkim/KeyTable.j2", settings, keys=keys).split("\n")[:2] == [
        "mail._domainkey.example.test example.test:mail:/k1",
        "mail._domainkey.example.net example.net:mail:/k2"]
    assert render("opendkim/SigningTable.j2", settings, keys=keys).splitlines()[0] == (
        "*@example.test mail._domainkey.example.test")


def test_templates_get_the_host_paths():
    main_cf = postfix.rendered("main.cf", sample_settings())
    assert "virtual_transport = lmtp:unix:private/dovecot-lmtp" in main_cf.splitlines()
    for version in [(2, 3), (2, 4)]:
        conf = render(dovecot.template_for(version), sample_settings(),
                      **dovecot.render_data(sample_settings()))
        assert f"mail_uid = {paths.VMAIL_UID}" in conf.splitlines()
        assert f"{paths.MAILBOX_ROOT}/%" in conf and paths.DOVECOT_USERS in conf


@pytest.mark.parametrize("version", [(2, 3), (2, 4), None])
def test_dovecot_renders_the_syntax_of_its_version(version):
    settings = sample_settings()
    conf = render(dovecot.template_for(version), settings, **dovecot.render_data(settings))
    lines = [line.strip() for line in conf.splitlines()]
    if version == (2, 4):
        assert "dovecot_config_version = 2.4.0" in lines
        assert f"ssl_server_cert_file = {paths.TLS_CERT}" in lines
        assert "mail_location" not in conf and "disable_plaintext_auth" not in conf
        assert f"mail_path = {paths.MAILBOX_ROOT}/%{{user | domain}}/%{{user | username}}" in lines
    else:  # 2.3, and what apt does not know yet (a fresh host before its package lists)
        assert f"ssl_cert = <{paths.TLS_CERT}" in lines and "dovecot_config_version" not in conf
        assert f"mail_location = maildir:{paths.MAILBOX_ROOT}/%d/%n" in lines
        assert f"mail_home = {paths.MAILBOX_ROOT}/%d/%n/home" in lines
    # the users' Sieve scripts: ManageSieve on 4190, after the global spam rule, in a home
    # that is not the Maildir itself (its dot files would be folders)
    assert "protocols = imap lmtp sieve" in lines and "port = 4190" in lines
    assert "sieve_vacation_min_period = 1d" in lines and "ssl_min_protocol = TLSv1.2" in lines
    assert "port = 0" in lines and "port = 993" in lines  # 143 closed, 993 open
    assert "unix_listener /var/spool/postfix/private/dovecot-lmtp {" in lines
    assert "quota" not in conf
    for folder in ("Junk", "Sent", "Drafts", "Trash"):
        assert f"special_use = \\{folder}" in lines
    opened = render(dovecot.template_for(version), sample_settings(imap_starttls=True,
                                                                   mailbox_quota="2g"),
                    **dovecot.render_data(sample_settings(mta="chasquid")))
    assert "port = 143" in opened.splitlines()[opened.splitlines().index("  inet_listener imap {")
                                                + 1]
    assert ("quota_rule = *:storage=2G" in opened) != (version == (2, 4))
    assert ("quota_storage_size = 2G" in opened) == (version == (2, 4))
    chasquid_conf = render(dovecot.template_for(version), sample_settings(mta="chasquid"),
                           **dovecot.render_data(sample_settings(mta="chasquid")))
    assert "postfix" not in chasquid_conf
    assert "unix_listener auth-chasquid-client {" in chasquid_conf


def test_dovecot_is_part_of_both_mtas_with_its_ports_and_certificate_reload():
    for mta in (POSTFIX, CHASQUID):
        assert dovecot in mta.components and "dovecot" in mta.units
        assert mta.units.index("dovecot") < len(mta.units) - 1  # before the SMTP server
        assert mta.open_ports(sample_settings()) == [25, 465, 587, 993, 4190]
        assert mta.open_ports(sample_settings(imap_starttls=True))[-3:] == [993, 143, 4190]
        hook = render("tls/deploy-hook.sh.j2", sample_settings(mta=mta.name), mta=mta)
        assert "systemctl reload dovecot || true" in hook.splitlines()
        smtp_server = "reload postfix" if mta is POSTFIX else "restart chasquid"
        assert hook.index("dovecot") > hook.index(f"systemctl {smtp_server}")


def test_chasquid_asks_dovecot_and_delivers_by_lmtp():
    settings = sample_settings(mta="chasquid")
    conf = render("chasquid/chasquid.conf.j2", settings, deliver=paths.CHASQUID_DELIVER,
                  auth_userdb=dovecot.CHASQUID_AUTH_USERDB,
                  auth_client=dovecot.CHASQUID_AUTH_CLIENT)
    assert "dovecot_auth: true" in conf.splitlines()
    assert f'dovecot_client_path: "{dovecot.CHASQUID_AUTH_CLIENT}"' in conf.splitlines()
    deliver = render("chasquid/deliver.py.j2", settings, lmtp=dovecot.CHASQUID_LMTP,
                     copies={})
    compile(deliver, "deliver", "exec")
    assert f'smtplib.LMTP("{dovecot.CHASQUID_LMTP}"' in deliver


def test_chasquid_delivers_without_results_forged_in_the_host_s_name(tmp_path):
    """Above chasquid's Received field: the hook's (kept); below it: the sender's, dropped
    when they name this host (any case, with a version or a comment), kept otherwise."""
    path = tmp_path / "deliver"
    settings = sample_settings(mail_hostname="Mail.Example.TEST")
    path.write_text(render("chasquid/deliver.py.j2", settings, lmtp=dovecot.CHASQUID_LMTP,
                     copies={}))
    strip = runpy.run_path(str(path), run_name="deliver")["without_forged_results"]
    message = (b"Authentication-Results: mail.example.test;\r\n spf=pass smtp.mailfrom=x\r\n"
               b"Received: from mx.a.example by mail.example.test\r\n"
               b"Authentication-Results: mail.example.test; dkim=pass\r\n"
               b"authentication-results : (forged) MAIL.example.test 1;\r\n\tdmarc=pass\r\n"
               b"Authentication-Results: mx.a.example; dkim=pass\r\n"
               b"Received: from x by mx.a.example\r\n"
               b"Authentication-Results: mail.example.test; arc=pass\r\n"
               b"Subject: hi\r\n\r\nAuthentication-Results: mail.example.test; body\r\n")
    assert strip(message) == (
        b"Authentication-Results: mail.example.test;\r\n spf=pass smtp.mailfrom=x\r\n"
        b"Received: from mx.a.example by mail.example.test\r\n"
        b"Authentication-Results: mx.a.example; dkim=pass\r\n"
        b"Received: from x by mx.a.example\r\n"
        b"Subject: hi\r\n\r\nAuthentication-Results: mail.example.test; body\r\n")
    assert strip(b"no header end") == b"no header end"


def test_chasquid_keeps_a_copy_through_an_internal_name_its_agent_delivers_to_the_mailbox(
        tmp_path):
    """Keep a copy and forward (a.b -> [a.b, outside]): chasquid would resolve a.b again until
    its recursion limit, so its aliases file names the internal a.b=mailbox; chasquid hands
    that to the delivery agent without its drop characters ('.'), and the agent gives the
    message to Dovecot's LMTP for a.b@example.test (an aiosmtpd LMTP server here)."""
    from aiosmtpd.controller import UnixSocketController
    from aiosmtpd.lmtp import LMTP

    settings = sample_settings(
        mail_users=["a.b@example.test", "bob@example.test"],
        mail_aliases={"a.b@example.test": ["a.b@example.test", "ab@elsewhere.example"],
                      "sales@example.test": ["a.b@example.test", "bob@example.test"]})
    assert users.chasquid_aliases(settings)["a.b@example.test"] == [
        "a.b=mailbox@example.test", "ab@elsewhere.example"]
    assert users.chasquid_aliases(settings)["sales@example.test"] == [
        "a.b@example.test", "bob@example.test"]  # other aliases reach the alias, as before
    assert users.aliases(settings)["a.b@example.test"] == [  # Postfix: the self-reference
        "a.b@example.test", "ab@elsewhere.example"]
    assert users.kept_copies(settings) == {"ab=mailbox@example.test": "a.b@example.test"}
    lines = render("chasquid/aliases.j2", settings, domain="example.test",
                   aliases=list(users.chasquid_aliases(settings).items())).splitlines()
    assert "a.b: a.b=mailbox@example.test, ab@elsewhere.example" in lines

    class Handler:
        delivered = []

        async def handle_DATA(self, server, session, envelope):
            self.delivered.append((envelope.mail_from, envelope.rcpt_tos))
            return "250 OK"

    class Lmtp(UnixSocketController):
        def factory(self):
            return LMTP(self.handler)

    socket_path = tmp_path / "lmtp"
    agent = tmp_path / "deliver"
    agent.write_text(render("chasquid/deliver.py.j2", settings, lmtp=str(socket_path),
                            copies=users.kept_copies(settings)))
    server = Lmtp(Handler(), unix_socket=str(socket_path))
    server.start()
    try:
        for recipient in ("ab=mailbox@example.test", "bob@example.test"):
            done = subprocess.run([sys.executable, str(agent), recipient, "friend@example.org"],
                                  input=b"Subject: hi\n\nhello\n", capture_output=True,
                                  timeout=30)
            assert done.returncode == 0, done.stderr
        refused = subprocess.run([sys.executable, str(agent), "a=b=c@example.test", ""],
                                 input=b"x", capture_output=True, timeout=30)
    finally:
        server.stop()
    assert Handler.delivered == [("friend@example.org", ["a.b@example.test"]),
                                 ("friend@example.org", ["bob@example.test"])]
    assert refused.returncode != 0 and b"refusing to deliver" in refused.stderr


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
    ops["server.shell"].calls.clear()
    wanted = ["Status: active", "Default: deny (incoming), allow (outgoing), deny (routed)",
              "To Action From", "-- ------ ----",
              *[" ".join(rule) for rule in firewall.wanted_rules([22, *CHASQUID.ports])]]
    with on(FakeHost({firewall.FirewallState: {"ssh_port": 22, "rules": wanted}})):
        firewall.configure(CHASQUID.ports)
    assert ops["server.shell"].calls == []  # as wanted: no operation


def base_state(**overrides):
    """facts.BaseState of a host that is as the deploy leaves it (the sample settings)."""
    return {"hostname": "mail.example.test",
            "hosts": ["127.0.0.1 localhost", "198.51.100.10 mail.example.test mail",
                      "2001:db8::10 mail.example.test mail"],
            "sysctls": dict.fromkeys(facts.IPV6_SYSCTLS, 0), "netplan": True,
            "default_interface": "eth0"} | overrides


def in_place_states(settings) -> dict:
    """PathStates of the files configure_identity and configure_ipv6 write, as they write them."""
    def file(content, mode=644):
        return {"type": "f", "user": "root", "group": "root", "mode": mode, "target": None,
                "sha256": hashlib.sha256(content.encode()).hexdigest()}
    return {base.MAILNAME: file(settings.mail_hostname + "\n"),
            base.IPV6_SYSCTL_FILE: file("".join(f"{k} = 0\n" for k in facts.IPV6_SYSCTLS)),
            base.NETPLAN_FILE: file(render("base/netplan-ipv6.yaml.j2", settings,
                                           interface="eth0"), mode=600)}


def test_base_converged_adds_nothing_and_reads_one_fact(ops):
    settings = sample_settings()
    host = FakeHost({facts.BaseState: base_state(), facts.PathStates: in_place_states(settings),
                     facts.PackageState: packages({"postfix": ["3.8.6"]})})
    with on(host):
        facts.read_paths(base.ROOTS)
        base.configure(settings)
        base.install_packages(["postfix"])
    assert called(ops) == []
    assert [name for name, _ in host.fact_calls] == ["PathStates", "BaseState", "PackageState"]


def test_identity_changes_only_what_differs(ops):
    hosts = ["127.0.0.1 localhost", "198.51.100.10 mail.example.test mail",
             "2001:db8::10 old.example.test old"]
    with on(FakeHost()):
        base.configure_identity(sample_settings(), base_state(hosts=hosts, hostname="vps"))
    assert called(ops) == ["hostname: Hostname as FQDN", OWED, "put: /etc/mailname",
                           "line: /etc/hosts: 2001:db8::10"]


def test_ipv6_enabled_on_a_netplan_image_that_ships_it_off(ops):
    settings = sample_settings()
    states = in_place_states(settings)
    del states[base.IPV6_SYSCTL_FILE], states[base.NETPLAN_FILE]
    state = base_state(sysctls=dict.fromkeys(facts.IPV6_SYSCTLS, 1), default_interface="ens3")
    with on(FakeHost({facts.PathStates: states})):
        facts.read_paths(base.ROOTS)
        base.configure_ipv6(settings, state)
    assert called(ops) == ["sysctl: IPv6 enabled (all)", "sysctl: IPv6 enabled (default)",
                           OWED, "put: IPv6 enabled after a reboot",
                           "put: netplan: static IPv6 address on ens3",
                           "shell: netplan: apply the IPv6 address (generate, networkctl "
                           "reload; SSH stays up)"]
    assert [(c["key"], c["value"]) for c in ops["server.sysctl"].calls] == [
        (key, 0) for key in facts.IPV6_SYSCTLS]
    put = {call["dest"]: call["src"].getvalue() for call in ops["files.put"].calls}
    assert put[base.IPV6_SYSCTL_FILE] == ("net.ipv6.conf.all.disable_ipv6 = 0\n"
                                          "net.ipv6.conf.default.disable_ipv6 = 0\n")
    assert "    ens3:\n" in put[base.NETPLAN_FILE]
    assert '- "2001:db8::10/64"' in put[base.NETPLAN_FILE]


def test_ipv6_without_netplan_or_without_an_address(ops):
    settings = sample_settings()
    with on(FakeHost({facts.PathStates: in_place_states(settings)})):
        facts.read_paths(base.ROOTS)
        # Debian: sysctl on (a kernel without the key counts as not set), no netplan
        base.configure_ipv6(settings, base_state(netplan=False, sysctls={}))
        base.configure_ipv6(sample_settings(ipv6=None), base_state(sysctls={}))  # no IPv6
    assert called(ops) == ["sysctl: IPv6 enabled (all)", "sysctl: IPv6 enabled (default)"]


def test_ipv6_netplan_interface_default_and_refused(ops):
    settings = sample_settings()
    with on(FakeHost()):
        base.configure_ipv6(settings, base_state(default_interface=None))
        assert "    eth0:\n" in ops["files.put"].calls[-1]["src"].getvalue()
        with pytest.raises(DeployError, match="not an interface name"):
            base.configure_ipv6(settings, base_state(default_interface="eth0;reboot"))


def packages(installed: dict, audit=()) -> dict:
    """facts.PackageState: the installed packages, and what dpkg --audit says."""
    return {"packages": installed, "audit": list(audit)}


def test_an_interrupted_install_is_finished_with_services_held(ops):
    audit = ["The following packages are only half configured, probably due to problems",
             " postfix              High-performance mail transport agent"]
    with on(FakeHost({facts.PackageState: packages({"ufw": ["0.36"]}, audit),
                      facts.PathStates: {}})):
        facts.read_paths(base.ROOTS)
        base.install_packages(["ufw"])
    assert called(ops) == ["put: Hold services during package install",
                           "shell: Finish an interrupted package install (dpkg --configure -a, "
                           "then apt-get -f install if dpkg cannot alone)",
                           "file: Release the service hold"]
    (command,) = ops["server.shell"].calls[0]["commands"]
    assert "dpkg --configure -a" in command and "*lock*) sleep 5" in command
    assert command.endswith(" -f install")  # what dpkg alone cannot finish
    # a kill mid-unpack leaves reinst-required packages that only a reinstall repairs
    assert "${db:Status-Abbrev}" in command and "install --reinstall $broken" in command
    assert command.index("--reinstall") < command.index(" -f install")
    # dpkg --configure -a exits 0 with a reinst-required package left: its success alone
    # does not end the repair
    assert "&& exit 0" not in command and "configured=1 && break" in command


def test_the_reinst_required_packages_are_read_from_dpkgs_error_flag():
    """dpkg-query's abbreviated status is desired, state and error flag: R is reinst-required."""
    select = base.REINST_REQUIRED.split("| ", 1)[1]
    listing = "iUR perl-base\nii  bash\niHR libc6:amd64\nrc  old-package\n"
    out = subprocess.run(["sh", "-c", select], input=listing, capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["perl-base", "libc6:amd64"]


def test_packages_installed_with_services_held_and_the_hold_released(ops):
    with on(FakeHost({facts.PackageState: packages({"ufw": ["0.36"]}), facts.PathStates: {}})):
        facts.read_paths(base.ROOTS)
        base.install_packages(["ufw", "postfix", "opendkim"])
    assert called(ops)[0] == "put: Hold services during package install"
    assert ops["apt.packages"].calls[0]["packages"] == ["postfix", "opendkim"]
    assert "DPkg::Lock::Timeout=900" in ops["apt.packages"].calls[0]["extra_install_args"]
    assert called(ops)[-1] == "file: Release the service hold"
    ops["log"].clear()
    with on(FakeHost({facts.PackageState: packages({"ufw": ["0.36"]})})):  # hold not read
        base.install_packages(["ufw"])
    assert called(ops) == ["file: Release the service hold"]


def test_password_hashes_read_with_read_paths_or_as_a_fact():
    line = "alice@example.test:{SHA512-CRYPT}$6$salt$hash"
    state = {paths.DOVECOT_USERS: {"type": "f", "user": "root", "group": "dovecot", "mode": 640,
                                   "sha256": "x", "target": None, "lines": [line]}}
    host = FakeHost({facts.PathStates: state})
    with on(host):
        facts.read_paths(["/etc/dovecot", paths.CHASQUID_CONFIG],
                         contents=users.hash_files(sample_settings()))
        assert users.host_lines(paths.DOVECOT_USERS) == [line]
    assert [name for name, _ in host.fact_calls] == ["PathStates"]
    assert host.fact_calls[0][1]["contents"] == [paths.DOVECOT_USERS]
    fresh = FakeHost({facts.PathStates: {}})
    with on(fresh):
        facts.read_paths(["/etc/dovecot"], contents=users.hash_files(sample_settings()))
        assert users.host_lines(paths.DOVECOT_USERS) is None  # read: not there
    assert [name for name, _ in fresh.fact_calls] == ["PathStates"]
    unread = FakeHost({FileContents: [line]})
    with on(unread):
        assert users.host_lines(paths.DOVECOT_USERS) == [line]
    assert [name for name, _ in unread.fact_calls] == ["FileContents"]


def test_apt_proxy_written_or_removed(ops):
    with on(FakeHost({facts.PathStates: {}})):
        facts.read_paths(base.ROOTS)
        base.configure_apt(sample_settings())  # no proxy, and no file: nothing to do
        base.configure_apt(sample_settings(apt_proxy="http://198.51.100.1:3128"))
    assert called(ops) == [OWED, "put: apt proxy"]
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
    written = []
    monkeypatch.setattr("mailhost.host.tls.write_template",
                        lambda src, dest, *a, **k: written.append(dest) and False)
    with on(FakeHost({File: None, Link: None})):  # DANE off: no key-rollover script
        tls.configure(sample_settings(dane="off"), Secrets(None, None, {}), POSTFIX)
    assert written == [paths.TLS_DEPLOY_HOOK]
    ops["files.link"].calls.clear()
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
    assert tls.packages(sample_settings()) == tls.PACKAGES


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
                           "shell: postfix running and enabled", OWED,
                           "put: /etc/postfix/main.cf"]
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


def test_chasquid_below_1_14_removes_its_signing_link(secret_files):
    ops = secret_files
    settings = sample_settings(mta="chasquid")
    link = f"{paths.CHASQUID_CONFIG}/domains/example.test/dkim:mail.pem"
    state = {link: {"type": "l", "target": "/k", "user": "root", "group": "root", "mode": 777,
                    "sha256": None},
             paths.TLS_CERT: {"type": "l", "target": "/c", "user": "root", "group": "root",
                              "mode": 777, "sha256": "c"}}
    with on(FakeHost({facts.PathStates: state, chasquid.DebianPackageVersion: (1, 13)})):
        facts.read_paths([paths.CHASQUID_CONFIG, paths.MAILHOST_ETC])
        assert chasquid._sha256(paths.TLS_CERT) == "c"  # no further fact
        chasquid.configure(settings, Secrets())
    assert ops["files.link"].calls[0] == {"name": f"No {link} (signed in the hook)",
                                          "path": link, "present": False}


def test_dovecot_users_keeps_only_its_own_hashes():
    assert users.parse_dovecot_users(["a@x:{SHA512-CRYPT}$6$s$h", "b@x:{PLAIN}pw", ""]) == {
        "a@x": "$6$s$h"}


def file_state(content: str, mode, user="root", group="root") -> dict:
    return {"type": "f", "user": user, "group": group, "mode": int(mode), "target": None,
            "sha256": hashlib.sha256(content.encode()).hexdigest(), "lines": content.splitlines()}


def after(ops) -> dict:
    """PathStates of the host once the recorded operations ran: what a second run reads."""
    states = {}
    for call in ops["files.put"].calls:
        states[call["dest"]] = file_state(call["src"].getvalue(), call["mode"])
    for call in ops["secret_file"].calls:
        states[call["path"]] = file_state(call["content"].reveal(), call.get("mode", "600"),
                                          call.get("user", "root"), call.get("group", "root"))
    for call in ops["files.directory"].calls:
        states[call["path"]] = {"type": "d", "user": call["user"] or "root",
                                "group": call["group"] or "root", "mode": int(call["mode"] or 755),
                                "sha256": None, "target": None}
    for call in ops["files.link"].calls:
        if call.get("present", True):
            states[call["path"]] = {"type": "l", "user": "root", "group": "root", "mode": 777,
                                    "sha256": None, "target": call["target"]}
    return states


@pytest.fixture
def secret_files(ops, monkeypatch):
    """secret_file in every host module: recorded, and deciding as the operation does."""
    import sys

    from mailhost.operations import secret_file

    def decide(name, **arguments):
        ops["secret_file"].calls.append(arguments)
        commands = list(secret_file.secret_file._inner(**arguments))
        if commands:
            ops["log"].append(f"secret_file: {name}")
        return SimpleNamespace(will_change=bool(commands))

    ops["secret_file"] = Recorder()
    for name, module in list(sys.modules.items()):
        if name.startswith("mailhost.host.") and hasattr(module, "secret_file"):
            monkeypatch.setattr(module, "secret_file", decide)
    return ops


WORLDS = {
    "postfix": ({"mta": "postfix"}, {"postsrsd", "opendkim", "rspamd", "dovecot", "postfix"}),
    "chasquid 1.13, DNS-01, two domains": (
        {"mta": "chasquid", "acme_challenge": "dns-01",
         "mail_domains": ["example.test", "example.net"],
         "mail_users": ["alice@example.test", "bob@example.test", "carol@example.net"]},
        {"chasquid.service", "dovecot", "rspamd"}),
    "chasquid 1.14, ed25519 too": ({"mta": "chasquid", "dkim_ed25519": True},
                                   {"chasquid.service", "dovecot", "rspamd"}),
}


@pytest.mark.parametrize("world", WORLDS)
def test_an_mta_configured_on_a_fresh_host_then_again_changes_nothing(world, secret_files,
                                                                     tmp_path):
    """Every file, directory, link, account and hash of an MTA and its TLS on a fresh host;
    then, on the host as that left it, no operation at all and nothing to restart."""
    overrides, restarted = WORLDS[world]
    (tmp_path / "ca.pem").write_bytes(self_signed_pem("ca.lab.test", -1, 30)[0])
    settings = sample_settings(**{
        "mail_users": ["alice@example.test", "bob@example.test"],
        "mail_aliases": {"info@example.test": ["alice@example.test", "dan@elsewhere.example"]},
        "acme_ca_bundle": str(tmp_path / "ca.pem"), **overrides})
    secrets = Secrets(tsig_secret=Secret("tsig"), passwords={
        address: Secret(f"password of {address}") for address in settings.mail_users})
    mta = mta_of(settings)
    version = {chasquid.DebianPackageVersion: (1, 14) if "1.14" in world else (1, 13)}
    roots = [*tls.roots(settings), *users.ROOTS, *mta.roots]

    def configure(host):
        with on(host):
            facts.read_paths(roots, contents=users.hash_files(settings))
            tls.configure(settings, secrets, mta)
            return mta.configure(settings, secrets)

    assert configure(FakeHost(version)) == restarted
    assert "group: vmail group" in called(secret_files)
    assert any(line.startswith("secret_file: ") for line in called(secret_files))
    written = after(secret_files)
    for recorder in secret_files.values():
        if isinstance(recorder, Recorder):
            recorder.calls.clear()
    secret_files["log"].clear()

    copies = f"{paths.CHASQUID_CONFIG}/certs/{settings.mail_hostname}"
    converged = FakeHost({**version, facts.PathStates: written,
                          facts.SystemdUnitStates: {"unbound": {"active": True, "enabled": True}},
                          facts.Accounts: {
        "users": {"vmail": users.VMAIL_ACCOUNT},
        "groups": {"vmail": {"gid": paths.VMAIL_GID, "members": [chasquid.USER]}}},
        Sha256File: {key(path=paths.TLS_CERT): "c", key(path=f"{copies}/fullchain.pem"): "c",
                     key(path=paths.TLS_KEY): "k", key(path=f"{copies}/privkey.pem"): "k"}})
    assert configure(converged) == set()
    assert called(secret_files) == []
    if mta is POSTFIX:  # what is in place costs no round trip: three commands in all (the
        # installed Dovecot's version picks its configuration syntax)
        assert [name for name, _ in converged.fact_calls] == [
            "PathStates", "DebianPackageVersion", "Accounts"]


@pytest.mark.parametrize(("mta", "version", "conf"), [
    ("postfix", (2, 3), "dovecot/dovecot.conf.j2"),
    ("chasquid", (2, 4), "dovecot/dovecot-2.4.conf.j2"),
])
def test_dovecot_writes_its_version_s_syntax_and_compiles_the_sieve_script(ops, monkeypatch,
                                                                            mta, version, conf):
    monkeypatch.setattr(dovecot, "host_dovecot_users", lambda settings, secrets, keep=(): "")
    monkeypatch.setattr(dovecot, "secret_file", lambda **arguments: files.file(**arguments))
    settings = sample_settings(mta=mta)
    with on(FakeHost({dovecot.DebianPackageVersion: version})):
        assert dovecot.configure(settings, Secrets(None, None, {})) == {"dovecot"}
    written = {call["dest"]: call["src"].getvalue() for call in ops["files.put"].calls}
    assert written["/etc/dovecot/dovecot.conf"] == render(conf, settings,
                                                          **dovecot.render_data(settings))
    assert 'if header :is "X-Spam" "Yes"' in written[dovecot.JUNK_SIEVE]
    assert f"shell: Compile {dovecot.JUNK_SIEVE}" in called(ops)
    # Postfix's private directory exists before Dovecot makes its sockets there
    assert (f"directory: {dovecot.POSTFIX_PRIVATE}" in called(ops)) == (mta == "postfix")


@pytest.mark.parametrize(("mta", "leaving", "advice"), [
    ("chasquid", "postfix", "postqueue -f"), ("postfix", "chasquid", "retries on its own")])
def test_a_switch_stops_while_the_old_mtas_queue_holds_mail(mta, leaving, advice):
    """Only the queue of the MTA being left is read, from its spool files (it may be
    stopped); messages there stop the deploy with one line saying how to empty it; none: the
    deploy goes on."""
    settings = sample_settings(mta=mta)
    spool = {leaving: MTAS[leaving].queue.spool}
    host = FakeHost({facts.QueuedMessages: {leaving: 2}})
    with on(host), pytest.raises(DeployError) as refused:
        refuse_a_switch_while_mail_waits(settings)
    line = str(refused.value)
    assert "\n" not in line and f"mta = '{mta}'" in line and advice in line
    assert f"{leaving} queue still holds 2 message(s)" in line
    assert host.fact_calls == [("QueuedMessages", {"spools": spool})]
    with on(FakeHost({facts.QueuedMessages: {leaving: 0}})):
        refuse_a_switch_while_mail_waits(settings)


def test_greylisting_installs_and_starts_redis(ops):
    from mailhost.host import rspamd
    with on(FakeHost()):
        facts.read_paths(rspamd.ROOTS)
        rspamd.configure(sample_settings(greylisting=True), Secrets())
    names = called(ops)
    assert any(n.startswith("packages: Install") and rspamd.REDIS_PACKAGE in n for n in names)
    assert f"shell: {rspamd.REDIS_UNIT} running and enabled" in names, names


def test_no_users_file_of_chasquids_own_where_there_is_none(ops):
    """Read and found absent: no operation; found: removed."""
    path = "/etc/chasquid/domains/example.test/users"
    with on(FakeHost()):
        facts.read_paths(["/etc/chasquid"])
        assert chasquid._no_own_users(path) is False
    assert called(ops) == []
    left = {path: {"type": "f", "user": "chasquid", "group": "chasquid", "mode": 600,
                   "sha256": None, "target": None}}
    with on(FakeHost({facts.PathStates: left})):  # an older deploy wrote one: removed
        facts.read_paths(["/etc/chasquid"])
        chasquid._no_own_users(path)
    assert called(ops) == [f"file: No {path} (users are Dovecot's)"]


OWED_STATE = {paths.RESTARTS_OWED: {"type": "f", "user": "root", "group": "root", "mode": 644,
                                    "sha256": None, "target": None}}


def test_restarts_are_owed_before_the_first_changed_file_and_cleared_after_them(ops):
    host = FakeHost({facts.PathStates: {}, facts.SystemdUnitStates: states(
        dovecot="active enabled", postfix="active enabled")})
    with on(host):
        facts.read_paths([paths.RESTARTS_OWED, "/etc/dovecot"])
        assert restarts.owed_by_a_stopped_run(["dovecot", "postfix"]) == set()
        put_text("/etc/dovecot/a.conf", "a\n")
        put_text("/etc/dovecot/b.conf", "b\n")  # one marker for the run
        units.converge(running=["dovecot", "postfix"], restart={"dovecot"})
        restarts.done()
    assert called(ops) == [
        OWED, "put: /etc/dovecot/a.conf", "put: /etc/dovecot/b.conf", "shell: Restart dovecot",
        "shell: Restarts done"]
    assert paths.RESTARTS_OWED in ops["server.shell"].calls[0]["commands"][0]


def test_a_marker_left_by_a_stopped_run_restarts_every_service_once(ops):
    host = FakeHost({facts.PathStates: OWED_STATE, facts.SystemdUnitStates: states(
        dovecot="active enabled", chasquid="active enabled",
        **{"chasquid-smtp.socket": "active enabled"})})
    running = ["chasquid-smtp.socket", "chasquid", "dovecot"]
    with on(host):
        facts.read_paths([paths.RESTARTS_OWED, "/etc/dovecot"])
        owed = restarts.owed_by_a_stopped_run(running)
        assert owed == {"chasquid", "dovecot"}  # services, not their sockets
        put_text("/etc/dovecot/a.conf", "a\n")  # the marker is there already: not again
        units.converge(running=running, restart=owed)
        restarts.done()
    assert called(ops) == ["put: /etc/dovecot/a.conf", "shell: Restart chasquid",
                           "shell: Restart dovecot", "shell: Restarts done"]


def test_no_marker_and_nothing_changed_adds_nothing(ops):
    with on(FakeHost({facts.PathStates: {}})):
        facts.read_paths([paths.RESTARTS_OWED])
        restarts.done()
    assert called(ops) == []


def test_resolver_replaces_resolveds_stub_and_forgets_a_written_zone(ops):
    from mailhost.host import resolver

    link = {"type": "l", "user": "root", "group": "root", "mode": 777, "sha256": None,
            "target": "../run/systemd/resolve/stub-resolv.conf"}
    host = FakeHost({facts.PathStates: {resolver.RESOLV_CONF: link},
                     facts.SystemdUnitStates: states(unbound="active enabled")})
    with on(host):
        facts.read_paths(resolver.ROOTS)
        assert resolver.configure(sample_settings(), None) == {"postfix"}  # its chroot copy
        resolver.forget("example.test")
    assert called(ops) == [
        OWED, "put: unbound: the host's validating resolver", "shell: Restart unbound",
        "link: resolv.conf: no longer systemd-resolved's stub",
        "put: resolv.conf names the host's unbound",
        "shell: unbound forgets what it cached of example.test"]


def test_postfix_with_a_relay_installs_the_sasl_client_mechanisms(ops, monkeypatch):
    installed = []
    monkeypatch.setattr(base, "install_packages", installed.extend)
    monkeypatch.setattr(postfix, "secret_file", Recorder("secret", ops["log"]))
    settings = sample_settings(relay_host="[smtp.relay.example]:587", relay_user="me")
    secrets = Secrets(relay_password=Secret("relay password 0123"))
    with on(FakeHost({facts.PathStates: {}})):
        postfix.configure(settings, secrets)
    assert installed == [postfix.SASL_CLIENT_PACKAGE]


@pytest.mark.parametrize("version", [(2, 3), (2, 4)])
def test_vacation_replies_only_where_postfix_sends_them(version):
    """chasquid has no sendmail: its hosts turn Pigeonhole's vacation extension off."""
    for mta, replies in (("postfix", True), ("chasquid", False)):
        settings = sample_settings(mta=mta)
        assert dovecot.vacation(settings) is replies
        conf = render(dovecot.template_for(version), settings, **dovecot.render_data(settings))
        lines = [line.strip() for line in conf.splitlines()]
        assert ("sieve_vacation_default_period = 7d" in lines) is replies
        off = "sieve_extensions = -vacation" if version == (2, 3) else "vacation = no"
        assert (off in lines) is not replies
