"""The webmail (``webmail = "roundcube"``): off by default and then nothing of it anywhere; on,
a component of both MTAs (packages with php-fpm first, nginx on 443 with a server block for
the host's name that hands only index.php to PHP-FPM), Roundcube's files pointing at the host's
own IMAP, submission and ManageSieve, its des_key made on the host, PHP-FPM's unit the one of
the PHP version apt has; the login page judged by the check. The lab drives it in Chromium
(tests/test_webmail_lab.py)."""

from __future__ import annotations

import pytest
from fakehost import FakeHost, Recorder, key, on
from pyinfra.operations import files, server
from sample import sample_settings

from mailhost import facts
from mailhost.checks import webmail as check
from mailhost.host import nginx, units, webmail
from mailhost.host.mtas import CHASQUID, POSTFIX, mta_of
from mailhost.operations.files import render
from mailhost.paths import php_fpm_unit
from mailhost.settings import SettingsError

ON = {"webmail": "roundcube"}
PHP = {facts.DebianPackageVersion: {key(package="php-fpm"): (8, 3)}}


@pytest.fixture
def ops(monkeypatch):
    recorders = {}
    for module, name in [(server, "shell"), (files, "put"), (files, "directory")]:
        recorders[f"{module.__name__.rsplit('.', 1)[1]}.{name}"] = Recorder(name)
        monkeypatch.setattr(module, name, recorders[f"{module.__name__.rsplit('.', 1)[1]}.{name}"])
    return recorders


def test_off_by_default_and_none_is_off():
    settings = sample_settings()
    assert settings.webmail == "off" and sample_settings(webmail=None).webmail == "off"
    assert not webmail.wanted(settings)
    assert "roundcube" not in mta_of(settings).packages
    assert nginx.webmail_site(settings) is None


@pytest.mark.parametrize(("value", "expected"), [
    ("squirrelmail", "settings: webmail = 'squirrelmail': expected 'roundcube' or 'off'"),
    (True, "settings: webmail = True: expected 'roundcube' or 'off'"),
])
def test_a_wrong_value_is_one_line(value, expected):
    with pytest.raises(SettingsError) as error:
        sample_settings(webmail=value)
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)


def test_a_host_without_mailboxes_has_no_webmail():
    with pytest.raises(SettingsError, match=r"^settings: webmail = 'roundcube': expected 'off' "
                                            "on a host without mail_domains"):
        sample_settings(mail_domains=[], backup_mx_for=["example.test"], **ON)


@pytest.mark.parametrize("mta", [POSTFIX, CHASQUID])
def test_on_it_is_a_component_of_both_mtas_before_nginx(mta):
    settings = sample_settings(mta=mta.name, mta_sts_mode="off", **ON)
    chosen = mta_of(settings)
    names = [c.__name__.rsplit(".", 1)[1] for c in chosen.components]
    assert names.index("dovecot") < names.index("webmail") < names.index("nginx")
    packages = chosen.packages
    assert "php-fpm" in packages and "roundcube" in packages
    assert {"roundcube-sqlite3", "roundcube-plugins"} <= set(packages)
    assert "apache2" not in packages
    # nginx runs for the webmail alone, and the firewall's 443 comes with it
    assert nginx.wanted(settings) and 443 in chosen.open_ports(settings)


def test_nginx_serves_index_php_and_static_files_only():
    settings = sample_settings(**ON)
    conf = render("nginx/nginx.conf.j2", settings, ciphers="X", sites=[], policy_path="/p",
                  client_sites=[], autoconfig_path="/a", autodiscover_path="/d",
                  webmail=nginx.webmail_site(settings))
    block = conf[conf.index("# the webmail"):]
    lines = [line.strip() for line in block.splitlines()]
    assert "server_name mail.example.test;" in lines
    assert "listen [::]:443 ssl;" in lines
    assert f"root {webmail.DOCUMENT_ROOT};" in lines
    assert f"fastcgi_pass unix:{webmail.FPM_SOCKET};" in lines
    assert "location = /index.php {" in lines
    assert block.count("fastcgi_pass") == 1  # no other PHP file runs
    assert lines[-5:] == ["location / {", "return 404;", "}", "}", "}"]  # then http's end
    # without it: no such server
    off = render("nginx/nginx.conf.j2", sample_settings(mta_sts_mode="enforce"), ciphers="X",
                 sites=[], policy_path="/p", client_sites=[], autoconfig_path="/a",
                 autodiscover_path="/d", webmail=None)
    assert "fastcgi_pass" not in off and "server_name mail.example.test;" not in off


