"""The powerdns world: ``MAILHOST_LAB_PROVIDER=powerdns scripts/lab up`` makes PowerDNS
Authoritative (sqlite3) the primary of the mail zones, Knot their signing secondary (what the
VPS, the receiver and Pebble ask), and inventory/lab.py writes the records through dns-lexicon's
powerdns provider to PowerDNS's HTTP API.

One lab, in order (the module's fixture): foreign TXT, MX and CAA and a CNAME at ``mail`` put
in PowerDNS; the deploy stops on the CNAME with one line, the zone unchanged; the CNAME gone,
the deploy (the foreign MX kept with mx_keep) converges, every check ok; a message arrives at
the receiver with dkim, spf and dmarc pass; DANE's TLSA written through lexicon, served signed
by Knot; the certificate came by DNS-01 through the same
provider (certbot's manual hook with Ubuntu's python3-lexicon); a second deploy changes no
record and PowerDNS takes no write (its serial, which the API increases on every change, stays).

Run alone: .venv/bin/python -m pytest tests/test_powerdns_lab.py (MAILHOST_LAB_LANE: the lane)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import dns.message
import dns.query
import pytest
from lab_world import HOSTNAME, ROOT, VPS4, pyinfra, ssh, tls_context
from secrecy import leaked

from lab.powerdns import api, replace_rrset
from lab.receiver import wait_for_message
from mailhost.keys.rotation import from_json

pytestmark = pytest.mark.lab

# DNS-01: certbot's manual hook on the VPS writes the challenge through lexicon to PowerDNS
WORLD = ("ubuntu-24.04", "postfix", "powerdns", "dns-01")
ZONE = "example.test"
FOREIGN = [("TXT", '"google-site-verification=pdns-lab"'), ("MX", "20 mx.oldprovider.example."),
           ("CAA", '0 issue "sectigo.com"')]
KEEP_MX = ["--data", 'mx_keep=["20 mx.oldprovider.example"]']


def lab(*args: str) -> subprocess.CompletedProcess:
    """``scripts/lab ARGS`` in this lane, in the powerdns world."""
    return subprocess.run([str(ROOT / "scripts" / "lab"), *args], cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, MAILHOST_LAB_PROVIDER="powerdns"))


class PowerDns:
    """The lab's PowerDNS through its API, with the key from the lab's secrets."""

    def __init__(self, status: dict):
        self.url = status["powerdns"]["api_url"]
        self.key = tomllib.loads(Path(status["secrets_file"]).read_text())["powerdns_api_key"]

    def zone(self) -> dict:
        return api(self.url, self.key, "GET", f"/servers/localhost/zones/{ZONE}.")

    def contents(self, name: str, rtype: str) -> list[str]:
        return [r["content"] for s in self.zone()["rrsets"]
                if s["name"] == name + "." and s["type"] == rtype for r in s["records"]]

    def put(self, name: str, rtype: str, contents: list[str], ttl: int = 3600) -> None:
        replace_rrset(self.url, self.key, ZONE, name, rtype, ttl, contents)


def signing_record(status: dict) -> str:
    """The DKIM record the host signs with: the lane's controller keeps its keys and their
    rotation across worlds (after tests/test_mail_lab.py's rotation in this lane, the signing
    selector is mail-YYYYMMDD, and mail._domainkey is gone)."""
    state = Path(status["secrets_dir"]) / "dkim" / ZONE / "rotation.json"
    selector = from_json(state.read_text())[0].signing if state.exists() else "mail"
    return f"{selector}._domainkey.{ZONE}"


def deploy(*args: str) -> tuple[int, str]:
    return pyinfra(WORLD, "-y", *args)


@pytest.fixture(scope="module")
def powerdns_lab():
    subprocess.run([str(ROOT / "scripts" / "lab"), "down"], cwd=ROOT, capture_output=True,
                   timeout=900)
    lab("up")
    try:
        status = json.loads(lab("status", "--json").stdout)
        pdns = PowerDns(status)
        for rtype, content in FOREIGN:
            pdns.put(ZONE, rtype, [content])
        pdns.put(f"mail.{ZONE}", "CNAME", ["ghs.hosting.example."])
        run = {"status": status, "pdns": pdns, "foreign": {t: pdns.contents(ZONE, t)
                                                           for t, _ in FOREIGN}}
        before = pdns.zone()
        run["refused"] = deploy(*KEEP_MX)
        run["zone_unchanged"] = pdns.zone() == before  # serial included
        pdns.put(f"mail.{ZONE}", "CNAME", [])
        run["first"] = deploy(*KEEP_MX)
        run["dkim_record"] = signing_record(status)
        run["kept"] = {t: pdns.contents(ZONE, t) for t, _ in FOREIGN}
        serial = pdns.zone()["serial"]
        run["second"] = deploy(*KEEP_MX)
        run["serials"] = (serial, pdns.zone()["serial"])
        yield run
    finally:
        subprocess.run([str(ROOT / "scripts" / "lab"), "down"], cwd=ROOT, capture_output=True,
                       timeout=900)


def test_a_cname_at_mail_stops_the_run_with_one_line_and_the_zone_unchanged(powerdns_lab):
    code, output = powerdns_lab["refused"]
    assert code != 0
    assert "Traceback" not in output
    conflicts = [" ".join(line.split()) for line in output.splitlines() if "! CONFLICT" in line]
    assert len(conflicts) == 1 and conflicts[0].startswith(
        "! CONFLICT CNAME mail.example.test -> ghs.hosting.example: no other record can sit "
        "beside a CNAME"), output[-3000:]
    stopped = [line for line in output.splitlines() if "nothing was written" in line]
    assert stopped and "CNAME mail.example.test" in stopped[0], output[-3000:]
    assert powerdns_lab["zone_unchanged"]


def test_the_deploy_through_lexicon_converges_with_every_check_ok(powerdns_lab):
    code, output = powerdns_lab["first"]
    assert code == 0, output[-4000:]
    assert f"CREATE  TXT   {powerdns_lab['dkim_record']}" in output, output[-4000:]
    summary = re.search(r"\[mail\.example\.test\] (\d+) ok(.*)", output)
    assert summary and summary.group(2).strip() == "", output[-3000:]


def test_foreign_txt_mx_and_caa_are_kept_byte_for_byte(powerdns_lab):
    kept, before = powerdns_lab["kept"], powerdns_lab["foreign"]
    for rtype, content in FOREIGN:
        assert before[rtype] == [content]
        assert content in kept[rtype], (rtype, kept[rtype])
    assert '0 issue "acme.lab.test"' in kept["CAA"] and "10 mail.example.test." in kept["MX"]


def test_the_zone_is_served_by_knot_as_powerdns_holds_it(powerdns_lab):
    status, pdns = powerdns_lab["status"], powerdns_lab["pdns"]
    query = dns.message.make_query(f"mail.{ZONE}.", "A", want_dnssec=True)
    answer = dns.query.tcp(query, status["dns"]["server"], port=status["dns"]["port"],
                           timeout=5)
    assert [r.address for r in answer.answer[0]] == pdns.contents(f"mail.{ZONE}", "A") == [VPS4]
    assert any(rrset.rdtype == 46 for rrset in answer.answer)  # RRSIG: Knot signs it


def test_dane_tlsa_goes_through_lexicon_and_is_served_signed(powerdns_lab):
    """lexicon cannot say whether a zone is signed: the zone's name servers (Knot, signing
    PowerDNS's zone as its secondary) were asked; the TLSA is in PowerDNS, Knot serves it
    signed, and the DANE operation waited for that before the checks (every check ok)."""
    status, pdns = powerdns_lab["status"], powerdns_lab["pdns"]
    name = f"_25._tcp.mail.{ZONE}"
    (content,) = pdns.contents(name, "TLSA")
    assert content.startswith("3 1 1 ")
    assert f"CREATE  TLSA  {name}" in powerdns_lab["first"][1]
    query = dns.message.make_query(f"{name}.", "TLSA", want_dnssec=True)
    answer = dns.query.tcp(query, status["dns"]["server"], port=status["dns"]["port"],
                           timeout=5)
    assert {rrset.rdtype for rrset in answer.answer} == {52, 46}  # TLSA and its RRSIG
    assert [r.to_text() for rrset in answer.answer if rrset.rdtype == 52 for r in rrset] == [
        content]


def test_mail_passes_dkim_spf_dmarc_at_the_receiver(powerdns_lab):
    import smtplib
    import time

    status = powerdns_lab["status"]
    passwords = tomllib.loads(Path(status["secrets_file"]).read_text())["passwords"]
    message_id = f"<{time.time_ns()}@example.test>"
    client = smtplib.SMTP(VPS4, 587, timeout=30)
    client._host = HOSTNAME
    with client:
        client.starttls(context=tls_context(status))
        client.login("alice@example.test", passwords["alice@example.test"])
        client.sendmail("alice@example.test", ["inbox@example.net"],
                        f"From: alice@example.test\r\nTo: inbox@example.net\r\nSubject: pdns"
                        f"\r\nMessage-ID: {message_id}\r\n\r\nthrough PowerDNS\r\n")
    message = wait_for_message(status["receiver"]["messages_dir"],
                               lambda m: message_id in m.message.get("Message-ID", ""),
                               timeout=60)
    assert [message.verdicts[k] for k in ("dkim", "spf", "dmarc")] == ["pass"] * 3


def test_a_second_run_changes_nothing_and_powerdns_takes_no_write(powerdns_lab):
    code, output = powerdns_lab["second"]
    assert code == 0, output[-4000:]
    assert "= example.test: no DNS changes" in output
    assert "CREATE" not in output and "MODIFY" not in output and "DELETE" not in output
    before, after = powerdns_lab["serials"]
    assert after == before


def test_status_names_the_api_and_no_output_holds_the_key(powerdns_lab):
    status, pdns = powerdns_lab["status"], powerdns_lab["pdns"]
    assert status["dns_world"] == "powerdns" and status["powerdns"]["serving"]
    assert status["powerdns"]["api_url"] == pdns.url
    outputs = [powerdns_lab[k][1] for k in ("refused", "first", "second")]
    assert leaked({"PowerDNS API key": pdns.key}, json.dumps(status), *outputs) == []
    assert pdns.key not in ssh("journalctl -q --no-pager 2>/dev/null | tail -2000; "
                               "cat /var/log/letsencrypt/letsencrypt.log 2>/dev/null")


def test_the_certificate_came_by_dns_01_through_lexicon(powerdns_lab):
    renewal = ssh(f"cat /etc/letsencrypt/renewal/{HOSTNAME}.conf")
    assert "authenticator = manual" in renewal, renewal
    assert "manual_auth_hook = /etc/mailhost/acme/lexicon-hook auth" in renewal
    assert ssh("stat -c %a /etc/mailhost/acme/dns-credentials.ini").strip() == "600"
    assert ssh("dpkg-query -W -f '${Status}' python3-lexicon") == "install ok installed"
    rrsets = powerdns_lab["pdns"].zone()["rrsets"]
    assert not [r["name"] for r in rrsets if r["name"].startswith("_acme-challenge.")]
    assert "fail " not in powerdns_lab["first"][1]
