"""One run's inventory: every host's settings validated once, and checked against each other."""

from __future__ import annotations

import pytest
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.inventory import Inventory
from sample import BASE

from mailhost.run import MailRun


def inventory(*hosts: dict) -> Inventory:
    return Inventory(([(f"vps{i}", data) for i, data in enumerate(hosts, 1)], {}))


@pytest.fixture
def first(monkeypatch, tmp_path) -> dict:
    monkeypatch.setenv("MAILHOST_TSIG_SECRET", "c2VjcmV0IG9mIHRoZSBsYWI=")
    return dict(BASE, secrets_file=str(tmp_path / "none.toml"), secrets_dir=str(tmp_path))


def test_two_hosts_of_their_own_load(first):
    second = {**first, "mail_hostname": "mx2.example.test", "ipv4": "198.51.100.11",
              "ipv6": "2001:db8::11"}
    run = MailRun.load(inventory(first, second))
    assert [s.mail_hostname for s in run.settings.values()] == ["mail.example.test",
                                                                "mx2.example.test"]


@pytest.mark.parametrize("second, key, value", [
    ({"ipv4": "198.51.100.11", "ipv6": "2001:db8::11"}, "mail_hostname", "mail.example.test"),
    ({"mail_hostname": "mx2.example.test", "ipv6": "2001:db8::11"}, "ipv4", "198.51.100.10"),
    ({"mail_hostname": "mx2.example.test", "ipv4": "198.51.100.11"}, "ipv6", "2001:db8::10")])
def test_two_hosts_with_one_name_or_address_are_refused_in_one_line(first, second, key, value):
    """One VPS listed twice, or a host block copied and half edited."""
    with pytest.raises(PyinfraError) as raised:
        MailRun.load(inventory(first, {**first, **second}))
    assert str(raised.value) == (f"vps2: settings: {key} = '{value}': expected one of its own; "
                                 "host vps1 of the inventory has it too")


@pytest.mark.parametrize("mode, refused", [("enforce", True), ("testing", True),
                                           ("none", False), ("off", False)])
def test_mta_sts_on_a_domain_served_by_two_hosts_is_refused_until_supported(first, mode, refused):
    """Each host would serve a policy naming itself only: a sender enforcing the first host's
    would refuse the second (a backup MX)."""
    second = {**first, "mail_hostname": "mx2.example.test", "ipv4": "198.51.100.11",
              "ipv6": "2001:db8::11", "mta_sts_mode": mode}
    if not refused:
        MailRun.load(inventory(first, second))
        return
    with pytest.raises(PyinfraError) as raised:
        MailRun.load(inventory(first, second))
    assert str(raised.value) == (
        f"vps2: settings: mta_sts_mode = '{mode}': expected 'off' or 'none' while example.test "
        "is served by several hosts (vps1, vps2): MTA-STS with several MX hosts is not "
        "supported yet")


def test_both_syncs_of_a_zone_share_its_provider_settings_and_memory(first):
    """The TLSA after certbot is written by its own sync: the same memory (what this
    controller wrote), so neither takes the other's records for somebody else's."""
    import base64
    from pathlib import Path

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    spki = base64.b64encode(key).decode()
    run = MailRun.load(inventory(first))
    read = lambda host, path: spki if "letsencrypt" in path else None  # noqa: E731
    tlsa, zone = run.tlsa_sync("example.test", read), run.zone_sync("example.test", read)
    assert tlsa.memory == zone.memory == Path(first["secrets_dir"]) / "dns" / "example.test"
    assert [r.rtype for r in tlsa.records.desired] == ["TLSA"]
    assert type(tlsa.provider) is type(zone.provider) and tlsa.force is zone.force is False


def test_the_run_is_loaded_once_and_kept_on_pyinfras_state(monkeypatch):
    """Every host's deploy.py asks for the run: the first loads it, the others get the same
    one, kept by pyinfra's state (no module of ours keeps it); another pyinfra run loads its
    own."""
    from types import SimpleNamespace

    from mailhost.run import current_run

    loads = []
    monkeypatch.setattr(MailRun, "load", classmethod(lambda cls, inventory: loads.append(
        inventory) or MailRun({}, {})))
    first = SimpleNamespace(state=SimpleNamespace())
    run = current_run(first)
    assert current_run(first) is run and first.state.mailhost_run is run and len(loads) == 1
    assert current_run(SimpleNamespace(state=SimpleNamespace())) is not run
    assert len(loads) == 2
