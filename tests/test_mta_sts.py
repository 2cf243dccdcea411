"""MTA-STS: the policy text, its id and its records (mailhost.dns.mta_sts, desired), the web server
that serves it (nginx, a component of both MTAs only when on), the certificate's names, and the
check's judgement of a policy and a TXT record. Fetching over HTTPS from the real nginx is the
lab's (tests/test_mail_lab.py)."""

from __future__ import annotations

import dns.rdata
import pytest
from fakehost import FakeHost, Recorder, key, on
from pyinfra.facts.files import File
from pyinfra.operations import server
from sample import sample_settings

from mailhost import paths
from mailhost.checks import mta_sts as check
from mailhost.dns.mta_sts import (
    mx_matches,
    parse_policy,
    policy_id,
    policy_of,
    policy_text,
    txt_record,
)
from mailhost.host import nginx, tls
from mailhost.host.mtas import CHASQUID, POSTFIX, mta_of, others
from mailhost.keys.dkim import DkimPublicKeys, generate_key, public_value
from mailhost.operations.files import render
from mailhost.settings import SettingsError
from mailhost.zones.desired import MailHost, desired_by_zone
from mailhost.zones.sync import ZoneSync

RSA = public_value(generate_key("rsa", 2048))


@pytest.fixture(params=["knot_world", "cloudflare_world"])
def world(request):
    return request.getfixturevalue(request.param)


def zone(**overrides):
    settings = sample_settings(**overrides)
    (records,) = desired_by_zone([MailHost(settings, {"example.test": DkimPublicKeys(RSA)})])
    return records


def values(records, name, rtype):
    found = [r.values for r in records.desired if r.key == (name, rtype)]
    return found[0] if found else None


def test_the_policy_names_every_mx_and_its_id_follows_the_text():
    text = policy_text("enforce", ["mail.example.test", "mx2.example.test"], 604800)
    assert text == ("version: STSv1\r\nmode: enforce\r\nmx: mail.example.test\r\n"
                    "mx: mx2.example.test\r\nmax_age: 604800\r\n")
    assert policy_id(text).isalnum() and len(policy_id(text)) == 20
    assert policy_id(text) == policy_id(policy_text(
        "enforce", ["mail.example.test", "mx2.example.test"], 604800))
    assert policy_id(text) != policy_id(policy_text(
        "testing", ["mail.example.test", "mx2.example.test"], 604800))


def test_enforce_publishes_the_policy_host_and_the_txt():
    records = zone(mta_sts_mode="enforce")
    assert values(records, "mta-sts.example.test", "A") == ("198.51.100.10",)
    assert values(records, "mta-sts.example.test", "AAAA") == ("2001:db8::10",)
    (txt,) = values(records, "_mta-sts.example.test", "TXT")
    text = policy_text("enforce", ["mail.example.test"], 604800)
    assert txt == f"v=STSv1; id={policy_id(text)}"


def test_off_publishes_and_owns_nothing():
    records = zone()
    assert not [k for k in records.ownership.keys if "mta-sts" in k[0]]


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("mta_sts_mode", "enforce\nmx: evil.example", "'off', 'none', 'testing' or 'enforce'"),
    ("mta_sts_mode", "strict", "'off', 'none', 'testing' or 'enforce'"),
    ("mta_sts_max_age", 60, "from 86400"),
    ("mta_sts_max_age", "604800\n", "whole number"),
])
def test_bad_mta_sts_settings_are_refused(key, value, expected):
    with pytest.raises(SettingsError) as refused:
        sample_settings(**{key: value})
    assert expected in str(refused.value) and "\n" not in str(refused.value)


def test_a_policy_change_is_one_txt_change_and_off_leaves_them(world, tmp_path):
    first = ZoneSync(zone(mta_sts_mode="testing"), world.provider(), memory=tmp_path)
    first.apply(first.plan())
    assert ZoneSync(zone(mta_sts_mode="testing"), world.provider(), memory=tmp_path).plan().empty
    changed = ZoneSync(zone(mta_sts_mode="enforce"), world.provider(), memory=tmp_path)
    plan = changed.plan()
    assert [(c.action, c.rtype, c.name) for c in plan.changes] == [
        ("modify", "TXT", "_mta-sts.example.test")]
    changed.apply(plan)
    before = world.snapshot()
    off = ZoneSync(zone(), world.provider(), memory=tmp_path)
    assert off.plan().empty  # "off": not ours to touch
    assert world.snapshot() == before


