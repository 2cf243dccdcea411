"""MTA-STS's policy text, its id and its records (mailhost.mta_sts, desired); the web server
that serves the policy is not built yet, so nothing here fetches it."""

from __future__ import annotations

import pytest
from sample import sample_settings

from mailhost.desired import MailHost, desired_by_zone
from mailhost.dkim import DkimPublicKeys, generate_key, public_value
from mailhost.dnssync import ZoneSync
from mailhost.mta_sts import policy_id, policy_text
from mailhost.settings import SettingsError

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


def test_a_policy_change_is_one_txt_change_and_off_leaves_them(world):
    first = ZoneSync(zone(mta_sts_mode="testing"), world.provider())
    first.apply(first.plan())
    assert ZoneSync(zone(mta_sts_mode="testing"), world.provider()).plan().empty
    changed = ZoneSync(zone(mta_sts_mode="enforce"), world.provider())
    plan = changed.plan()
    assert [(c.action, c.rtype, c.name) for c in plan.changes] == [
        ("modify", "TXT", "_mta-sts.example.test")]
    changed.apply(plan)
    before = world.snapshot()
    assert ZoneSync(zone(), world.provider()).plan().empty  # "off": not ours to touch
    assert world.snapshot() == before
