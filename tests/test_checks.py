"""The checks' logic against real servers on loopback: a Knot serving the mail zone (records
published by the deploy's own DNS code), its reverse zones and a blocklist zone; TLS servers for
the legacy-TLS probe; and the table and JSON rendering."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from types import SimpleNamespace

import dns.name
import dns.query
import dns.tsig
import dns.update
import pytest
from cryptography.hazmat.primitives import serialization
from sample import sample_settings, self_signed_pem

from lab.knot import KnotServer, TsigKey, minimal_zone
from mailhost.checks import (
    FAILED,
    OK,
    WARNING,
    CheckResult,
    blocklists,
    failure_line,
    guarded,
    rdns,
    render_json,
    render_table,
    smtp,
)
from mailhost.checks import dns as dns_checks
from mailhost.checks import host as host_checks
from mailhost.host.chasquid import QUEUE as CHASQUID_QUEUE
from mailhost.host.postfix import QUEUE as POSTFIX_QUEUE
from mailhost.keys.dkim import (
    DkimPublicKeys,
    generate_key,
    local_key_path,
    public_value,
    save_local_key,
)
from mailhost.lookup import CheckResolver, make_resolver, zone_resolver
from mailhost.zones.desired import MailHost, desired_by_zone
from mailhost.zones.providers.rfc2136 import Rfc2136Provider, value_rdata
from mailhost.zones.sync import ZoneSync

ZONE = "example.test"
REVERSE4 = "100.51.198.in-addr.arpa"
REVERSE6 = "0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
BLOCKLIST = "bl.test"
HOST4, HOST6 = "198.51.100.10", "2001:db8::10"


class World:
    """Knot on loopback with the mail zone as the deploy publishes it, PTRs and a blocklist."""

    def __init__(self, server: KnotServer, settings):
        self.server, self.settings = server, settings
        key = server.key
        self.keyring = {dns.name.from_text(key.name): dns.tsig.Key(key.name, key.secret)}
        servers = make_resolver([server.address], server.port)
        self.resolver = CheckResolver(servers, {ZONE: make_resolver([server.address],
                                                                    server.port)})

    def replace(self, zone: str, name: str, rtype: str, *values: str):
        """Set name/rtype to values (TXT unquoted; none: delete it) by RFC 2136."""
        update = dns.update.UpdateMessage(zone + ".", keyring=self.keyring)
        update.delete(name + ".", rtype)
        for value in values:
            update.add(name + ".", 300, value_rdata(rtype, value))
        answer = dns.query.tcp(update, self.server.address, port=self.server.port, timeout=5)
        assert answer.rcode() == 0


@pytest.fixture
def world(knot_binary, tmp_path):
    settings = sample_settings(secrets_dir=str(tmp_path / "secrets"), dnsbl_zones=[BLOCKLIST],
                               dnsbl_domain_zones=[BLOCKLIST])
    private = generate_key("rsa", 2048)
    save_local_key(local_key_path(settings, ZONE, "rsa"), private)
    zones = {ZONE: minimal_zone(ZONE), BLOCKLIST: minimal_zone(BLOCKLIST),
             REVERSE4: minimal_zone(REVERSE4) + f"10 IN PTR mail.{ZONE}.\n",
             REVERSE6: minimal_zone(REVERSE6)
             + f"0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0 IN PTR mail.{ZONE}.\n"}
    key = TsigKey.generate("mailhost-test")
    with KnotServer(zones, key=key, workdir=tmp_path / "knot") as server:
        (records,) = desired_by_zone([MailHost(settings, {ZONE: DkimPublicKeys(
            public_value(private))})])
        provider = Rfc2136Provider(server.address, server.port, key.name, key.secret,
                                   key.algorithm, timeout=5)
        sync = ZoneSync(records, provider)
        sync.apply(sync.plan())
        yield World(server, settings)


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def failed(results) -> list[str]:
    return [r.name for r in results if r.status == FAILED]


def test_records_published_by_the_deploy_pass_every_dns_check(world):
    results = dns_checks.checks(world.settings, world.resolver)
    assert failed(results) == []
    names = by_name(results)
    assert set(names) == {
        "dns: A mail.example.test", "dns: AAAA mail.example.test", "dns: MX example.test",
        "dns: SPF example.test parses", f"dns: SPF example.test passes {HOST4}",
        f"dns: SPF example.test passes {HOST6}", "dns: DKIM mail._domainkey.example.test",
        "dns: DMARC _dmarc.example.test", "dns: TLS-RPT _smtp._tls.example.test",
        "dns: CAA example.test"}
    assert "0 void" in names["dns: SPF example.test parses"].found


def test_spf_without_ipv6_fails_only_the_ipv6_check(world):
    world.replace(ZONE, ZONE, "TXT", f'v=spf1 ip4:{HOST4} ~all')
    results = by_name(dns_checks.checks(world.settings, world.resolver))
    assert failed(results.values()) == [f"dns: SPF example.test passes {HOST6}"]
    ipv6 = results[f"dns: SPF example.test passes {HOST6}"]
    assert ipv6.found.startswith("softfail") and f"ip6:{HOST6}" in ipv6.advice


def test_spf_with_three_void_lookups_fails_to_parse_check(world):
    voids = " ".join(f"a:void{i}.{ZONE}" for i in range(3))
    world.replace(ZONE, ZONE, "TXT", f'v=spf1 ip4:{HOST4} ip6:{HOST6} {voids} ~all')
    check = dns_checks.spf_record_check(world.resolver, ZONE)
    assert check.status == FAILED and "permerror" in check.advice
    assert "void" in check.found


def test_spf_with_eleven_lookups_fails_and_ten_pass(world):
    for i in range(11):
        world.replace(ZONE, f"h{i}.{ZONE}", "A", HOST4)
    for count, status in [(11, FAILED), (10, OK)]:
        terms = " ".join(f"a:h{i}.{ZONE}" for i in range(count))
        world.replace(ZONE, ZONE, "TXT", f'v=spf1 ip4:{HOST4} ip6:{HOST6} {terms} ~all')
        check = dns_checks.spf_record_check(world.resolver, ZONE)
        assert check.status == status, check.found
        assert f"({count} lookups" in check.found


def test_stale_dkim_record_fails_with_both_fingerprints(world):
    other = public_value(generate_key("rsa", 2048))
    world.replace(ZONE, f"mail._domainkey.{ZONE}", "TXT", f'v=DKIM1; k=rsa; p={other}')
    results = dns_checks.checks(world.settings, world.resolver)
    assert failed(results) == ["dns: DKIM mail._domainkey.example.test"]
    check = by_name(results)["dns: DKIM mail._domainkey.example.test"]
    assert dns_checks.fingerprint(other) in check.found
    assert check.expected.startswith("rsa key sha256:") and check.expected not in check.found
    assert "does not match" in check.advice


def test_dmarc_with_another_policy_fails(world):
    world.replace(ZONE, f"_dmarc.{ZONE}", "TXT", 'v=DMARC1; p=none')
    check = dns_checks.dmarc_check(world.settings, world.resolver, ZONE)
    assert check.status == FAILED and check.found == "v=DMARC1; p=none"
    assert "p=quarantine" in check.expected


def test_fcrdns_passes_then_a_wrong_ptr_fails_with_provider_advice(world):
    assert [r.status for r in rdns.checks(world.settings, world.resolver)] == [OK, OK]
    world.replace(REVERSE4, f"10.{REVERSE4}", "PTR", "other.example.test.")
    ipv4, ipv6 = rdns.checks(world.settings, world.resolver)
    assert (ipv4.status, ipv6.status) == (FAILED, OK)
    assert ipv4.found == "other.example.test -> no address"
    assert "at your VPS provider" in ipv4.advice and "not in your zone" in ipv4.advice


def test_blocklist_names_reverse_octets_nibbles_and_domains():
    assert blocklists.query_name(HOST4, "zen.spamhaus.org") == "10.100.51.198.zen.spamhaus.org"
    assert blocklists.query_name(HOST6, "zen.spamhaus.org") == (
        "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org")
    assert blocklists.query_name(ZONE, "dbl.spamhaus.org") == "example.test.dbl.spamhaus.org"


@pytest.mark.parametrize(("answers", "status"), [
    ([], OK), (["127.0.0.2"], FAILED), (["127.0.0.4", "127.0.0.10"], FAILED),
    (["127.0.1.2"], FAILED), (["127.255.255.254"], WARNING), (["127.255.255.252"], WARNING),
    (["10.0.0.1"], WARNING)])
def test_dnsbl_answer_codes(answers, status):
    assert blocklists.classify(answers)[0] == status


def test_blocklist_lookups_in_a_real_zone(world):
    world.replace(BLOCKLIST, f"10.100.51.198.{BLOCKLIST}", "A", "127.0.0.2")
    world.replace(BLOCKLIST, f"10.100.51.198.{BLOCKLIST}", "TXT", "listed for a test")
    nibbles = blocklists.query_name(HOST6, BLOCKLIST)
    world.replace(BLOCKLIST, nibbles, "A", "127.255.255.254")
    results = by_name(blocklists.checks(world.settings, world.resolver))
    ipv4 = results[f"blocklist: {HOST4} in {BLOCKLIST}"]
    assert ipv4.status == FAILED and ipv4.found == "listed (127.0.0.2): listed for a test"
    assert "removal" in ipv4.advice
    assert results[f"blocklist: {HOST6} in {BLOCKLIST}"].status == WARNING
    assert results[f"blocklist: {ZONE} in {BLOCKLIST}"].status == OK


def test_zone_resolver_for_rfc2136_asks_the_dns_server_at_its_port(world):
    settings = sample_settings(dns_server=world.server.address, dns_port=world.server.port)
    resolver = zone_resolver(settings)
    zone_servers = resolver.for_name(f"mail.{ZONE}")
    assert (zone_servers.nameservers, zone_servers.port) == (
        [world.server.address], world.server.port)
    assert resolver.for_name("gmail.com") is resolver.recursive
    assert [r.address for r in resolver.values(f"mail.{ZONE}", "A")] == [HOST4]


# --- TLS: the legacy probe really offers TLS 1.0/1.1 ---

def self_signed(tmp_path, name="mail.example.test", days=30):
    certificate_pem, key_pem, certificate = self_signed_pem(name, -1, days)
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(certificate_pem)
    key_path.write_bytes(key_pem)
    return cert_path, key_path, certificate


def tls_server(tmp_path, minimum: ssl.TLSVersion | None = None,
               ciphers: str = "ALL:@SECLEVEL=0", days: int = 30) -> int:
    """A TLS server on loopback for three handshakes, offering ``ciphers`` and accepting versions
    from ``minimum`` (else Python's default), its certificate valid for ``days``; returns its
    port."""
    cert, key, _ = self_signed(tmp_path, days=days)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_ciphers(ciphers)
    if minimum is not None:
        context.minimum_version = minimum
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        for _ in range(3):
            connection, _ = listener.accept()
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    tls.sendall(b"hello")
            except (ssl.SSLError, OSError):
                pass
    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def handshake(port: int, context: ssl.SSLContext) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            return tls.version()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_legacy_probe_gets_tls_1_0_where_a_default_client_cannot(tmp_path):
    port = tls_server(tmp_path, ssl.TLSVersion.TLSv1)
    assert handshake(port, smtp.legacy_context()) in ("TLSv1", "TLSv1.1")
    default = smtp.unverified_context()
    default.minimum_version = ssl.TLSVersion.TLSv1
    default.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        handshake(port, default)  # without SECLEVEL=0 the probe would prove nothing


def test_legacy_probe_is_refused_by_a_tls_1_2_server(tmp_path):
    port = tls_server(tmp_path, ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        handshake(port, smtp.legacy_context())
    assert handshake(port, smtp.unverified_context()) in ("TLSv1.2", "TLSv1.3")


def test_certificate_description_counts_days_left(tmp_path):
    *_, certificate = self_signed(tmp_path, days=10)
    text, days = smtp.describe_certificate(certificate.public_bytes(serialization.Encoding.DER))
    assert days in (9, 10)
    assert text.startswith("mail.example.test, issued by mail.example.test, expires ")


class TlsClient:
    """What ``judged_certificate`` opens: a connection whose ``sock`` is the TLS socket."""

    def __init__(self, port: int, context: ssl.SSLContext):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock = context.wrap_socket(raw, server_hostname="mail.example.test")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()


@pytest.mark.parametrize("days, passed", [(10, False), (16, True)])
def test_a_trusted_certificate_fails_within_14_days_of_expiry(tmp_path, days, passed):
    port = tls_server(tmp_path, days=days)
    settings = sample_settings(check_ca_file=str(tmp_path / "cert.pem"))  # the server's own
    ok, found = smtp.judged_certificate(settings, lambda context: TlsClient(port, context))
    assert ok is passed, found
    assert found.startswith("" if passed else "expires within 14 days; mail.example.test")
    assert "not trusted" not in found


def test_an_untrusted_certificate_says_why_and_what_it_is(tmp_path):
    port = tls_server(tmp_path, days=90)  # the system's CAs do not know it
    ok, found = smtp.judged_certificate(sample_settings(),
                                        lambda context: TlsClient(port, context))
    assert not ok
    assert found.startswith("not trusted: self-signed certificate; mail.example.test, issued by "
                            "mail.example.test")


# --- the mail queue: what each MTA's queue command prints, judged ---

class QueueHost:
    """A host whose one command (the queue's) prints ``stdout``, or fails."""

    def __init__(self, stdout: str, ok: bool = True):
        self.stdout, self.ok = stdout, ok

    def run_shell_command(self, command):
        return self.ok, SimpleNamespace(stdout=self.stdout, stderr="postqueue: fatal: no spool")


NOW = 1_800_000_000
POSTFIX_PRINTS = (f"{NOW}\n" + "\n".join(  # `postqueue -j`: one JSON object per message
    json.dumps({"queue_name": "deferred", "queue_id": f"4F{i}", "arrival_time": NOW - age,
                "message_size": 900, "sender": "alice@example.test",
                "recipients": [{"address": "bob@example.org", "delay_reason": "refused"}]})
    for i, age in enumerate(ages)) for ages in ([30 * 60], [30 * 60, 2 * 3600, 3 * 3600]))
CHASQUID_PRINTS = tuple(f"{NOW}\n" + "".join(f"{NOW - age}.25\n" for age in ages)
                        for ages in ([30 * 60], [30 * 60, 2 * 3600, 3 * 3600]))


@pytest.mark.parametrize("queue, young, stuck", [(POSTFIX_QUEUE, *POSTFIX_PRINTS),
                                                 (CHASQUID_QUEUE, *CHASQUID_PRINTS)])
def test_a_message_waiting_over_an_hour_warns_in_the_queue_check_not_fails_the_run(queue, young,
                                                                                   stuck):
    waiting = host_checks.queue_check(queue, QueueHost(young))
    assert (waiting.status, waiting.found) == (OK, "1 queued")
    failing = host_checks.queue_check(queue, QueueHost(stuck))
    assert (failing.status, failing.required) == (WARNING, False)
    assert failing.found == "3 queued, 2 waiting for more than 60 min (oldest 180 min)"
    assert queue.where in failing.advice
    assert host_checks.queue_check(queue, QueueHost(f"{NOW}\n")).found == "0 queued"


def test_an_unreadable_queue_warns_in_its_check_with_the_error():
    check = host_checks.queue_check(POSTFIX_QUEUE, QueueHost("", ok=False))
    assert check.status == WARNING and "no spool" in check.found


# --- results, rendering ---

RESULTS = [
    CheckResult("dns: MX example.test", OK, "an MX to mail.example.test", "10 mail.example.test"),
    CheckResult("rdns: PTR 198.51.100.10", FAILED, "mail.example.test", "no PTR record",
                "set the PTR at your VPS provider"),
    CheckResult("host: mail queue not stuck", FAILED, "no message waiting", "2 queued",
                "look at the queue", required=False),
    CheckResult("blocklist: 198.51.100.10 in zen.spamhaus.org", WARNING, "not listed",
                "could not check", "use your own resolver"),
]


def test_table_shows_each_check_and_advice_only_when_not_ok():
    table = render_table(RESULTS)
    lines = table.splitlines()
    assert lines[0].startswith("ok    dns: MX example.test") and "10 mail.example.test" in lines[0]
    assert lines[1].startswith("fail  rdns: PTR 198.51.100.10")
    assert "expected: mail.example.test" in lines[2] and "advice:   set the PTR" in lines[3]
    assert any(line.startswith("warn  host: mail queue") for line in lines)  # not required
    assert any(line.startswith("warn  blocklist:") for line in lines)
    assert "advice" not in "\n".join(lines[:1])
    assert lines[-1] == "1 ok, 1 failed, 2 warnings"


def test_json_is_one_object_per_check():
    entries = json.loads(render_json({"mail.example.test": RESULTS}))
    assert len(entries) == len(RESULTS)
    assert entries[1] == {"host": "mail.example.test", "name": "rdns: PTR 198.51.100.10",
                          "status": "failed", "expected": "mail.example.test",
                          "found": "no PTR record", "advice": "set the PTR at your VPS provider",
                          "required": True}


def test_failure_line_names_only_failed_required_checks():
    assert failure_line("mail.example.test", RESULTS) == (
        "mail.example.test: 1 required check(s) failed: rdns: PTR 198.51.100.10")
    assert failure_line("mail.example.test", RESULTS[:1]) == ""


def test_an_error_inside_a_check_is_its_failure():
    def broken():
        raise ConnectionRefusedError(111, "Connection refused")
    check = guarded("smtp: port 25 banner", "220 ...", "start the MTA", broken)
    assert (check.status, check.advice) == (FAILED, "start the MTA")
    assert "ConnectionRefusedError" in check.found and "Connection refused" in check.found


def test_submission_without_users_is_a_warning_not_a_failure():
    from mailhost.secrets import Secrets

    check = smtp.submission_check(sample_settings(), Secrets(), HOST4)
    assert check.status == WARNING and not check.blocking


def test_a_parked_domain_passes_once_published_and_fails_with_a_live_mx(world, tmp_path):
    parked = f"shop.{ZONE}"
    settings = sample_settings(secrets_dir=world.settings.secrets_dir, parked_domains=[parked])
    check = dns_checks.parked_check(settings, world.resolver, parked)
    assert check.status == FAILED and "MX none" in check.found
    world.replace(ZONE, parked, "MX", "0 .")
    world.replace(ZONE, parked, "TXT", "v=spf1 -all")
    world.replace(ZONE, f"_dmarc.{parked}", "TXT",
                  "v=DMARC1; p=reject; sp=reject; adkim=s; aspf=s; rua=mailto:dmarc@example.test")
    assert dns_checks.parked_check(settings, world.resolver, parked).status == OK
    world.replace(ZONE, parked, "MX", "10 mail.example.test")
    check = dns_checks.parked_check(settings, world.resolver, parked)
    assert check.status == FAILED and "MX 10 mail.example.test" in check.found


def test_a_report_address_in_another_organization_needs_its_consent(world):
    settings = sample_settings(secrets_dir=world.settings.secrets_dir,
                               dmarc_rua=["mailto:dmarc@reports.bl.test"])
    names = by_name(dns_checks.checks(settings, world.resolver))
    check = names["dns: DMARC reports of example.test accepted by reports.bl.test"]
    assert check.status == FAILED and "receivers drop" in check.advice
    assert check.expected == 'example.test._report._dmarc.reports.bl.test TXT "v=DMARC1"'
    world.replace(BLOCKLIST, "example.test._report._dmarc.reports.bl.test", "TXT", "v=DMARC1")
    assert dns_checks.report_consent_check(world.resolver, ZONE,
                                           "reports.bl.test").status == OK