def test_the_host_serves_the_policy_the_txt_announces():
    settings = sample_settings(mta_sts_mode="enforce")
    (txt,) = values(zone(mta_sts_mode="enforce"), "_mta-sts.example.test", "TXT")
    assert txt == txt_record(policy_of(settings)["example.test"])
    assert policy_of(sample_settings()) == {}


def test_a_policy_parses_back_and_mx_patterns_match_one_label():
    fields = parse_policy(policy_text("testing", ["mail.example.test", "*.mx.example.test"], 86400))
    assert fields == {"version": ["STSv1"], "mode": ["testing"],
                      "mx": ["mail.example.test", "*.mx.example.test"], "max_age": ["86400"]}
    assert parse_policy("version: STSv1\nmode: none\n")["mode"] == ["none"]  # LF too
    with pytest.raises(ValueError, match="not 'key: value'"):
        parse_policy("version STSv1\r\n")
    assert mx_matches("*.mx.example.test", "a.mx.example.test")
    assert not mx_matches("*.mx.example.test", "a.b.mx.example.test")
    assert not mx_matches("*.mx.example.test", "mx.example.test")
    assert mx_matches("Mail.Example.Test.", "mail.example.test")


def test_nginx_is_a_component_of_both_mtas_only_when_mta_sts_is_on():
    for mta in (POSTFIX, CHASQUID):
        off = sample_settings(mta=mta.name)
        on_ = sample_settings(mta=mta.name, mta_sts_mode="testing")
        assert "nginx" not in mta_of(off).packages and "nginx" not in mta_of(off).units
        assert 443 not in mta_of(off).open_ports(off)
        assert "nginx" not in [r.unit for r in mta_of(off).certificate_readers]
        assert "nginx" in mta_of(on_).packages and "nginx" in mta_of(on_).units
        assert mta_of(on_).open_ports(on_)[-1] == 443
        hook = render("tls/deploy-hook.sh.j2", on_, mta=mta_of(on_))
        assert "systemctl reload nginx || true" in hook.splitlines()
        assert "nginx" not in render("tls/deploy-hook.sh.j2", off, mta=mta_of(off))
        # the other MTA keeps nginx too: a switch never stops it
        assert "nginx" in others(on_)[0].units


def test_nginx_serves_only_the_policies_over_tls_1_2_and_up():
    settings = sample_settings(mta_sts_mode="enforce", mail_domains=["example.test", "b.test"])
    conf = render("nginx/nginx.conf.j2", settings, ciphers="X", client_sites=[],
                  policy_path="/.well-known/mta-sts.txt",
                  sites=[("mta-sts.example.test", "/etc/nginx/mta-sts/example.test.txt"),
                         ("mta-sts.b.test", "/etc/nginx/mta-sts/b.test.txt")])
    lines = [line.strip() for line in conf.splitlines()]
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in lines
    assert f"ssl_certificate {paths.TLS_CERT};" in lines
    assert [line for line in lines if line.startswith("listen")] == [
        "listen 443 ssl default_server;", "listen [::]:443 ssl default_server;",
        *["listen 443 ssl;", "listen [::]:443 ssl;"] * 2]
    assert "include" not in conf  # no package default, no sites-enabled
    assert lines.count("return 404;") == 3  # other names, other paths
    assert "alias /etc/nginx/mta-sts/b.test.txt;" in lines
    no_v6 = render("nginx/nginx.conf.j2", sample_settings(mta_sts_mode="enforce", ipv6=None),
                   ciphers="X", policy_path="/p", sites=[("mta-sts.example.test", "/x")],
                   client_sites=[])
    assert "[::]" not in no_v6


