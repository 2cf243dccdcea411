"""The checks in the lab, in every ubuntu-24.04 world (Postfix and chasquid): a freshly deployed
host passes every one; then, one at a time, one thing is broken and exactly the matching checks
fail, with their advice, while the others pass; then it is put back. Also: --json is one entry
per check, and a deploy fails on a failed check.

Breakages of the MTA (its certificate, relaying, port 587) are done each MTA's own way; the
failed checks are the same for both, because the checks look from outside. Where chasquid
differs it is said at the breakage."""

from __future__ import annotations

import json
import os
import subprocess
import time
import tomllib
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.reversename
import dns.tsig
import dns.update
import pytest
from lab_world import HOSTNAME, ROOT, VPS4, VPS6, fresh_lab, lab, pyinfra
from sample import self_signed_pem
from secrecy import leaked

from mailhost.keys.dkim import generate_key, public_value
from mailhost.keys.rotation import from_json
from mailhost.zones.providers.rfc2136 import rdata_value, value_rdata

pytestmark = pytest.mark.lab

DOMAIN, BLOCKLIST = "example.test", "bl.lab.test"
REVERSE4 = "100.51.198.in-addr.arpa"
TLS_DIR = "/etc/mailhost/tls"
CHASQUID_CERTS = f"/etc/chasquid/certs/{HOSTNAME}"  # chasquid presents its own copies
CHASQUID_DOMAINS = "/etc/chasquid/domains"
SUBMISSION_SOCKET = "chasquid-submission.socket"
# chasquid exits 1 on SIGTERM, and these tests restart it more often than systemd's default
# start limit allows (5 starts in 10 s: "Start request repeated too quickly"): clear the count
RESTART_CHASQUID = "systemctl reset-failed chasquid.service && systemctl restart chasquid.service"
# (VPS image, MTA, DNS provider, ACME challenge): two worlds cover each MTA, each DNS
# provider and each challenge. The breakages are the same in any world but for the MTA's way
# (chasquid's copies of the certificate, its sockets); the other ubuntu-24.04 worlds run
# every check at the end of each deploy in test_mail_lab.py
WORLDS = [("ubuntu-24.04", "postfix", "cloudflare", "http-01"),  # deployed only here
          ("ubuntu-24.04", "chasquid", "rfc2136", "dns-01")]
ENV = dict(os.environ)  # the world's settings are added by the fixture


def deploy(*args):
    """pyinfra in this module's world (ENV): exit status, output."""
    return pyinfra(None, "-y", *args, env=ENV)


