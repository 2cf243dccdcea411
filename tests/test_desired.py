"""Desired records: pure functions of the settings and the DKIM public keys."""

from __future__ import annotations

import base64

import pytest
from sample import sample_settings

from mailhost.dns.mta_sts import policy_of, txt_record
from mailhost.dns.records import RecordSet, quote_txt, split_txt, unquote_txt
from mailhost.keys.dkim import DKIM_PENDING, DkimPublicKeys, generate_key, public_value
from mailhost.settings import SettingsError
from mailhost.settings.fleet import fleet_view
from mailhost.zones.desired import MailHost, desired_by_zone
from mailhost.zones.plan import Ownership, compute_plan

RSA = public_value(generate_key("rsa", 2048))


def records_of(*hosts):
    zones = desired_by_zone(list(hosts))
    return {(r.name, r.rtype): r for z in zones for r in z.desired}, zones


def host(settings, ed25519=None):
    return MailHost(settings, {d: DkimPublicKeys(RSA, ed25519) for d in settings.mail_domains})


def test_one_domain_gets_the_full_set():
    records, zones = records_of(host(sample_settings()))
    assert [z.zone for z in zones] == ["example.test"]
    assert records["mail.example.test", "A"].values == ("198.51.100.10",)
    assert records["mail.example.test", "AAAA"].values == ("2001:db8::10",)
    assert records["mail.example.test", "A"].proxied is False
    assert records["example.test", "MX"].values == ("10 mail.example.test",)
    assert records["example.test", "TXT"].values == (
        "v=spf1 ip4:198.51.100.10 ip6:2001:db8::10 ~all",
    )
    assert records["mail._domainkey.example.test", "TXT"].values == (f"v=DKIM1; k=rsa; p={RSA}",)
    assert records["_dmarc.example.test", "TXT"].values == (
        "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.test",
    )
    assert records["_smtp._tls.example.test", "TXT"].values == (
        "v=TLSRPTv1; rua=mailto:tlsrpt@example.test",
    )
    assert records["example.test", "CAA"].values == ('0 issue "letsencrypt.org"',
                                                     '0 issuewild ";"')
    assert all(r.ttl == 3600 for r in records.values())


def test_policy_settings_reach_the_records():
    settings = sample_settings(
        spf_all="-all", spf_include=["_spf.provider.example"], ipv6=None,
        dmarc_policy="reject", dmarc_pct=50, dmarc_adkim="s", dmarc_aspf="s",
        dmarc_ruf=["mailto:ruf@example.test"], dmarc_subdomain_policy="none",
        caa_iodef="mailto:security@example.test", dns_ttl=300, dkim_selector="s2026",
    )
    records, _ = records_of(host(settings))
    assert ("mail.example.test", "AAAA") not in records
    assert records["example.test", "TXT"].values == (
        "v=spf1 ip4:198.51.100.10 include:_spf.provider.example -all",
    )
    assert records["_dmarc.example.test", "TXT"].values == (
        "v=DMARC1; p=reject; sp=none; pct=50; rua=mailto:dmarc@example.test; "
        "ruf=mailto:ruf@example.test; adkim=s; aspf=s",
    )
    assert '0 iodef "mailto:security@example.test"' in records["example.test", "CAA"].values
    assert ("s2026._domainkey.example.test", "TXT") in records
    assert {r.ttl for r in records.values()} == {300}


def test_ed25519_is_a_second_selector():
    settings = sample_settings(dkim_ed25519=True)
    raw = base64.b64encode(b"k" * 32).decode()
    records, _ = records_of(host(settings, ed25519=raw))
    assert records["mail-ed25519._domainkey.example.test", "TXT"].values == (
        f"v=DKIM1; k=ed25519; p={raw}",
    )
    assert ("mail._domainkey.example.test", "TXT") in records


def test_several_domains_each_get_their_own_set_and_zone():
    settings = sample_settings(mail_domains=["example.test", "example.org"],
                               dns_zones=["example.test", "example.org"])
    records, zones = records_of(host(settings))
    assert [z.zone for z in zones] == ["example.org", "example.test"]
    for domain in ("example.test", "example.org"):
        assert records[domain, "MX"].values == ("10 mail.example.test",)
        assert (f"mail._domainkey.{domain}", "TXT") in records
        assert (f"_dmarc.{domain}", "TXT") in records
    org = next(z for z in zones if z.zone == "example.org")
    assert all(r.name.endswith("example.org") for r in org.desired)
    assert org.ownership.shared_txt == frozenset({"example.org"})