def test_nginx_writes_each_domains_policy_and_restarts_when_one_changes(monkeypatch):
    written = {}
    monkeypatch.setattr(nginx, "directory", lambda *a, **k: None)
    monkeypatch.setattr(nginx, "put_text", lambda dest, text, **k: written.setdefault(dest, text)
                        and dest.endswith("b.test.txt"))
    monkeypatch.setattr(nginx, "write_template", lambda *a, **k: False)
    settings = sample_settings(mta_sts_mode="enforce", mail_domains=["example.test", "b.test"])
    assert nginx.configure(settings, None) == {"nginx"}
    assert written["/etc/nginx/mta-sts/example.test.txt"] == policy_text(
        "enforce", ["mail.example.test"], 604800)
    assert set(written) == {"/etc/nginx/mta-sts/example.test.txt", "/etc/nginx/mta-sts/b.test.txt"}


@pytest.fixture
def shell(monkeypatch):
    recorder = Recorder("shell", [])
    monkeypatch.setattr(server, "shell", recorder)
    return recorder


def test_the_certificate_is_asked_again_when_it_lacks_a_policy_host(shell):
    settings = sample_settings(mta_sts_mode="enforce")
    assert tls.certificate_names(settings) == ["mail.example.test", "mta-sts.example.test"]
    assert tls.certificate_names(sample_settings()) == ["mail.example.test"]
    fullchain = f"{paths.live_certificate_dir('mail.example.test')}/fullchain.pem"
    only_host = FakeHost({File: {"mode": 644},
                          tls.CertificateNames: {key(path=fullchain): ["mail.example.test"]}})
    with on(only_host):
        tls.obtain_certificate(sample_settings())  # off: the name it has is all it needs
        assert shell.calls == [] and only_host.fact_calls == [("File", {"path": fullchain})]
        tls.obtain_certificate(settings)
    (call,) = shell.calls
    command = call["commands"][0].get_raw_value()
    assert "--cert-name mail.example.test -d mail.example.test -d mta-sts.example.test" in command
    assert call["name"].endswith("mail.example.test, adding mta-sts.example.test from the ACME CA")
    both = FakeHost({File: {"mode": 644}, tls.CertificateNames: ["mail.example.test",
                                                                   "mta-sts.example.test"]})
    with on(both):
        tls.obtain_certificate(settings)
    assert len(shell.calls) == 1
    assert tls.CertificateNames().process([
        "X509v3 Subject Alternative Name: ",
        "    DNS:mail.example.test, DNS:MTA-STS.example.test, IP Address:198.51.100.10"]) == [
        "mail.example.test", "mta-sts.example.test"]


class Zone:
    """A CheckResolver answering from a table {(name, rtype): [rdata text]}."""

    def __init__(self, table):
        self.table = table

    def values(self, name, rtype, recursive=False):
        return [dns.rdata.from_text("IN", rtype, v) for v in self.table.get((name, rtype), [])]

    def texts(self, name):
        return self.table.get((name, "TXT"), [])


def test_the_check_judges_the_policy_per_rfc_8461_and_the_settings():
    settings = sample_settings(mta_sts_mode="enforce")
    good = policy_of(settings)["example.test"]
    assert check.judge_policy(settings, good, ["mail.example.test"]) == []
    assert check.judge_policy(settings, good, ["mail.example.test", "mx2.example.test"]) == [
        "no mx: pattern covers the MX mx2.example.test"]
    assert check.judge_policy(settings, good.replace("enforce", "testing"),
                              ["mail.example.test"]) == [
        "mode ['testing'] is not enforce (configured)"]
    assert check.judge_policy(settings, "version: STSv1\r\nmode: enforce\r\nmode: enforce\r\n"
                              "mx: mail.example.test\r\nmax_age: 604800\r\n",
                              ["mail.example.test"]) == [
        "mode ['enforce', 'enforce'] is not enforce (configured)"]
    assert check.judge_policy(settings, "<html>404</html>", []) == [
        "policy line '<html>404</html>' is not 'key: value'"]