def check():
    """scripts/check --json: (exit code, entries, stderr, seconds)."""
    started = time.monotonic()
    result = subprocess.run([str(ROOT / "scripts" / "check"), "inventory/lab.py", "--json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600, env=ENV)
    seconds = time.monotonic() - started
    return result.returncode, json.loads(result.stdout), result.stderr, seconds


def failed(entries) -> dict[str, dict]:
    return {e["name"]: e for e in entries if e["status"] == "failed"}


def warnings_of(mta: str) -> set[str]:
    """The checks that warn on a healthy host. chasquid has no TLS settings: Ubuntu 24.04's
    1.13 refuses TLS 1.0/1.1 with the deploy's GODEBUG drop-in (Go 1.22), but accepts CBC
    ciphers (on 587, 465), which the checks report as warnings, not required; Postfix is
    configured to refuse both."""
    if mta == "postfix":
        return set()
    return {f"smtp: {a} port {p} refuses CBC ciphers" for a in (VPS4, VPS6) for p in (587, 465)}


DANE_MATCHES = {f"dane: TLSA _25._tcp.{HOSTNAME} matches port 25 on {a}" for a in (VPS4, VPS6)}
DANE_CHECKS = DANE_MATCHES | {f"dane: TLSA _25._tcp.{HOSTNAME} signed (DNSSEC)"}


def dane_published() -> bool:
    """The lab signs example.test in Knot: RFC 2136 worlds get the TLSA; a Cloudflare zone
    counts as unsigned (its three DANE checks warn: no TLSA)."""
    return ENV.get("MAILHOST_LAB_PROVIDER") != "cloudflare"


def not_ok(entries) -> dict[str, dict]:
    return {e["name"]: e for e in entries if e["status"] != "ok"}


def only_the_mtas_warnings(entries, mta: str) -> bool:
    found = not_ok(entries)
    dane_warnings = set() if dane_published() else DANE_CHECKS
    return set(found) == warnings_of(mta) | dane_warnings and all(
        e["status"] == "warning" and not e["required"] for e in found.values())


class Lab:
    """The running lab: ssh to the VPS, and RFC 2136 updates of its zones in Knot."""

    def __init__(self, status: dict, mta: str):
        self.status, self.mta = status, mta
        secrets = tomllib.loads(Path(status["secrets_file"]).read_text())
        self.secret_values = [secrets["tsig_secret"], secrets["relay_password"],
                              *secrets["passwords"].values()]
        name = status["dns"]["tsig_key_name"]
        self.keyring = {dns.name.from_text(name): dns.tsig.Key(name, secrets["tsig_secret"])}
        self.server = status["dns"]["server"]

    def ssh(self, command: str, stdin: str | None = None) -> str:
        result = subprocess.run(["ssh", "-F", self.status["vps"]["ssh_config"], HOSTNAME,
                                 command], input=stdin, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def values(self, name: str, rtype: str) -> list[str]:
        query = dns.message.make_query(name, rtype)
        answer = dns.query.udp(query, self.server, timeout=5)
        return [rdata_value(r) for rrset in answer.answer for r in rrset]

    def replace(self, zone: str, name: str, rtype: str, values: list[str]):
        update = dns.update.UpdateMessage(zone + ".", keyring=self.keyring)
        update.delete(name + ".", rtype)
        for value in values:
            update.add(name + ".", 300, value_rdata(rtype, value))
        assert dns.query.tcp(update, self.server, timeout=5).rcode() == 0


@pytest.fixture(scope="module", params=WORLDS, ids=["-".join(w) for w in WORLDS])
def world(request):
    """A fresh lab, deployed once; removed at the end."""
    image, mta, provider, challenge = request.param
    ENV.update(MAILHOST_LAB_MTA=mta, MAILHOST_LAB_PROVIDER=provider,
               MAILHOST_LAB_ACME_CHALLENGE=challenge)
    status = fresh_lab(image)
    started = time.monotonic()
    code, output = deploy()
    assert code == 0, output[-4000:]
    print(f"\n{'-'.join(request.param)}: first deploy {time.monotonic() - started:.0f} s")
    yield Lab(status, mta), output
    lab("down")


def test_a_healthy_host_passes_every_check_and_the_deploy_shows_them(world):
    lab_, deploy_output = world
    assert "Checks of the mail host" in deploy_output
    assert f"ok    smtp: {VPS6} port 465 TLS certificate" in deploy_output
    code, entries, stderr, seconds = check()
    assert code == 0 and only_the_mtas_warnings(entries, lab_.mta), not_ok(entries)
    print(f"\nscripts/check in the lab: {seconds:.1f} s for {len(entries)} checks")
    secrets = {f"lab secret {n}": secret for n, secret in enumerate(lab_.secret_values)}
    assert leaked(secrets, deploy_output, stderr, json.dumps(entries)) == []


def test_json_is_one_entry_per_check(world):
    _, entries, _, _ = check()
    names = [e["name"] for e in entries]
    # 10 DNS, 2 PTR, 3 MTA-STS (the TXT, the policy over IPv4 and IPv6), 3 DANE (the TLSA
    # against port 25 over IPv4 and IPv6, its signature), 29 SMTP (the spoof
    # probe), 8 IMAP (the lab opens 143), 6 ManageSieve (no login before STARTTLS, the
    # certificate, a login; IPv4 and IPv6), 3 blocklist, and the host's: its units (Postfix:
    # unbound, postsrsd, opendkim, rspamd, dovecot, nginx, postfix; chasquid: unbound, its
    # service and sockets, rspamd, dovecot, nginx), certbot.timer, outbound 25, the queue,
    # rspamd answering, no package hold, the latest backup's age (the lab sets
    # backup_repository)
    units = {"postfix": 7, "chasquid": 8}[world[0].mta]
    assert len(names) == len(set(names)) == 64 + units + 6
    assert all(set(e) == {"host", "name", "status", "expected", "found", "advice", "required"}
               for e in entries)
    assert {e["host"] for e in entries} == {HOSTNAME}
    prefixes = {name.split(":")[0] for name in names}
    assert prefixes == {"dns", "rdns", "mta-sts", "dane", "smtp", "imap", "sieve", "host",
                        "blocklist"}


def test_a_second_deploy_changes_nothing_with_the_checks(world):
    code, output = deploy()
    assert code == 0, output[-4000:]
    total = [line for line in output.splitlines() if "Grand total" in line][0].split()
    assert total[3] == "-" and total[4] == "-", total  # no change, no error


def self_signed_expired() -> tuple[str, str]:
    certificate, key, _ = self_signed_pem(HOSTNAME, -100, -10)
    return certificate.decode(), key.decode()


def point_tls_at(lab_: Lab, fullchain: str, privkey: str):
    """The MTA presents this certificate (files on the VPS). Postfix reads the host's links;
    chasquid reads its own copies, as its own user, and has no reload."""
    if lab_.mta == "postfix":
        lab_.ssh(f"ln -sfn {fullchain} {TLS_DIR}/fullchain.pem && "
                 f"ln -sfn {privkey} {TLS_DIR}/privkey.pem && postfix reload")
    else:
        lab_.ssh(f"install -o chasquid -g chasquid -m 644 {fullchain} {CHASQUID_CERTS}/"
                 f"fullchain.pem && install -o chasquid -g chasquid -m 600 {privkey} "
                 f"{CHASQUID_CERTS}/privkey.pem && {RESTART_CHASQUID}")


# Each breakage: (break it, put it back, which failed checks it must give, advice words).

def signing_record(lab_) -> str:
    """The DKIM record the host signs with: the lab's controller keeps its keys (and their
    rotation, tests/test_mail_lab.py) across the worlds of its lane."""
    state = Path(lab_.status["secrets_dir"]) / "dkim" / DOMAIN / "rotation.json"
    selector = from_json(state.read_text())[0].signing if state.exists() else "mail"
    return f"{selector}._domainkey.{DOMAIN}"


def stale_dkim(lab_):
    name = signing_record(lab_)
    saved = lab_.values(name, "TXT")
    other = public_value(generate_key("rsa", 2048))
    lab_.replace(DOMAIN, name, "TXT", [f"v=DKIM1; k=rsa; p={other}"])
    return lambda: lab_.replace(DOMAIN, name, "TXT", saved)


def wrong_ptr(lab_):
    name = dns.reversename.from_address(VPS4).to_text().rstrip(".")
    lab_.replace(REVERSE4, name, "PTR", ["mx.example.net."])
    return lambda: lab_.replace(REVERSE4, name, "PTR", [f"{HOSTNAME}."])


def spf_without_ipv6(lab_):
    saved = lab_.values(DOMAIN, "TXT")
    lab_.replace(DOMAIN, DOMAIN, "TXT", [f"v=spf1 ip4:{VPS4} ~all"])
    return lambda: lab_.replace(DOMAIN, DOMAIN, "TXT", saved)


def _tls_links(lab_):
    return [lab_.ssh(f"readlink {TLS_DIR}/{f}").strip() for f in ("fullchain.pem", "privkey.pem")]


def self_signed(lab_):
    saved = _tls_links(lab_)
    point_tls_at(lab_, "/etc/ssl/certs/ssl-cert-snakeoil.pem",
                 "/etc/ssl/private/ssl-cert-snakeoil.key")
    return lambda: point_tls_at(lab_, *saved)


def expired(lab_):
    saved = _tls_links(lab_)
    certificate, key = self_signed_expired()
    lab_.ssh(f"cat > {TLS_DIR}/expired-cert.pem", stdin=certificate)
    lab_.ssh(f"umask 077 && cat > {TLS_DIR}/expired-key.pem", stdin=key)
    point_tls_at(lab_, f"{TLS_DIR}/expired-cert.pem", f"{TLS_DIR}/expired-key.pem")

    def restore():
        point_tls_at(lab_, *saved)
        lab_.ssh(f"rm {TLS_DIR}/expired-cert.pem {TLS_DIR}/expired-key.pem")
    return restore


def open_relay(lab_):
    """Postfix: every client in mynetworks. chasquid relays to an outside domain only after
    AUTH and has no setting to change that; what makes it take mail for an outside address
    from anyone is that domain taken for its own (a directory under its domains, here with an
    alias), which is what the check sees: RCPT to the outside address accepted, no AUTH."""
    if lab_.mta == "chasquid":
        outside = f"{CHASQUID_DOMAINS}/example.net"
        lab_.ssh(f"mkdir {outside} && echo 'inbox: alice@{DOMAIN}' > {outside}/aliases && "
                 f"{RESTART_CHASQUID}")
        return lambda: lab_.ssh(f"rm -r {outside} && {RESTART_CHASQUID}")
    saved = lab_.ssh("postconf -h mynetworks").strip()
    lab_.ssh("postconf -e 'mynetworks = 0.0.0.0/0 [::]/0' && postfix reload")
    return lambda: lab_.ssh(f"postconf -e 'mynetworks = {saved}' && postfix reload")


def blocklisted(lab_):
    names = [dns.reversename.from_address(a).to_text().rstrip(".")
             .removesuffix(".in-addr.arpa").removesuffix(".ip6.arpa") + "." + BLOCKLIST
             for a in (VPS4, VPS6)]
    for name in names:
        lab_.replace(BLOCKLIST, name, "A", ["127.0.0.2"])
        lab_.replace(BLOCKLIST, name, "TXT", ["listed by the lab test"])

    def restore():
        for name in names:
            lab_.replace(BLOCKLIST, name, "A", [])
            lab_.replace(BLOCKLIST, name, "TXT", [])
    return restore


def port_587_closed(lab_):
    """Postfix: the submission service commented out of master.cf. chasquid: its submission
    socket (systemd's) moved to loopback by a drop-in; the unit stays active, so the host's
    unit checks pass, as Postfix's do."""
    if lab_.mta == "chasquid":
        drop_in = f"/etc/systemd/system/{SUBMISSION_SOCKET}.d"
        restart = ("systemctl daemon-reload && systemctl reset-failed chasquid.service && "
                   f"systemctl restart {SUBMISSION_SOCKET} chasquid.service")
        lab_.ssh(f"mkdir -p {drop_in} && printf '[Socket]\\nListenStream=\\n"
                 f"ListenStream=127.0.0.1:587\\n' > {drop_in}/loopback.conf && {restart}")
        return lambda: lab_.ssh(f"rm -r {drop_in} && {restart}")
    lab_.ssh("cp /etc/postfix/master.cf /root/master.cf.saved && postconf -M# submission/inet "
             "&& postfix reload")
    return lambda: lab_.ssh("cp /root/master.cf.saved /etc/postfix/master.cf && postfix reload")


def service_hold(lab_):
    """A policy-rc.d left behind, as an interrupted install would leave it."""
    lab_.ssh("printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && "
             "chmod 755 /usr/sbin/policy-rc.d")
    return lambda: lab_.ssh("rm /usr/sbin/policy-rc.d")


CERTIFICATE_CHECKS = {f"smtp: {a} port {p} {how} certificate" for a in (VPS4, VPS6)
                      for p, how in ((25, "STARTTLS"), (587, "STARTTLS"), (465, "TLS"))}
BREAKAGES = [
    (service_hold, {"host: no package hold or half-done install"}, "run the deploy again"),
    (stale_dkim, {"dns: DKIM {signing_record}"}, "does not match"),
    (wrong_ptr, {f"rdns: PTR {VPS4}"}, "at your VPS provider"),
    (spf_without_ipv6, {f"dns: SPF {DOMAIN} passes {VPS6}"}, f"ip6:{VPS6}"),
    (self_signed, CERTIFICATE_CHECKS, "certbot"),
    (expired, CERTIFICATE_CHECKS, "certbot"),
    (open_relay, {f"smtp: {a} port 25 no open relay" for a in (VPS4, VPS6)}, "relays mail"),
    (blocklisted, {f"blocklist: {a} in {BLOCKLIST}" for a in (VPS4, VPS6)}, "removal"),
    (port_587_closed, {f"smtp: {a} port 587 {what}" for a in (VPS4, VPS6) for what in (
        "STARTTLS certificate", "refuses TLS 1.0/1.1", "no AUTH before TLS",
        "authenticated submission", "refuses CBC ciphers")}, ""),
]


@pytest.mark.parametrize(("breakage", "expected", "advice"), BREAKAGES,
                         ids=[b[0].__name__ for b in BREAKAGES])
def test_one_broken_thing_fails_exactly_its_checks(world, breakage, expected, advice):
    lab_, _ = world
    expected = {name.replace("{signing_record}", signing_record(lab_)) for name in expected}
    if breakage in (self_signed, expired) and dane_published():
        expected |= DANE_MATCHES  # another key than the TLSA pins: DANE senders would refuse
    restore = breakage(lab_)
    try:
        code, entries, stderr, _ = check()
    finally:
        restore()
    found = failed(entries)
    assert set(found) == expected, {n: e["found"] for n, e in found.items()}
    assert code == 1 and "required check(s) failed" in stderr
    assert all(advice in e["advice"] and e["expected"] for e in found.values())
    if breakage is expired:
        assert all("expired" in e["found"] for n, e in found.items() if n in CERTIFICATE_CHECKS)
    if breakage is self_signed:
        assert all("not trusted" in e["found"] for n, e in found.items()
                   if n in CERTIFICATE_CHECKS)
        # the password is never sent to a host whose certificate does not verify
        assert {e["status"] for e in entries
                if "authenticated submission" in e["name"]} == {"warning"}
    if lab_.mta == "chasquid" and breakage in (self_signed, expired):  # its own copies
        assert all(f"{CHASQUID_CERTS}/" in e["advice"] for n, e in found.items()
                   if n in CERTIFICATE_CHECKS)
    if lab_.mta == "chasquid" and breakage is open_relay:
        assert all(CHASQUID_DOMAINS in e["advice"] for e in found.values())


def test_a_deploy_with_a_failed_required_check_fails_with_one_line(world):
    lab_, _ = world
    restore = blocklisted(lab_)
    try:
        code, output = deploy()
    finally:
        restore()
    assert code != 0
    lines = [line for line in output.splitlines() if "required check(s) failed" in line]
    assert len(lines) == 1, output[-3000:]
    assert "Traceback" not in output
    assert lines[0].endswith(f"{HOSTNAME}: 2 required check(s) failed: blocklist: {VPS4} in "
                             f"{BLOCKLIST}; blocklist: {VPS6} in {BLOCKLIST}")


def test_after_every_repair_the_host_passes_again(world):
    lab_, _ = world
    code, entries, _, _ = check()
    assert code == 0 and only_the_mtas_warnings(entries, lab_.mta), not_ok(entries)