@pytest.mark.parametrize(("mta", "vacation"), [("postfix", 1), ("chasquid", 0)])
def test_roundcube_asks_the_hosts_own_services(mta, vacation):
    settings = sample_settings(mta=mta, **ON)
    release = webmail.roundcube_release((1, 6))
    config = render("webmail/config.inc.php.j2", settings, des_key_file=webmail.DES_KEY_FILE,
                    imap=webmail.IMAP, submission=webmail.SUBMISSION, upload=25, **release)
    assert "$config['imap_host'] = 'ssl://127.0.0.1:993';" in config
    assert "$config['smtp_host'] = 'tls://127.0.0.1:587';" in config
    assert "$config['smtp_user'] = '%u';" in config and "$config['smtp_pass'] = '%p';" in config
    assert "$config['plugins'] = ['managesieve'];" in config
    assert f'include("{webmail.DES_KEY_FILE}");' in config
    assert "des_key'] =" not in config  # the key itself is only on the host
    sieve = render("webmail/managesieve.inc.php.j2", settings,
                   managesieve="tls://127.0.0.1:4190", vacation=vacation, **release)
    assert "$config['managesieve_host'] = 'tls://127.0.0.1:4190';" in sieve
    assert f"$config['managesieve_vacation'] = {vacation};" in sieve
    pool = render("webmail/php-fpm-pool.conf.j2", settings, socket=webmail.FPM_SOCKET, upload=25)
    assert f"listen = {webmail.FPM_SOCKET}" in pool and "pm = ondemand" in pool


def test_configure_writes_its_files_and_runs_the_unit_of_phps_version(ops, monkeypatch):
    activated = []
    monkeypatch.setattr(units, "activate",
                        lambda names, restart=frozenset(): activated.append((names, restart)))
    with on(FakeHost(PHP)):
        facts.read_paths(list(webmail.ROOTS))  # a fresh host: nothing there
        assert webmail.configure(sample_settings(**ON), None) == set()
    written = [call["dest"] for call in ops["files.put"].calls]
    assert written == [webmail.CONFIG, webmail.MANAGESIEVE_CONFIG,
                       "/etc/php/8.3/fpm/pool.d/www.conf"]
    assert activated == [(["php8.3-fpm"], {"php8.3-fpm"})]
    (key_op,) = [c for c in ops["server.shell"].calls if "des_key" in c["name"]]
    command = key_op["commands"][0]
    assert "/dev/urandom" in command and "chgrp www-data" in command and "umask 027" in command
    assert command.startswith(f"[ -s {webmail.DES_KEY_FILE} ] ||")  # never made twice


def test_a_host_with_its_key_gets_no_new_one(ops, monkeypatch):
    monkeypatch.setattr(units, "activate", lambda names, restart=frozenset(): None)
    there = {webmail.DES_KEY_FILE: {"type": "f", "user": "root", "group": "www-data",
                                    "mode": 640, "sha256": "x", "target": None}}
    with on(FakeHost({**PHP, facts.PathStates: there})):
        facts.read_paths(list(webmail.ROOTS))
        webmail.configure(sample_settings(**ON), None)
    assert not [c for c in ops["server.shell"].calls if "des_key" in c["name"]]


def test_before_the_install_no_apache_module_and_debconfs_answers(ops):
    with on(FakeHost()):
        facts.read_paths(list(webmail.ROOTS))
        webmail.before_install(sample_settings(**ON))
        webmail.before_install(sample_settings())  # off: nothing
    (call,) = [c for c in ops["server.shell"].calls if "debconf" in c["name"]]
    assert "roundcube/database-type select sqlite3" in call["commands"][0]
    assert "debconf-set-selections" in call["commands"][0]
    (pin,) = ops["files.put"].calls
    assert pin["dest"] == webmail.APT_PIN
    text = pin["src"].getvalue()
    assert "Package: libapache2-mod-php*\nPin: release *\nPin-Priority: -1\n" in text


def test_once_installed_only_the_pin_is_kept(ops):
    there = {webmail.CONFIG: {"type": "f", "user": "root", "group": "www-data", "mode": 644,
                              "sha256": "x", "target": None}}
    with on(FakeHost({facts.PathStates: there})):
        facts.read_paths(list(webmail.ROOTS))
        webmail.before_install(sample_settings(**ON))
    assert not [c for c in ops["server.shell"].calls if "debconf" in c["name"]]
    assert [c["dest"] for c in ops["files.put"].calls] == [webmail.APT_PIN]  # not read: put