def test_two_hosts_serving_one_domain_share_mx_and_spf():
    first = sample_settings()
    second = sample_settings(mail_hostname="mx2.example.test", ipv4="198.51.100.11",
                             ipv6="2001:db8::11")
    records, _ = records_of(host(first), host(second))
    assert records["example.test", "MX"].values == ("10 mail.example.test", "10 mx2.example.test")
    assert records["example.test", "TXT"].values == (
        "v=spf1 ip4:198.51.100.10 ip4:198.51.100.11 ip6:2001:db8::10 ip6:2001:db8::11 ~all",
    )
    assert records["mx2.example.test", "A"].values == ("198.51.100.11",)


def test_a_backup_mx_is_below_the_mail_host_in_mx_and_named_in_the_mta_sts_policy():
    primary = sample_settings(mta_sts_mode="enforce")
    backup = sample_settings(mail_hostname="mx2.example.test", ipv4="198.51.100.11",
                             ipv6="2001:db8::11", mail_domains=[], mail_users=[],
                             mail_aliases={}, backup_mx_for=["example.test"])
    records, _ = records_of(host(primary), host(backup))
    assert records["example.test", "MX"].values == ("10 mail.example.test", "20 mx2.example.test")
    # SPF names who sends as the domain: the backup only holds incoming mail
    assert "198.51.100.11" not in records["example.test", "TXT"].values[0]
    fleet = {"a": primary, "b": backup}
    policy = policy_of(primary, fleet_view(fleet, "a").mx)["example.test"]
    assert "mx: mail.example.test\r\nmx: mx2.example.test\r\n" in policy
    assert records["_mta-sts.example.test", "TXT"].values == (txt_record(policy),)
    # the policy is served by the mail host: its name points there only
    assert records["mta-sts.example.test", "A"].values == ("198.51.100.10",)
    assert policy_of(backup, fleet_view(fleet, "b").mx) == {}


def test_pending_dkim_key_shows_as_placeholder():
    settings = sample_settings()
    records, _ = records_of(MailHost(settings, {"example.test": DkimPublicKeys(None)}))
    assert DKIM_PENDING in records["mail._domainkey.example.test", "TXT"].values[0]


def test_ownership_covers_host_addresses_and_only_spf_at_the_apex():
    _, zones = records_of(host(sample_settings(ipv6=None)))
    ownership = zones[0].ownership
    assert ("mail.example.test", "AAAA") in ownership.keys  # so a removed IPv6 is deleted
    assert ("example.test", "CNAME") not in ownership.keys
    apex = RecordSet("example.test", "TXT", 300, ("v=spf1 -all", "google-site-verification=x"))
    plan = compute_plan(zones[0].zone, zones[0].desired, [apex], ownership)
    (txt,) = [c for c in plan.changes if (c.name, c.rtype) == ("example.test", "TXT")]
    assert txt.old.values == ("v=spf1 -all",)
    assert txt.removed_values == ("v=spf1 -all",)


def test_plan_deletes_our_stale_aaaa_but_not_foreign_txt():
    _, zones = records_of(host(sample_settings(ipv6=None)))
    zone = zones[0]
    found = [
        RecordSet("mail.example.test", "AAAA", 3600, ("2001:db8::99",)),
        RecordSet("example.test", "TXT", 3600, ("keybase-site-verification=abc",)),
        RecordSet("www.example.test", "CNAME", 3600, ("example.test",)),
    ]
    plan = compute_plan(zone.zone, zone.desired, found, zone.ownership)
    actions = {(c.action, c.name, c.rtype) for c in plan.changes}
    assert ("delete", "mail.example.test", "AAAA") in actions
    assert ("create", "example.test", "TXT") in actions
    assert not any(c.rtype == "CNAME" for c in plan.changes)


def test_txt_over_255_bytes_is_split_and_joined_back():
    long_value = "v=DKIM1; k=rsa; p=" + public_value(generate_key("rsa", 4096))
    parts = split_txt(long_value)
    assert len(parts) > 2 and all(len(p.encode()) <= 255 for p in parts)
    assert "".join(parts) == long_value
    assert unquote_txt(quote_txt(long_value)) == long_value
    assert unquote_txt('"a\\"b" "c"') == 'a"bc'


