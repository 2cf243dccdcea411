"""dns_provider = "lexicon": settings, credentials under lexicon's names, the Public Suffix List
never fetched, record types a provider cannot hold; against a real PowerDNS (powerdns_world).
The scenarios shared with Knot and Cloudflare are in test_dns_scenarios.py."""

from __future__ import annotations

import socket

import pytest
import tldextract
from sample import sample_settings

from mailhost.keys.dkim import DkimPublicKeys, generate_key, public_value
from mailhost.secrets import load_secrets
from mailhost.settings import SettingsError
from mailhost.zones.desired import MailHost, desired_by_zone
from mailhost.zones.providers import ProviderError, make_provider
from mailhost.zones.providers.lexicon import LexiconProvider, offline_suffixes, record_value
from mailhost.zones.sync import ZoneSync

LEXICON = {"dns_provider": "lexicon", "dns_lexicon_provider": "powerdns",
           "dns_lexicon_options": {"pdns_server": "http://127.0.0.1:8081"}}
RSA = public_value(generate_key("rsa", 2048))


def lexicon_settings(tmp_path, **overrides):
    return sample_settings(**{**LEXICON, "secrets_file": str(tmp_path / "none.toml"),
                              **overrides})


@pytest.fixture
def connects(monkeypatch):
    """Every address a socket of this process connects to; any outside loopback fails."""
    seen = []
    real = socket.socket.connect

    def connect(self, address):
        seen.append(address)
        if not str(address[0]).startswith("127."):
            raise OSError(f"test: no network outside loopback ({address[0]})")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


