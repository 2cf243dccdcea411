"""Mail clients' autoconfiguration (mail_client_autoconfig): the files name exactly what the host
serves and parse back; their names get records, are owned, and go on the certificate; nginx
serves them (also to Outlook's POST) only when asked. The lab fetches them from a deployed
host (tests/test_autoconfig_lab.py)."""

from __future__ import annotations

import pytest
from sample import sample_settings
from test_desired import host, records_of

from mailhost.checks import autoconfig as check
from mailhost.checks.autoconfig import describe, judge
from mailhost.dns import autoconfig
from mailhost.dns.autoconfig import Server
from mailhost.host import nginx, tls
from mailhost.host.mtas import mta_of
from mailhost.operations.files import render

ON = {"mail_client_autoconfig": True}


def test_off_by_default_nothing_served_named_or_published():
    settings = sample_settings()
    assert settings.mail_client_autoconfig is False
    assert autoconfig.host_names(settings) == [] and nginx.client_sites(settings) == []
    records, _ = records_of(host(settings))
    assert not [key for key in records if key[0].startswith(("autoconfig.", "autodiscover."))]


def test_the_servers_are_the_hosts_ports_at_its_name():
    settings = sample_settings(**ON)
    assert autoconfig.servers(settings) == (
        Server("imap", "mail.example.test", 993, "SSL"),
        Server("smtp", "mail.example.test", 465, "SSL"),
        Server("smtp", "mail.example.test", 587, "STARTTLS"))
    with_143 = autoconfig.servers(sample_settings(imap_starttls=True, **ON))
    assert Server("imap", "mail.example.test", 143, "STARTTLS") in with_143


@pytest.mark.parametrize("starttls", [False, True])
def test_both_files_parse_back_to_the_servers(starttls):
    settings = sample_settings(imap_starttls=starttls, **ON)
    mozilla = autoconfig.mozilla_config("example.test", settings)
    assert autoconfig.parse_mozilla(mozilla) == autoconfig.servers(settings)
    assert "<username>%EMAILADDRESS%</username>" in mozilla
    assert '<emailProvider id="example.test">' in mozilla
    answer = autoconfig.autodiscover_response(settings)
    assert autoconfig.parse_autodiscover(answer) == autoconfig.servers(settings)


@pytest.mark.parametrize("text", ["not xml", "<html><body>hello</body></html>",
                                  "<clientConfig><emailProvider><incomingServer type='imap'>"
                                  "<hostname>x</hostname><port>abc</port></incomingServer>"
                                  "</emailProvider></clientConfig>"])
def test_what_is_not_a_client_config_is_refused(text):
    with pytest.raises(ValueError):
        autoconfig.parse_mozilla(text)
    with pytest.raises(ValueError):
        autoconfig.parse_autodiscover(text)


def test_records_owned_and_certificate_names():
    settings = sample_settings(mail_domains=["example.test", "b.test"], **ON)
    records, zones = records_of(host(settings))
    for domain in ("example.test", "b.test"):
        for name in (f"autoconfig.{domain}", f"autodiscover.{domain}"):
            assert records[name, "A"].values == ("198.51.100.10",)
            assert records[name, "AAAA"].values == ("2001:db8::10",)
    owned = set().union(*(z.ownership.keys for z in zones))
    assert ("autodiscover.b.test", "AAAA") in owned
    names = tls.certificate_names(settings)
    assert names[0] == "mail.example.test"
    assert {"autoconfig.example.test", "autodiscover.example.test", "autoconfig.b.test",
            "autodiscover.b.test"} <= set(names)
    no_v6 = sample_settings(ipv6=None, **ON)
    records, zones = records_of(host(no_v6))
    assert ("autoconfig.example.test", "AAAA") not in records
    # still owned: an AAAA left from when the host had IPv6 is deleted
    assert ("autoconfig.example.test", "AAAA") in set().union(*(z.ownership.keys for z in zones))


def test_nginx_runs_for_autoconfig_alone_and_answers_any_method():
    settings = sample_settings(mta_sts_mode="off", **ON)
    assert nginx.wanted(settings) and nginx.ports(settings) == (443,)
    assert "nginx" in mta_of(settings).units
    assert not nginx.wanted(sample_settings(mta_sts_mode="off"))
    conf = render("nginx/nginx.conf.j2", settings, ciphers="X", sites=[], policy_path="/p",
                  client_sites=nginx.client_sites(settings),
                  autoconfig_path=autoconfig.AUTOCONFIG_PATH,
                  autodiscover_path=autoconfig.AUTODISCOVER_PATH)
    lines = [line.strip() for line in conf.splitlines()]
    assert "server_name autoconfig.example.test;" in lines
    assert "location = /mail/config-v1.1.xml {" in lines
    assert "server_name autodiscover.example.test;" in lines
    # a regex location with return: Outlook POSTs, and some clients capitalize the path
    assert r"location ~* ^/autodiscover/autodiscover\.xml$ {" in lines
    assert conf.count("return 200 '<?xml") == 2
    assert "<port>993</port>" in conf and "<Port>587</Port>" in conf


def test_an_nginx_string_never_holds_a_variable_or_a_quote():
    assert nginx.quoted("<a>b</a>") == "'<a>b</a>'"
    for bad in ("$host", "it's", "a\\b"):
        with pytest.raises(ValueError):
            nginx.quoted(bad)


def test_the_check_judges_each_answer_against_the_settings():
    settings = sample_settings(**ON)
    wanted = autoconfig.servers(settings)
    good = autoconfig.mozilla_config("example.test", settings)
    assert judge(autoconfig.parse_mozilla, 200, good, wanted) == ""
    assert judge(autoconfig.parse_mozilla, 404, good, wanted) == "HTTP 404"
    assert "not XML" in judge(autoconfig.parse_mozilla, 200, "<html", wanted)
    # a file from before imap_starttls was turned on names one server fewer
    stale = autoconfig.autodiscover_response(settings)
    with_143 = autoconfig.servers(sample_settings(imap_starttls=True, **ON))
    assert judge(autoconfig.parse_autodiscover, 200, stale, with_143) == describe(wanted)
    moved = good.replace("mail.example.test", "old.example.test")
    assert "old.example.test:993" in judge(autoconfig.parse_mozilla, 200, moved, wanted)
    assert check.checks(sample_settings(), resolver=None) == []  # off: nothing checked