@pytest.mark.parametrize(("txt", "passes"), [
    (["v=STSv1; id=ID"], True),
    (["v=STSv1;id=ID;"], True),
    (["v=STSv1; id=0123456789abcdef0123456789abcdef0"], False),  # 33 characters
    (["v=STSv1; id=ID", "v=STSv1; id=ID"], False),  # two records: no policy (RFC 8461 3.1)
    (["v=STSv1; id=other"], False),
    (["v=spf1 -all"], False),
])
def test_the_txt_check_wants_one_well_formed_record_with_the_policys_id(txt, passes):
    result = check.txt_check(Zone({("_mta-sts.example.test", "TXT"): txt}), "example.test", "ID")
    assert (result.status == "ok") == passes, result


def test_the_checks_follow_the_mode_and_the_families():
    assert check.checks(sample_settings(), Zone({})) == []
    results = check.checks(sample_settings(mta_sts_mode="enforce"), Zone({}))
    assert [r.name for r in results] == ["mta-sts: _mta-sts.example.test TXT",
                                        "mta-sts: policy of example.test over IPv4",
                                        "mta-sts: policy of example.test over IPv6"]
    assert [r.status for r in results] == ["failed"] * 3
    assert results[1].found == "mta-sts.example.test has no A record"
    no_v6 = check.checks(sample_settings(mta_sts_mode="enforce", ipv6=None), Zone({}))
    assert len(no_v6) == 2


def test_the_policy_check_fetches_from_every_address_and_judges(monkeypatch):
    settings = sample_settings(mta_sts_mode="enforce")
    zone_ = Zone({("mta-sts.example.test", "A"): ["198.51.100.10"],
                  ("example.test", "MX"): ["10 mail.example.test."]})
    fetched = []

    def fetch(settings_, host, address):
        fetched.append((host, address))
        return 200, "text/plain", policy_of(settings)["example.test"]
    monkeypatch.setattr(check, "fetch_policy", fetch)
    ok = check.policy_check(settings, zone_, "example.test", "IPv4", "A")
    assert ok.status == "ok" and fetched == [("mta-sts.example.test", "198.51.100.10")]
    assert ok.found.startswith("198.51.100.10: version: STSv1, mode: enforce")
    monkeypatch.setattr(check, "fetch_policy", lambda *a: (404, "text/html", "<html>"))
    missing = check.policy_check(settings, zone_, "example.test", "IPv4", "A")
    assert missing.status == "failed" and missing.found == "198.51.100.10: HTTP 404"
    assert "nginx" in missing.advice


def test_a_kept_mx_is_named_in_the_policy_and_its_txt():
    """A domain keeping another server's MX (mx_keep): the policy names it too, or a sender
    enforcing the policy would refuse to deliver there; served text and TXT id agree."""
    overrides = {"mta_sts_mode": "enforce", "mx_keep": ["20 mx.oldprovider.example"]}
    text = policy_of(sample_settings(**overrides))["example.test"]
    assert parse_policy(text)["mx"] == ["mail.example.test", "mx.oldprovider.example"]
    (txt,) = values(zone(**overrides), "_mta-sts.example.test", "TXT")
    assert txt == txt_record(text)


def test_the_policy_fetch_waits_out_nginxs_reload_but_not_forever(monkeypatch):
    """A certificate that does not verify is asked again a few times (nginx's graceful reload
    after certbot); one that never verifies is the finding."""
    import ssl

    from mailhost.checks import mta_sts as checks
    answers = [ssl.SSLCertVerificationError("self-signed"), (200, "text/plain", "policy")]

    def fetch(settings, policy_host, address):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer
    monkeypatch.setattr(checks, "fetch_policy", fetch)
    slept = []
    assert checks.fetch_settled(None, "mta-sts.example.test", "198.51.100.10",
                                sleep=slept.append) == (200, "text/plain", "policy")
    assert slept == [checks.SETTLE_SECONDS]
    answers[:] = [ssl.SSLCertVerificationError("self-signed")] * checks.SETTLE_TRIES
    with pytest.raises(ssl.SSLCertVerificationError):
        checks.fetch_settled(None, "mta-sts.example.test", "198.51.100.10", sleep=slept.append)
    assert answers == []