def test_the_public_suffix_list_is_never_fetched(connects, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no cached list to fall back on either
    with offline_suffixes() as extractor:
        parts = tldextract.extract("mail.example.co.uk")
        assert extractor.suffix_list_urls == ()
    assert (parts.subdomain, parts.domain, parts.suffix) == ("mail", "example", "co.uk")
    assert connects == []
    assert not any(tmp_path.rglob("*.tld_set*")) and not any(tmp_path.rglob("*.json"))


def test_a_whole_lexicon_run_talks_to_powerdns_only(powerdns_world, connects):
    sync = zone_sync(powerdns_world)
    sync.apply(sync.plan())
    api = ("127.0.0.1", powerdns_world.server.api_port)
    assert connects and set(connects) == {api}


def zone_sync(world, provider=None, **overrides):
    (records,) = desired_by_zone([MailHost(sample_settings(**overrides),
                                           {"example.test": DkimPublicKeys(RSA)})])
    return ZoneSync(records, provider or world.provider())


def test_settings_name_a_lexicon_provider(tmp_path):
    settings = lexicon_settings(tmp_path)
    assert settings.dns_lexicon_provider == "powerdns"
    with pytest.raises(SettingsError) as error:
        lexicon_settings(tmp_path, dns_lexicon_provider="nosuchdns")
    assert str(error.value).startswith("settings: dns_lexicon_provider = 'nosuchdns': expected")
    with pytest.raises(SettingsError, match="dns_lexicon_provider = None"):
        lexicon_settings(tmp_path, dns_lexicon_provider=None)
    with pytest.raises(SettingsError) as error:
        lexicon_settings(tmp_path, dns_lexicon_options={"auth_token": "abc"})
    assert "export LEXICON_POWERDNS_AUTH_TOKEN" in str(error.value)
    assert "abc" not in str(error.value)
    assert lexicon_settings(tmp_path, acme_challenge="dns-01").acme_challenge == "dns-01"


def test_credentials_under_lexicon_names_from_environment_or_file(tmp_path):
    settings = lexicon_settings(tmp_path)
    with pytest.raises(SettingsError) as error:
        load_secrets(settings, environ={})
    assert "LEXICON_POWERDNS_AUTH_TOKEN" in str(error.value) and "\n" not in str(error.value)
    secrets = load_secrets(settings, environ={"LEXICON_POWERDNS_AUTH_TOKEN": "from-env"})
    assert secrets.lexicon["auth_token"].reveal() == "from-env"
    assert "from-env" not in repr(secrets)
    file = tmp_path / "secrets.toml"
    file.write_text('lexicon_powerdns_auth_token = "from-file"\n')
    file.chmod(0o600)
    settings = lexicon_settings(tmp_path, secrets_file=str(file))
    assert load_secrets(settings, environ={}).lexicon["auth_token"].reveal() == "from-file"
    both = load_secrets(settings, environ={"LEXICON_POWERDNS_AUTH_TOKEN": "from-env"})
    assert both.lexicon["auth_token"].reveal() == "from-env"  # the environment wins
    with pytest.raises(SettingsError, match="lexicon_powerdns_auth_token"):
        load_secrets(settings, environ={"LEXICON_POWERDNS_AUTH_TOKEN": "two words"})
    provider = make_provider(settings, both)
    assert isinstance(provider, LexiconProvider) and provider.kind == "lexicon powerdns"


def test_a_refused_key_is_one_line_without_the_key(powerdns_world):
    provider = powerdns_world.provider(api_key="very-secret-wrong-key")
    with pytest.raises(ProviderError) as error:
        provider.check_zone("example.test")
    message = str(error.value)
    assert message.startswith("lexicon provider powerdns failed while looking up zone")
    assert "401" in message or "Unauthorized" in message
    assert "very-secret-wrong-key" not in message and "\n" not in message


def test_a_record_type_the_provider_cannot_hold_is_said_before_any_write(powerdns_world,
                                                                         monkeypatch):
    provider = powerdns_world.provider()
    monkeypatch.setattr(provider, "unsupported_types", lambda: frozenset({"CAA"}))
    sync = zone_sync(powerdns_world, provider)
    before = powerdns_world.server_writes()
    plan = sync.plan()
    assert powerdns_world.server_writes() == before
    notices = [line for line in plan.lines() if "NOTICE" in line]
    assert notices == ["  ! NOTICE   lexicon powerdns cannot hold CAA: not written: CAA "
                       "example.test (add them by hand at the provider, or use a provider "
                       "that holds them)"]
    assert "CAA" not in {c.rtype for c in plan.changes}
    sync.apply(plan)
    assert "CAA" not in {row[1] for row in powerdns_world.snapshot()}
    assert LexiconProvider("digitalocean", {}, {"auth_token": "x"}).unsupported_types() == {
        "TLSA"}


def test_an_unknown_provider_is_one_line():
    with pytest.raises(ProviderError, match="dns_lexicon_provider 'nosuchdns'"):
        LexiconProvider("nosuchdns", {}, {})


def test_lexicon_contents_become_record_values():
    assert record_value("TXT", 'v=DKIM1; k=rsa; p=AB" "CD') == "v=DKIM1; k=rsa; p=ABCD"
    assert record_value("TXT", '"v=spf1 -all"') == "v=spf1 -all"
    assert record_value("TXT", "v=spf1 -all") == "v=spf1 -all"
    assert record_value("CAA", '0 issue "sectigo.com"') == '0 issue "sectigo.com"'


def test_foreign_records_are_kept_byte_for_byte(powerdns_world):
    powerdns_world.add_foreign("example.test", "TXT", "google-site-verification=abc")
    powerdns_world.add_foreign("example.test", "MX", "20 mx.backup.example")
    powerdns_world.add_foreign("example.test", "CAA", '0 issue "sectigo.com"')
    foreign = {(n, t, c) for n, t, _ttl, c in powerdns_world.raw() if t in ("TXT", "MX", "CAA")}
    keep = {"mx_keep": ["20 mx.backup.example"]}
    sync = zone_sync(powerdns_world, **keep)
    sync.apply(sync.plan())
    assert foreign <= {(n, t, c) for n, t, _ttl, c in powerdns_world.raw()}
    assert ("example.test.", "CAA", '0 issue "sectigo.com"') in foreign
    again = zone_sync(powerdns_world, **keep)
    before = powerdns_world.server_writes()
    assert again.plan().empty and again.provider.calls["write"] == 0
    assert powerdns_world.server_writes() == before


def test_a_cname_outside_the_zone_is_read_as_powerdns_stores_it(powerdns_world):
    """lexicon's powerdns provider lists "ghs.hosting.example.example.test" for it."""
    powerdns_world.add_foreign("mail.example.test", "CNAME", "ghs.hosting.example")
    found = powerdns_world.provider().read("example.test", [("mail.example.test", "A")])
    assert [(r.rtype, r.values) for r in found] == [("CNAME", ("ghs.hosting.example",))]


def test_certbot_gets_the_acme_credentials_when_set_else_the_provisioning_ones(tmp_path):
    from mailhost.host.tls import _dns_credentials

    settings = lexicon_settings(tmp_path, acme_challenge="dns-01")
    full = {"LEXICON_POWERDNS_AUTH_TOKEN": "provisioning-key"}
    only = load_secrets(settings, environ=full)
    assert only.acme_lexicon == {}
    assert _dns_credentials(settings, only).reveal() == (
        "auth_token = provisioning-key\npdns_server = http://127.0.0.1:8081\n")
    acme = {"MAILHOST_ACME_LEXICON_POWERDNS_AUTH_TOKEN": "only-txt-key"}
    scoped = load_secrets(settings, environ={**full, **acme})
    assert "provisioning-key" not in _dns_credentials(settings, scoped).reveal()
    assert "auth_token = only-txt-key\n" in _dns_credentials(settings, scoped).reveal()
    assert "only-txt-key" not in repr(scoped)


# ----- PowerDNS read name by name (mailhost.zones.providers.lexicon_powerdns) -----

@pytest.fixture
def requests_seen(monkeypatch):
    """(method, path, query) of every HTTP request lexicon's powerdns provider makes."""
    from mailhost.zones.providers.lexicon_powerdns import PowerDnsByName

    seen = []
    real = PowerDnsByName._request

    def request(self, action="GET", url="/", data=None, query_params=None):
        seen.append((action, url, dict(query_params or {})))
        return real(self, action, url, data=data, query_params=query_params)

    monkeypatch.setattr(PowerDnsByName, "_request", request)
    return seen


def test_a_powerdns_plan_reads_the_owned_names_never_the_whole_zone(powerdns_world,
                                                                    requests_seen):
    sync = zone_sync(powerdns_world)
    plan = sync.plan()
    assert len(plan.changes) == 14
    gets = [(url, query) for method, url, query in requests_seen if method == "GET"]
    assert gets and all(url == "/zones/example.test." and "rrset_name" in query
                        for url, query in gets)
    asked = {query["rrset_name"] for _, query in gets}
    # the owned names and those above them (a DNAME there redirects them), once each
    assert {"mail._domainkey.example.test.", "_domainkey.example.test.", "example.test.",
            "_imaps._tcp.example.test.", "_tcp.example.test."} <= asked
    assert len(gets) == len(asked) + 1  # and the zone's SOA when the client is set up
    assert sync.provider.calls["read"] == len(gets)


def test_disabled_records_are_not_read_and_kept_as_they_are_by_writes(powerdns_world):
    """PowerDNS's rrset_name answer leaves disabled records out: the plan reads what is
    served, and lexicon's writes (which replace the RRset) put them back, still disabled."""
    server = powerdns_world.server
    disabled = {"name": "example.test.", "type": "MX", "ttl": 3600, "changetype": "REPLACE",
                "records": [{"content": "30 mx.old.example.", "disabled": True}],
                "comments": [{"content": "the old MX, kept off", "account": "admin"}]}
    dmarc = {**disabled, "name": "_dmarc.example.test.", "type": "TXT",
             "records": [{"content": '"v=DMARC1; p=reject"', "disabled": True}],
             "comments": []}
    server.api("PATCH", "/servers/localhost/zones/example.test.",
               {"rrsets": [disabled, dmarc]})
    sync = zone_sync(powerdns_world)
    plan = sync.plan()
    assert {(c.action, c.rtype, c.name) for c in plan.changes} >= {
        ("create", "MX", "example.test"), ("create", "TXT", "_dmarc.example.test")}
    sync.apply(plan)
    rrsets = {(r["name"], r["type"]): r for r in server.zone("example.test")["rrsets"]}
    mx = rrsets["example.test.", "MX"]
    assert {"content": "30 mx.old.example.", "disabled": True} in mx["records"]
    assert [c["content"] for c in mx["comments"]] == ["the old MX, kept off"]
    assert any(not r["disabled"] for r in mx["records"])  # ours, served
    assert {"content": '"v=DMARC1; p=reject"', "disabled": True} in \
        rrsets["_dmarc.example.test.", "TXT"]["records"]
    again = zone_sync(powerdns_world)
    before = powerdns_world.server_writes()
    assert again.plan().empty and again.provider.calls["write"] == 0
    assert powerdns_world.server_writes() == before


def test_a_comment_elsewhere_in_the_zone_is_not_taken_for_an_rrset(powerdns_world):
    """PowerDNS 4.7 answers rrset_name with an empty RRset (TTL 0) for every comment of the
    zone: had lexicon's create_record met that one first, the TXT set it replaces would have
    lost the site verification."""
    powerdns_world.server.api("PATCH", "/servers/localhost/zones/example.test.", {"rrsets": [
        {"name": "example.test.", "type": "TXT", "ttl": 600, "changetype": "REPLACE",
         "records": [{"content": '"site-verification=abc"', "disabled": False}],
         "comments": [{"content": "theirs", "account": "admin"}]}]})
    provider = powerdns_world.provider()
    assert provider.read("example.test", [("mail.example.test", "A")]) == []
    converge = zone_sync(powerdns_world)
    converge.apply(converge.plan())
    assert ("example.test.", "TXT", 600, '"site-verification=abc"') in powerdns_world.raw()
    assert any(row[:3] == ("example.test.", "TXT", 600) and row[3].startswith('"v=spf1 ')
               for row in powerdns_world.raw())


def test_the_safety_check_counts_the_whole_powerdns_zone(powerdns_world):
    powerdns_world.clutter()
    provider = powerdns_world.provider()
    provider.read("example.test", [("mail.example.test", "A")])
    assert provider.count_records("example.test") == len(powerdns_world.raw()) + 1  # SOA
