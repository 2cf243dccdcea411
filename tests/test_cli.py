"""The CLI path: `pyinfra INVENTORY deploy.py` against a real Knot, with pyinfra's @local
connector standing in for the host (mail_manage_host = False: only the DNS part runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from secrecy import leaked

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).parent / "pyinfra")


@pytest.fixture
def cli(knot_world, tmp_path):
    inventory = tmp_path / "inventory.py"
    inventory.write_text(f"""
hosts = [("@local", {{
    "mail_hostname": "mail.example.test",
    "mail_domains": ["example.test"],
    "lab_allowances": True,
    "ipv4": "198.51.100.10",
    "ipv6": "2001:db8::10",
    "mail_manage_host": False,
    "dns_provider": "rfc2136",
    "dns_server": "{knot_world.server.address}",
    "dns_port": {knot_world.server.port},
    "dns_tsig_key_name": "{knot_world.server.key.name}",
    "dmarc_policy": "quarantine",
    "tlsrpt_rua": ["mailto:tlsrpt@example.test"],
    "secrets_dir": "{tmp_path / 'secrets'}",
    "secrets_file": "{tmp_path / 'secrets.toml'}",
}})]
""")
    secret = knot_world.server.key.secret

    def run(*args):
        env = dict(os.environ, MAILHOST_TSIG_SECRET=secret)
        result = subprocess.run([PYINFRA, str(inventory), "deploy.py", *args], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=120)
        output = result.stdout + result.stderr
        assert leaked({"TSIG secret": secret}, output) == []
        return result.returncode, output

    run.secrets_dir = tmp_path / "secrets"
    run.inventory = inventory
    return run


def test_dry_prints_the_plan_and_writes_nothing(cli, knot_world):
    before = knot_world.zone_bytes()
    code, output = cli("--dry", "-vvv")
    assert code == 0, output
    for expected in [
        "+ CREATE  MX    example.test",
        "10 mail.example.test   ttl 3600",
        '"v=spf1 ip4:198.51.100.10 ip6:2001:db8::10 ~all"',
        '"v=DMARC1; p=quarantine"',
        '"v=TLSRPTv1; rua=mailto:tlsrpt@example.test"',
        "mail._domainkey.example.test",
        "<new key, generated when applied>",
        "+ CREATE  AAAA  mail.example.test",
    ]:
        assert expected in output
    assert knot_world.zone_bytes() == before  # byte for byte, SOA serial included
    assert not cli.secrets_dir.exists()  # no DKIM key generated at --dry


def test_real_run_applies_then_second_run_changes_nothing(cli, knot_world):
    code, output = cli("-y")
    assert code == 0, output
    key = cli.secrets_dir / "dkim" / "example.test" / "mail.rsa.pem"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    published = {e[:2] for e in knot_world.snapshot()}
    assert ("mail._domainkey.example.test", "TXT") in published
    applied = knot_world.zone_bytes()

    code, output = cli("-y")
    assert code == 0, output
    assert "= example.test: no DNS changes" in output
    assert "Grand total" in output and "Success" in output
    assert knot_world.zone_bytes() == applied  # no write: the serial did not move

    code, output = cli("--dry")
    assert "= example.test: no DNS changes" in output and "CREATE" not in output


def test_a_bad_setting_stops_before_any_dns_call(cli, knot_world):
    text = cli.inventory.read_text().replace('"quarantine"', '"block"')
    cli.inventory.write_text(text)
    before = knot_world.zone_bytes()
    code, output = cli("-y")
    assert code != 0
    assert "settings: dmarc_policy = 'block': expected 'none', 'quarantine' or 'reject'" in output
    assert knot_world.zone_bytes() == before
    assert not cli.secrets_dir.exists()


def test_wrong_tsig_secret_is_one_clear_line(cli, knot_world, monkeypatch):
    monkeypatch.setenv("MAILHOST_TSIG_SECRET", "d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldA==")
    env = dict(os.environ)
    result = subprocess.run([PYINFRA, str(cli.inventory), "deploy.py", "--dry"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "DNS zone example.test:" in output and "mailhost" in output
    assert leaked({"wrong TSIG secret": "d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldA=="}, output) == []


def test_a_cluttered_zone_shows_its_conflicts_then_converges_once_adopted(cli, knot_world):
    knot_world.clutter()
    before = knot_world.zone_bytes()
    code, output = cli("--dry")
    assert code != 0
    assert "Traceback" not in output
    conflicts = [line.strip() for line in output.splitlines() if "! CONFLICT" in line]
    assert len(conflicts) == 2, output
    assert "list it in mx_keep to keep it (a backup MX)" in conflicts[0]
    assert "add spf.newsletter.example to spf_include to keep them" in conflicts[1]
    assert "DNS zone example.test: zone example.test: MX example.test: " in output
    code, output = cli("-y")
    assert code != 0
    assert knot_world.zone_bytes() == before  # byte for byte, SOA serial included

    adopt = ["--data", 'spf_include=["spf.newsletter.example"]',
             "--data", 'mx_keep=["20 mx.oldprovider.example"]']
    code, output = cli("-y", *adopt)
    assert code == 0, output
    applied = knot_world.zone_bytes()
    code, output = cli("-y", *adopt)
    assert code == 0, output
    assert "= example.test: no DNS changes" in output
    assert knot_world.zone_bytes() == applied


def test_an_unknown_key_from_data_or_group_data_stops_the_run_in_one_line(cli, knot_world):
    """`--data dmark_policy=reject` would leave p=none without a word: every key is known or
    refused, wherever it comes from (--data, the inventory's group_data/), before any DNS call;
    a secret-looking one never shows its value."""
    before = knot_world.zone_bytes()
    code, output = cli("-y", "--data", "dmark_policy=reject")
    assert code != 0
    lines = [line for line in output.splitlines() if "dmark_policy" in line]
    assert len(lines) == 1 and lines[0].endswith(
        "settings: dmark_policy = 'reject': unknown setting; did you mean dmarc_policy?"), output
    code, output = cli("--dry", "--data", "relay_passwd=Zq9-hunter2-hunter2")
    assert code != 0 and "set MAILHOST_RELAY_PASSWORD" in output, output
    assert "Zq9-hunter2-hunter2" not in output
    group_data = cli.inventory.parent / "group_data"
    group_data.mkdir()
    (group_data / "all.py").write_text('dmarc_polcy = "reject"\n')
    code, output = cli("-y")
    assert code != 0 and "settings: dmarc_polcy = 'reject': unknown setting; did you mean " \
                         "dmarc_policy?" in output, output
    (group_data / "all.py").write_text('_sudo = False\nssh_connect_retries = 1\n')  # pyinfra's
    code, output = cli("--dry")
    assert code == 0, output
    assert knot_world.zone_bytes() == before and not cli.secrets_dir.exists()
