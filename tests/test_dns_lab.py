"""The DNS part in the lab, on a zone cluttered as real domains are (lab.worlds
CLUTTER): the deploy refuses it with one line per conflict and leaves the zone as it was; with
the newsletter's include adopted (spf_include) and the old MX kept (mx_keep) it converges,
every foreign record untouched, and a second run changes nothing.

Run alone: .venv/bin/python -m pytest tests/test_dns_lab.py (MAILHOST_LAB_LANE picks the lane)
"""

from __future__ import annotations

import json
import tomllib
import urllib.request
from pathlib import Path

import dns.name
import dns.query
import dns.rdatatype
import dns.tsig
import dns.update
import pytest
from lab_world import VPS4, VPS6, lab, pyinfra
from secrecy import leaked

from lab.common import CLOUDFLARE_PORT, HOST4
from lab.worlds import api_body, clutter_records
from mailhost.dns.records import normalize_name
from mailhost.zones.providers.rfc2136 import DNSSEC_TYPES, canonical, value_rdata

pytestmark = pytest.mark.lab

ZONE = "example.test"
# the newsletter sender's SPF must resolve in the lab (the checks count its lookups): it
# lives in the receiver's zone, example.net
NEWSLETTER_SPF = ("spf.mailer.example.net", "TXT", "v=spf1 ip4:198.51.100.60 -all")
THEIR_SPF = "v=spf1 include:spf.mailer.example.net -all"
ADOPT = ["--data", 'spf_include=["spf.mailer.example.net"]',
         "--data", 'mx_keep=["20 mx.oldprovider.example"]']


def deploy(provider: str, *args):
    """pyinfra with PROVIDER (Postfix): exit status, output."""
    return pyinfra(("ubuntu-24.04", "postfix", provider, "http-01"), "-y", *args)


class LabDns:
    """The lab's Knot, reached with the lab's TSIG key."""

    def __init__(self, status: dict):
        secrets = tomllib.loads(Path(status["secrets_file"]).read_text())
        name = status["dns"]["tsig_key_name"]
        self.keyring = {dns.name.from_text(name): dns.tsig.Key(name, secrets["tsig_secret"])}
        self.server = status["dns"]["server"]
        self.secret = secrets["tsig_secret"]

    def add(self, zone: str, rows) -> None:
        update = dns.update.UpdateMessage(zone + ".", keyring=self.keyring)
        for name, rtype, value, ttl in rows:
            update.add(name + ".", ttl, value_rdata(rtype, value))
        assert dns.query.tcp(update, self.server, timeout=5).rcode() == 0

    def transfer(self, zone: str):
        return [rrset for message in dns.query.xfr(self.server, zone, keyring=self.keyring,
                                                   relativize=False, timeout=10)
                for rrset in message.answer]

    def zone_text(self, zone: str) -> str:
        return "\n".join(rrset.to_text() for rrset in self.transfer(zone))

    def rows(self, zone: str) -> set:
        """Every record of the zone but its SOA and what the signer adds (the lab signs
        example.test: RRSIG, NSEC... change with every update, nobody wrote them)."""
        return {(normalize_name(rrset.name.to_text()), rtype, rrset.ttl, canonical(rtype, rdata))
                for rrset in self.transfer(zone)
                if rrset.rdtype not in DNSSEC_TYPES
                if (rtype := dns.rdatatype.to_text(rrset.rdtype)) != "SOA"
                for rdata in rrset}


@pytest.fixture
def lab_dns():
    """A fresh lab for each test (run under the lab lock), down afterwards."""
    lab("up")
    try:
        status = json.loads(lab("status", "--json").stdout)
        yield LabDns(status)
    finally:
        lab("down")


def cluttered_rows():
    return [(n, t, THEIR_SPF if v.startswith("v=spf1 include:") else v, ttl)
            for n, t, v, ttl in clutter_records(ZONE)]


def clutter_through_the_emulator(rows) -> None:
    """Records added through the lab emulator's seeding endpoint: written through to Knot."""
    for name, rtype, value, ttl in rows:
        fields = api_body(name, rtype, value, ttl)
        fields["type"] = fields.pop("rtype")
        request = urllib.request.Request(
            f"http://{HOST4}:{CLOUDFLARE_PORT}/__emulator/records", method="POST",
            data=json.dumps({"zone": ZONE, **fields}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200


@pytest.mark.parametrize("provider", ["rfc2136", "cloudflare"])
def test_a_cluttered_lab_zone_is_refused_then_adopted_then_quiet(lab_dns, provider):
    lab_dns.add("example.net", [(*NEWSLETTER_SPF, 300)])
    if provider == "cloudflare":
        clutter_through_the_emulator(cluttered_rows())
    else:
        lab_dns.add(ZONE, cluttered_rows())
    foreign = lab_dns.rows(ZONE)
    before = lab_dns.zone_text(ZONE)

    code, output = deploy(provider)
    assert code != 0, output[-3000:]
    assert "Traceback" not in output
    assert leaked({"TSIG secret": lab_dns.secret}, output) == []
    conflicts = [line.strip() for line in output.splitlines() if "! CONFLICT" in line]
    assert any("MX    example.test" in c and "20 mx.oldprovider.example is not one of our "
               "mail hosts: list it in mx_keep" in c for c in conflicts), output[-3000:]
    assert any("TXT   example.test" in c and "include:spf.mailer.example.net; add "
               "spf.mailer.example.net to spf_include" in c for c in conflicts), output[-3000:]
    assert lab_dns.zone_text(ZONE) == before  # byte for byte, SOA serial included

    code, output = deploy(provider, *ADOPT)
    assert code == 0, output[-4000:]
    after = lab_dns.rows(ZONE)
    replaced = (ZONE, "TXT", 3600, THEIR_SPF)
    assert foreign - {replaced} <= after  # every other foreign record, TTL included
    apex = {(t, ttl, v) for n, t, ttl, v in after if n == ZONE}
    assert ("TXT", 3600, f"v=spf1 ip4:{VPS4} ip6:{VPS6} "
            "include:spf.mailer.example.net ~all") in apex
    assert {v for t, _ttl, v in apex if t == "CAA"} == {
        '0 issue "sectigo.com"', '0 issue "acme.lab.test"'}
    assert (f"mail.{ZONE}", "A", 300, VPS4) in after

    code, output = deploy(provider, *ADOPT)
    assert code == 0, output[-4000:]
    total = [line for line in output.splitlines() if "Grand total" in line][0].split()
    assert total[3] == "-" and total[4] == "-", total  # no change, no error