def test_roundcube_1_5_gets_the_names_before_1_6():
    settings = sample_settings(**ON)
    release = webmail.roundcube_release((1, 5))
    assert release == {"legacy": True, "version": "1.5"}
    assert webmail.roundcube_release(None)["legacy"] is False  # not known: today's names
    config = render("webmail/config.inc.php.j2", settings, des_key_file=webmail.DES_KEY_FILE,
                    imap=webmail.IMAP, submission=webmail.SUBMISSION, upload=25, **release)
    for line in ("$config['default_host'] = 'ssl://127.0.0.1';", "$config['default_port'] = 993;",
                 "$config['smtp_server'] = 'tls://127.0.0.1';", "$config['smtp_port'] = 587;"):
        assert line in config
    assert "imap_host" not in config and "smtp_host" not in config
    sieve = render("webmail/managesieve.inc.php.j2", settings,
                   managesieve="tls://127.0.0.1:4190", vacation=1, **release)
    for line in ("$config['managesieve_host'] = '127.0.0.1';",
                 "$config['managesieve_port'] = 4190;", "$config['managesieve_usetls'] = true;"):
        assert line in sieve


@pytest.mark.parametrize(("version", "unit"), [((8, 3), "php8.3-fpm"), ((8, 1), "php8.1-fpm"),
                                               ((8, 4), "php8.4-fpm")])
def test_the_fpm_unit_follows_php(version, unit):
    assert php_fpm_unit(version) == unit
    assert webmail.pool_file(version) == f"/etc/php/{version[0]}.{version[1]}/fpm/pool.d/www.conf"


def test_no_php_known_is_said():
    with pytest.raises(ValueError, match="php-fpm"):
        php_fpm_unit(None)


@pytest.mark.parametrize(("status", "text", "problem"), [
    (200, '<input name="_user" id="rcmloginuser" required>', ""),
    (502, "Bad Gateway", "HTTP 502"),
    (200, "<html>Welcome to nginx</html>", "no Roundcube login form in the page"),
])
def test_the_check_judges_the_login_page(status, text, problem):
    assert check.judge(status, text) == problem


def test_no_checks_while_off():
    assert check.checks(sample_settings(), None) == []
    assert check.host_checks(sample_settings(), None) == []


def test_the_host_check_reads_the_unit_of_phps_version():
    states = {facts.SystemdUnitStates: {key(units=["php8.3-fpm"]):
                                        {"php8.3-fpm": {"active": True, "enabled": False}}},
              **PHP}
    (found,) = check.host_checks(sample_settings(**ON), FakeHost(states))
    assert found.status == "failed" and found.found == "php8.3-fpm: active, not enabled"


def test_turned_off_on_a_host_that_served_it_php_fpm_stops():
    there = {webmail.DES_KEY_FILE: {"type": "f", "user": "root", "group": "www-data",
                                    "mode": 640, "sha256": "x", "target": None}}
    with on(FakeHost({**PHP, facts.PathStates: there})):
        facts.read_paths(list(webmail.ROOTS))
        assert webmail.stopped_units(sample_settings()) == ["php8.3-fpm"]
        assert webmail.stopped_units(sample_settings(**ON)) == []  # on: it runs
    with on(FakeHost(PHP)) as fresh:  # never had it: nothing stopped, no fact asked
        facts.read_paths(list(webmail.ROOTS))
        assert webmail.stopped_units(sample_settings()) == []
        assert ("DebianPackageVersion", {"package": "php-fpm"}) not in fresh.fact_calls


def test_a_pool_in_place_is_neither_written_nor_restarted(ops, monkeypatch):
    import hashlib

    from pyinfra.facts.files import Sha256File
    activated = []
    monkeypatch.setattr(units, "activate",
                        lambda names, restart=frozenset(): activated.append((names, restart)))
    settings = sample_settings(**ON)
    pool = render("webmail/php-fpm-pool.conf.j2", settings, socket=webmail.FPM_SOCKET,
                  upload=webmail.UPLOAD_MEGABYTES)
    digest = {key(path="/etc/php/8.3/fpm/pool.d/www.conf"): hashlib.sha256(pool.encode())
              .hexdigest()}
    with on(FakeHost({**PHP, Sha256File: digest})):
        facts.read_paths(list(webmail.ROOTS))
        webmail.configure(settings, None)
    assert "/etc/php/8.3/fpm/pool.d/www.conf" not in [c["dest"] for c in ops["files.put"].calls]
    assert activated == [(["php8.3-fpm"], set())]