def test_plan_lines_read_like_dnscontrol():
    ownership = Ownership(frozenset({("_dmarc.example.test", "TXT"), ("example.test", "MX")}),
                          written=frozenset({("_dmarc.example.test", "TXT",
                                              ("v=DMARC1; p=none",))}))  # ours, last run
    found = [RecordSet("_dmarc.example.test", "TXT", 3600, ("v=DMARC1; p=none",))]
    desired = [
        RecordSet("_dmarc.example.test", "TXT", 3600, ("v=DMARC1; p=quarantine",)),
        RecordSet("example.test", "MX", 3600, ("10 mail.example.test",)),
    ]
    lines = compute_plan("example.test", desired, found, ownership).lines()
    assert lines[1].split() == "+ CREATE MX example.test 10 mail.example.test ttl 3600".split()
    assert lines[2].split() == ('± MODIFY TXT _dmarc.example.test "v=DMARC1; p=none" ttl 3600 '
                                '-> "v=DMARC1; p=quarantine" ttl 3600').split()
    assert compute_plan("example.test", desired, desired, ownership).lines() == [
        "= example.test: no DNS changes"
    ]


def test_mx_keep_is_validated_and_owned_per_mail_domain():
    settings = sample_settings(mx_keep=["20 Backup-MX.Example.NET."])
    assert settings.mx_keep == ["20 backup-mx.example.net"]
    _, zones = records_of(host(settings))
    assert zones[0].ownership.mx_keep == {("example.test", "20 backup-mx.example.net")}
    with pytest.raises(SettingsError, match=r"^settings: mx_keep\[0\] = 'backup.example.net': "
                                            r"expected 'PRIORITY HOST'"):
        sample_settings(mx_keep=["backup.example.net"])


def plan_with(found, **overrides):
    _, zones = records_of(host(sample_settings(**overrides)))
    zone = zones[0]
    return compute_plan(zone.zone, zone.desired, found, zone.ownership)


def test_spf_terms_compare_without_qualifiers():
    ours = "v=spf1 ip4:198.51.100.10 ip6:2001:db8::10 -all"
    plan = plan_with([RecordSet("example.test", "TXT", 300, (ours,))])
    assert plan.conflicts == []  # only the all qualifier differs: ours to rewrite
    plan = plan_with([RecordSet("example.test", "TXT", 300, (ours.replace("-all", "+mx -all"),))])
    assert [c.text.split(";")[0] for c in plan.conflicts] == [
        f'SPF "{ours.replace("-all", "+mx -all")}" has terms that are not ours: +mx']


def test_caa_keeps_other_cas_and_drops_the_wildcard_ban_only_beside_them():
    plan = plan_with([RecordSet("example.test", "CAA", 300, ('0 iodef "mailto:x@example.test"',))])
    (caa,) = [c for c in plan.changes if c.rtype == "CAA"]
    assert caa.new.values == ('0 issue "letsencrypt.org"', '0 issuewild ";"')
    assert caa.removed_values == ()
    plan = plan_with([RecordSet("example.test", "CAA", 300, ('0 issuewild "sectigo.com"',))])
    (caa,) = [c for c in plan.changes if c.rtype == "CAA"]
    assert caa.new.values == ('0 issue "letsencrypt.org"',)
    assert caa.expected_values() == {'0 issue "letsencrypt.org"', '0 issuewild "sectigo.com"'}


def test_srv_records_tell_mail_clients_where_each_service_is():
    records, zones = records_of(host(sample_settings()))
    srv = {name: r.values for (name, rtype), r in records.items() if rtype == "SRV"}
    assert srv == {"_submissions._tcp.example.test": ("0 1 465 mail.example.test",),
                   "_submission._tcp.example.test": ("0 1 587 mail.example.test",),
                   "_imaps._tcp.example.test": ("0 1 993 mail.example.test",),
                   "_imap._tcp.example.test": ("0 0 0 .",),  # 143 not offered
                   "_pop3._tcp.example.test": ("0 0 0 .",),
                   "_sieve._tcp.example.test": ("0 1 4190 mail.example.test",)}
    assert all(("_imap._tcp.example.test", "SRV") in z.ownership.keys for z in zones)
    opened, _ = records_of(host(sample_settings(imap_starttls=True)))
    assert opened["_imap._tcp.example.test", "SRV"].values == ("0 1 143 mail.example.test",)
    second = sample_settings(mail_hostname="mx2.example.test", ipv4="198.51.100.11")
    both, _ = records_of(host(sample_settings()), host(second))
    assert both["_imaps._tcp.example.test", "SRV"].values == (
        "0 1 993 mail.example.test", "0 1 993 mx2.example.test")


def test_srv_values_are_normalized_and_the_root_target_kept():
    record = RecordSet("_imap._tcp.Example.test.", "srv", 60, ("00 0 0 .", "0 1 993 MAIL.x.test."))
    assert record.values == ("0 0 0 .", "0 1 993 mail.x.test")
