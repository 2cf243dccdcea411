"""The mail host end to end in the lab, in each world (VPS image, MTA, DNS provider, ACME
challenge): a fresh VPS deployed with pyinfra (IPv6 enabled by the deploy on the provider-like
Ubuntu images), sending to the lab's receiver, which checks DKIM, SPF and DMARC against the lab
DNS; then a rebuild of the VPS and a switch of MTA."""

from __future__ import annotations

import contextlib
import email
import email.utils
import http.client
import imaplib
import json
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.message
import dns.query
import dns.tsigkeyring
import pytest
from lab_world import (
    HOSTNAME,
    PYINFRA,
    RECEIVER,
    ROOT,
    VPS4,
    VPS6,
    deploy,
    lab,
    run_in_world,
    ssh,
    tls_context,
    world_env,
    world_id,
    zone_text,
)
from secrecy import leaked

from lab.common import RX_NETNS
from lab.receiver import list_messages, wait_for_message
from lab.relay import RELAY4, RELAY_HOSTNAME
from mailhost import paths
from mailhost.checks import inbound
from mailhost.checks import smtp as smtp_checks
from mailhost.dns import mta_sts
from mailhost.keys import dane
from mailhost.keys.rotation import Policy, from_json, selector_on

pytestmark = pytest.mark.lab

# (VPS image, MTA, DNS provider, ACME challenge): each world is a fresh lab; every test runs in
# each world unless it says where (only_in)
# (Cloudflare with HTTP-01 is deployed and checked in tests/test_checks_lab.py's worlds)
WORLDS = [("ubuntu-24.04", "postfix", "rfc2136", "http-01"),
          ("ubuntu-24.04", "chasquid", "rfc2136", "dns-01"),
          # certbot's own Cloudflare plugin, to https://api.cloudflare.com: the lab's TLS front
          ("ubuntu-24.04", "postfix", "cloudflare", "dns-01"),
          ("ubuntu-22.04", "postfix", "rfc2136", "http-01"),  # switches to chasquid 1.11
          ("debian-13", "chasquid", "rfc2136", "dns-01")]  # chasquid 1.15: DKIM by chasquid
# (debian-12 boots in tests/test_lab.py; its chasquid 1.11 is ubuntu-22.04's too)
# the first world's VPS starts with dpkg locked, as unattended-upgrades does after a first boot
DPKG_LOCK_SECONDS = 60
IPV6_STATE = "sysctl -n net.ipv6.conf.all.disable_ipv6; ip -6 -o addr show dev eth0 scope global"
MTA_FILE = {"postfix": "/etc/postfix/main.cf", "chasquid": "/etc/chasquid/chasquid.conf"}
# Dovecot serves both MTAs (IMAP, delivery, users): it keeps running across a switch
MTA_UNITS = {"postfix": ["postfix", "opendkim", "postsrsd"],
             "chasquid": ["chasquid.service", "chasquid-smtp.socket"]}
LISTENER = {"postfix": '"master"', "chasquid": '"chasquid"'}
# where a test runs when it need not run everywhere: the default world, and one per MTA
DEFAULT_WORLD = WORLDS[0]
BOTH_MTAS = (WORLDS[0], WORLDS[1])


# a rebuild (86 s) and a switch of MTA there and back (52 s) are half a world's time: they run
# where what they prove differs. Rebuild: the DNS provider (ownership kept across machines) and
# each MTA on the default image. Switch: each image's other MTA (Dovecot 2.4 on debian-13); the
# Cloudflare worlds' MTA and image are the default world's.
REBUILT = (WORLDS[0], WORLDS[2])  # each DNS provider (chasquid's rebuild: by hand, for time)
SWITCHED = (WORLDS[0], WORLDS[3], WORLDS[4])  # ubuntu-24.04, ubuntu-22.04, debian-13


def only_in(*worlds):
    """Run the decorated test in these worlds only (each world's lab is still set up once:
    pytest groups the tests by the world's value)."""
    return pytest.mark.parametrize("lab_host", worlds, indirect=True,
                                   ids=[world_id(w) for w in worlds])


@pytest.fixture(scope="module", params=WORLDS, ids=[world_id(w) for w in WORLDS])
def lab_host(request):
    """A fresh lab (new VPS, empty zones): --dry first (must change nothing), then the deploy."""
    lab("down")
    lock = DPKG_LOCK_SECONDS if request.param == WORLDS[0] else 0
    lab("up", "--image", request.param[0], "--dpkg-lock-seconds", str(lock))
    status = json.loads(lab("status", "--json").stdout)
    status["world"] = request.param
    status["ipv6_before"] = ssh(IPV6_STATE)
    before_zone = zone_text(status)
    before_host = ssh("ls /etc/postfix /etc/mailhost 2>&1; dpkg -l | wc -l")
    # --diff and -vv: every file the deploy would write, and its commands, shown; no secret
    # among them (test_certbot_used_the_worlds_challenge_and_keeps_secrets_private)
    output = deploy(status, "--dry", "--diff", "-vv")
    status["dry_output"] = output
    status["dry_unchanged"] = (zone_text(status) == before_zone,
                               ssh("ls /etc/postfix /etc/mailhost 2>&1; dpkg -l | wc -l")
                               == before_host)
    status["dpkg_locked_at_deploy"] = ssh("systemctl is-active mailhost-lab-dpkg-lock").strip()
    started = time.monotonic()
    status["first_deploy"] = deploy(status, "-y")
    status["first_deploy_seconds"] = time.monotonic() - started
    status["passwords"] = tomllib.loads(Path(status["secrets_file"]).read_text())["passwords"]
    status["ipv6_after"] = ssh(IPV6_STATE)
    print(f"\n{'-'.join(request.param)}: first deploy {status['first_deploy_seconds']:.0f} s")
    yield status
    lab("down")


def submit(status, port, address=VPS4, user="alice@example.test", sender=None, password=None,
           context=None):
    """Send one message with AUTH (the certificate verified against Pebble's root unless
    CONTEXT says otherwise); returns its Message-ID."""
    message_id = f"<{time.time_ns()}@example.test>"
    body = (f"From: {sender or user}\r\nTo: inbox@example.net\r\nSubject: test {port}\r\n"
            f"Message-ID: {message_id}\r\n\r\nhello from port {port}\r\n")
    context = context or tls_context(status)
    if port == 465:
        client = smtplib.SMTP_SSL(context=context, timeout=30)
        client._host = HOSTNAME  # verify the certificate for the mail host's name
        client.connect(address, port)
    else:
        client = smtplib.SMTP(address, port, timeout=30)
        client._host = HOSTNAME  # verify the certificate for the mail host's name
        client.starttls(context=context)
    with client:
        client.login(user, password or status["passwords"][user])
        client.sendmail(sender or user, ["inbox@example.net"], body)
    return message_id


@contextlib.contextmanager
def delivering_over(family):
    """The VPS can reach the receiver's port 25 only over this IP family (the other rejected)."""
    other = 6 if family == 4 else 4
    iptables = "ip6tables" if other == 6 else "iptables"
    rule = f"OUTPUT -p tcp -d {RECEIVER[other]} --dport 25 -j REJECT --reject-with tcp-reset"
    ssh(f"{iptables} -w -I {rule}")
    try:
        yield
    finally:
        ssh(f"{iptables} -w -D {rule}")


def received(status, message_id):
    return wait_for_message(status["receiver"]["messages_dir"],
                            lambda m: message_id in m.message.get("Message-ID", ""), timeout=60)


def test_the_vps_runs_the_worlds_image(lab_host):
    image = lab_host["world"][0]
    name, version = image.split("-")
    os_release = ssh("cat /etc/os-release")
    assert f"ID={name}" in os_release and f'VERSION_ID="{version}"' in os_release
    assert lab_host["vps"]["image"] == image
    assert lab_host["vps"]["os_release"]["VERSION_ID"] == version


def test_the_deploy_enabled_ipv6_on_the_provider_like_image(lab_host):
    """Ubuntu images come as a provider ships them: IPv6 off by sysctl, no IPv6 address (the
    Debian images configure both addresses with systemd-networkd). After the deploy: on, the
    address in netplan, and a file that keeps it on after a reboot."""
    after = lab_host["ipv6_after"].splitlines()
    assert after[0] == "0" and f"inet6 {VPS6}/64" in after[1], after
    if lab_host["vps"]["network"] == "netplan":
        assert lab_host["ipv6_before"].strip() == "1", lab_host["ipv6_before"]
        assert "eth0:" in ssh("cat /etc/netplan/60-mailhost-ipv6.yaml")
        assert f"{VPS6}/64" in ssh("netplan get ethernets.eth0.addresses")
    else:
        assert lab_host["ipv6_before"].splitlines() == after
    assert "disable_ipv6 = 0" in ssh("cat /etc/sysctl.d/99-zz-mailhost-ipv6.conf")


def test_the_deploy_waited_for_the_dpkg_lock_of_a_first_boot(lab_host):
    if lab_host["world"] != WORLDS[0]:
        assert lab_host["dpkg_locked_at_deploy"] != "active"
        return
    assert lab_host["dpkg_locked_at_deploy"] == "active"  # still locked when the deploy began
    assert "waits up to 900 s for the dpkg lock" in lab_host["first_deploy"]
    assert ssh("test -e /usr/sbin/policy-rc.d && echo left").strip() == ""


# who signs DKIM for chasquid: chasquid itself from 1.14 (Debian 13), else the post-data hook
CHASQUID_SIGNER = {"ubuntu-24.04": "hook", "debian-12": "hook", "debian-13": "chasquid"}


def test_dkim_signer_follows_the_images_chasquid(lab_host):
    image, mta = lab_host["world"][:2]
    if mta != "chasquid":
        assert "active" in ssh("systemctl is-active opendkim")
        return
    link = ssh("ls /etc/chasquid/domains/example.test/ 2>&1")
    signer = "chasquid" if "dkim:mail" in link else "hook"  # mail.pem, or a rotated key's
    assert signer == CHASQUID_SIGNER[image], (image, link)
    message = received(lab_host, submit(lab_host, 587))
    assert message.verdicts["dkim"] == "pass"


def test_dry_run_on_a_fresh_vps_lists_changes_and_changes_nothing(lab_host):
    output = lab_host["dry_output"]
    assert "+ CREATE  MX    example.test" in output
    assert "<new key, generated when applied>" in output or "v=DKIM1; k=rsa; p=MII" in output
    assert "Install ufw, certbot" in output and MTA_FILE[lab_host["world"][1]] in output
    assert lab_host["dry_unchanged"] == (True, True)
    # --diff shows what each new file holds (and, the test below, no secret with it)
    assert "Will create /etc/mailname" in output and "+ # Managed by mailhost" in output


@pytest.mark.parametrize("port", [587, 465])
def test_submission_arrives_with_dkim_spf_dmarc_pass(lab_host, port):
    with delivering_over(4):
        message = received(lab_host, submit(lab_host, port))
    assert message.verdicts["dkim"] == "pass"
    assert message.verdicts["spf"] == "pass"
    assert message.verdicts["dmarc"] == "pass"
    assert message.meta["peer"] == VPS4


def test_submission_over_ipv6_and_delivery_over_ipv6(lab_host):
    with delivering_over(6):
        message = received(lab_host, submit(lab_host, 587, address=VPS6))
    assert message.meta["family"] == 6 and message.meta["peer"] == VPS6
    assert [message.verdicts[k] for k in ("dkim", "spf", "dmarc")] == ["pass"] * 3


def test_no_relay_no_auth_before_tls_wrong_password_no_foreign_sender(lab_host):
    with smtplib.SMTP(VPS4, 25, timeout=30) as client:
        client.ehlo("probe.example.org")
        assert "auth" not in client.esmtp_features
        client.mail("someone@example.org")
        code, reply = client.rcpt("inbox@example.net")
        assert code >= 500 and b"relay" in reply.lower()  # relay access denied / not allowed
    with smtplib.SMTP(VPS4, 587, timeout=30) as client:
        client.ehlo("probe.example.org")
        assert "auth" not in client.esmtp_features  # not offered before STARTTLS
        client._host = HOSTNAME
        client.starttls(context=tls_context(lab_host))
        client.ehlo("probe.example.org")
        assert "auth" in client.esmtp_features
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("alice@example.test", "not the password")
    # Postfix refuses at RCPT, chasquid (in its post-data hook) after DATA
    with pytest.raises((smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError)) as refused:
        submit(lab_host, 587, user="alice@example.test", sender="bob@example.test")
    assert "not owned by user" in str(refused.value)


def send_from_outside(recipient, subject, headers=""):
    """One message from friend@example.org to RECIPIENT on port 25 (with HEADERS, lines ending
    in CRLF); returns its Message-ID."""
    message_id = f"<{time.time_ns()}@example.org>"
    with smtplib.SMTP(VPS4, 25, timeout=30) as client:
        client.ehlo("mx.example.org")
        client.sendmail("friend@example.org", [recipient],
                        f"From: friend@example.org\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
                        f"{headers}Message-ID: {message_id}\r\n\r\nhi\r\n")
    return message_id


def test_forwarded_mail_leaves_with_a_rewritten_sender_and_passes_spf(lab_host):
    """A message from outside to fwd@example.test reaches inbox@example.net; its envelope sender
    is rewritten into example.test (SRS by postsrsd; chasquid's own fwd_from= scheme), so the
    receiver's SPF check passes for our host."""
    message = received(lab_host, send_from_outside("fwd@example.test", "forwarded"))
    mail_from = message.meta["mail_from"]
    if lab_host["world"][1] == "postfix":
        assert mail_from.startswith("SRS0=")
        assert mail_from.endswith("=example.org=friend@example.test")
    else:
        assert mail_from == "fwd+fwd_from=friend=example.org@example.test"
    assert message.verdicts["spf"] == "pass"
    assert message.message["To"] == "fwd@example.test"


def test_mail_for_an_alias_is_delivered_to_the_users_mailbox(lab_host):
    message_id = send_from_outside("postmaster@example.test", "hello postmaster")
    for _ in range(30):
        found = ssh(f"grep -rl '{message_id}' /var/mail/vhosts/example.test/alice/ 2>/dev/null")
        if found.strip():
            break
        time.sleep(1)
    assert "/var/mail/vhosts/example.test/alice/" in found


def test_keep_a_copy_and_forward_reaches_the_mailbox_and_the_outside_address(lab_host):
    """bob@example.test -> [bob@example.test, bob@example.net] (inventory/lab.py): a message
    from outside lands in bob's Maildir and reaches the receiver as bob@example.net, its
    sender rewritten (on chasquid the copy goes through bob's internal name, which no one
    outside can address)."""
    message_id = send_from_outside("bob@example.test", "keep a copy")
    copy = received(lab_host, message_id)
    assert copy.meta["rcpt_tos"] == ["bob@example.net"]
    assert copy.meta["mail_from"].endswith("@example.test") and copy.verdicts["spf"] == "pass"
    stored = stored_files(message_id)
    assert len(stored) == 1 and stored[0].startswith("/var/mail/vhosts/example.test/bob/"), stored
    code, reply = inbound.offer(VPS4, "mx.example.org", "friend@example.org",
                                "bob=mailbox@example.test", "Subject: x\r\n\r\nx\r\n", 30)
    assert 500 <= code < 600, (code, reply)  # the internal name is no address from outside


@pytest.mark.parametrize("port", [25, 587, 465])
def test_certificate_chains_to_pebble_and_names_the_host(lab_host, port):
    context = tls_context(lab_host)
    with socket.create_connection((VPS4, port), timeout=30) as raw:
        if port == 465:
            tls = context.wrap_socket(raw, server_hostname=HOSTNAME)
        else:
            raw.recv(1024)
            raw.sendall(b"EHLO probe.example.org\r\n")
            time.sleep(0.5)
            raw.recv(4096)
            raw.sendall(b"STARTTLS\r\n")
            assert raw.recv(1024).startswith(b"220")
            tls = context.wrap_socket(raw, server_hostname=HOSTNAME)
        certificate = tls.getpeercert()
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        tls.close()
    names = [value for kind, value in certificate["subjectAltName"] if kind == "DNS"]
    assert HOSTNAME in names


class Imaps(imaplib.IMAP4_SSL):
    """IMAPS to an address, verifying the certificate for the mail host's name."""

    def __init__(self, status, address):
        self.address = address
        super().__init__(HOSTNAME, 993, ssl_context=tls_context(status), timeout=30)

    def _create_socket(self, timeout):
        raw = socket.create_connection((self.address, self.port), timeout)
        return self.ssl_context.wrap_socket(raw, server_hostname=HOSTNAME)


def imap_session(status, address=VPS4, user="alice@example.test"):
    client = Imaps(status, address)
    client.login(user, status["passwords"][user])
    return client


def fetch_over_imap(status, message_id, folder="INBOX", address=VPS4, timeout=60):
    """The message with MESSAGE_ID in alice's FOLDER, read over IMAPS (waits for delivery)."""
    with imap_session(status, address) as client:
        deadline = time.monotonic() + timeout
        while True:
            client.select(folder, readonly=True)
            _, found = client.search(None, "HEADER", "Message-ID", message_id)
            if found[0].split():
                _, data = client.fetch(found[0].split()[0], "(RFC822)")
                return data[0][1].decode(errors="replace")
            if time.monotonic() > deadline:
                raise AssertionError(f"{message_id} not in {folder} after {timeout} s")
            time.sleep(1)


def test_mail_from_outside_is_read_over_imaps_on_ipv4_and_ipv6(lab_host):
    """Delivered by Dovecot (LMTP) into alice's Maildir, where it always was; alice reads it
    over IMAPS with her SMTP password, on both addresses, with the lab CA's chain."""
    message_id = send_from_outside("alice@example.test", "read me over IMAP")
    for address in (VPS4, VPS6):
        message = fetch_over_imap(lab_host, message_id, address=address)
        assert "Subject: read me over IMAP" in message
    assert ssh(f"grep -rl '{message_id}' /var/mail/vhosts/example.test/alice/").strip()
    with Imaps(lab_host, VPS4) as client:
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
        with pytest.raises(imaplib.IMAP4.error):
            client.login("alice@example.test", "not the password")


SPAM_MARK = "X-Spam: Yes\r\n"


def test_spam_marked_mail_lands_in_junk_and_folders_are_special_use(lab_host):
    """The global Sieve script files X-Spam: Yes (the spam filter's mark) into Junk."""
    message_id = send_from_outside("alice@example.test", "cheap pills", SPAM_MARK)
    assert "X-Spam: Yes" in fetch_over_imap(lab_host, message_id, folder="Junk")
    with imap_session(lab_host) as client:
        client.select("INBOX", readonly=True)
        assert client.search(None, "HEADER", "Message-ID", message_id)[1][0] == b""
        _, folders = client.list()
    listed = b"\n".join(folders).decode()
    for folder in ("Junk", "Sent", "Drafts", "Trash"):
        assert f"\\{folder}" in listed, listed


def test_imap_143_offers_no_login_before_starttls(lab_host):
    """The lab sets imap_starttls: 143 is open, and no login is possible before STARTTLS."""
    with imaplib.IMAP4(VPS4, 143, timeout=30) as client:
        capabilities = client.capabilities
        assert "LOGINDISABLED" in capabilities, capabilities
        assert not [c for c in capabilities if c.startswith("AUTH=")], capabilities
        with pytest.raises(imaplib.IMAP4.error):
            client.login("alice@example.test", lab_host["passwords"]["alice@example.test"])
    with imaplib.IMAP4(VPS4, 143, timeout=30) as client:
        context = tls_context(lab_host)
        context.check_hostname = False  # connected by address; the chain is still verified
        client.starttls(ssl_context=context)
        client.login("alice@example.test", lab_host["passwords"]["alice@example.test"])


MAIL_UNITS = "postfix|dovecot|opendkim|postsrsd|chasquid"
MEMORY = ("for p in $(ps -eo pid=,unit= | awk '$2 ~ /^(" + MAIL_UNITS + ")/ {print $1}'); do "
          "awk -v p=$p '/^Rss:/ {r=$2} /^Pss:/ {s=$2} END {print p, r, s}' "
          "/proc/$p/smaps_rollup 2>/dev/null; done")


def test_resident_memory_of_the_mail_daemons(lab_host):
    """Measured, printed for docs/mailboxes.md: every process of the mail units (MTA, Dovecot,
    OpenDKIM, postsrsd), their RSS summed (shared pages counted in each process) and their PSS
    summed (shared pages divided among the processes: what they cost the host together)."""
    rows = [line.split() for line in ssh(MEMORY).splitlines() if len(line.split()) == 3]
    rss_kib, pss_kib = (sum(int(row[i]) for row in rows) for i in (1, 2))
    print(f"\n{'-'.join(lab_host['world'])}: mail daemons ({len(rows)} processes): "
          f"RSS {rss_kib / 1024:.0f} MiB summed, PSS {pss_kib / 1024:.0f} MiB")
    assert len(rows) >= 5 and 0 < pss_kib <= rss_kib
    assert pss_kib < 300 * 1024  # fits a 1 GB VPS with room for the rest


def test_certbot_used_the_worlds_challenge_and_keeps_secrets_private(lab_host):
    _, _, provider, challenge = lab_host["world"]
    renewal = ssh("cat /etc/letsencrypt/renewal/mail.example.test.conf")
    plugin = f"dns-{provider}" if challenge == "dns-01" else "standalone"
    expected = f"authenticator = {plugin}"
    assert expected in renewal
    credentials = ssh("stat -c '%U %a' /etc/mailhost/acme/dns-credentials.ini 2>&1")
    assert credentials.strip() == ("root 600" if challenge == "dns-01" else
                                   "stat: cannot statx '/etc/mailhost/acme/dns-credentials.ini': "
                                   "No such file or directory")
    secrets = tomllib.loads(Path(lab_host["secrets_file"]).read_text())
    if challenge == "dns-01":  # (booleans: a failed assert must not print the credentials)
        ini = ssh("cat /etc/mailhost/acme/dns-credentials.ini")
        if provider == "rfc2136":  # the VPS holds the key Knot lets write only _acme-challenge
            holds_acme_key = ("dns_rfc2136_name = mailhost-lab-acme" in ini
                              and secrets["acme_tsig_secret"] in ini)
            assert holds_acme_key
            assert leaked({"tsig_secret": secrets["tsig_secret"]}, ini) == []
        else:  # the lab's emulator has one token: the plugin gets it
            holds_token = ini == f"dns_cloudflare_api_token = {secrets['cloudflare_api_token']}\n"
            assert holds_token
    output = lab_host["dry_output"] + lab_host["first_deploy"]
    dkim_keys = Path(lab_host["secrets_file"]).parent / "secrets" / "dkim" / "example.test"
    named = {f"DKIM key {key.name}": key.read_text().splitlines()[1]
             for key in dkim_keys.glob("*.pem")}
    assert named  # a line of each private key's base64
    named |= {"tsig_secret": secrets["tsig_secret"],
             "cloudflare_api_token": secrets["cloudflare_api_token"],
             "relay_password": secrets["relay_password"],
             **{f"password of {user}": p for user, p in secrets["passwords"].items()}}
    assert leaked(named, output) == []


def test_second_deploy_changes_nothing_and_writes_no_dns(lab_host):
    status = lab_host
    zone_before = zone_text(status)
    started = time.monotonic()
    output = deploy(status, "-y")
    print(f"\n{'-'.join(status['world'])}: no-change re-run {time.monotonic() - started:.0f} s")
    assert "= example.test: no DNS changes" in output
    total = [line for line in output.splitlines() if "Grand total" in line][0].split()
    assert total[3] == "-" and total[4] == "-", total  # no success (change), no error
    assert zone_text(status) == zone_before


# the VPS's unbound asked for a name with the DO bit: "rcode ad answers" (a raw query: the VPS
# has python3 but no dig)
AD_QUERY = ("python3 -c 'import socket,struct,sys\n"
            "n,t=sys.argv[1],int(sys.argv[2])\n"
            "q=struct.pack(\">HHHHHH\",7,0x0120,1,0,0,1)+b\"\".join(bytes([len(p)])+p.encode() "
            "for p in n.split(\".\"))+b\"\\0\"+struct.pack(\">HH\",t,1)"
            "+b\"\\0\"+struct.pack(\">HHIH\",41,1232,0x8000,0)\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(5)\n"
            "s.sendto(q,(\"127.0.0.1\",53));r=s.recv(4096);f=struct.unpack(\">H\",r[2:4])[0]\n"
            "print(f&15,int(bool(f&0x20)),struct.unpack(\">H\",r[6:8])[0])' ")


@only_in(DEFAULT_WORLD)
def test_dane_tlsa_is_signed_validated_by_the_hosts_unbound_and_matches_port_25(lab_host):
    """The signed lab zone gets the TLSA of certbot's key on the first deploy (the operation
    after the certificate); the VPS's unbound returns it validated (AD); it matches the
    certificate on 25 over IPv4 and IPv6 (the deploy's checks and here); Postfix sends with
    DANE through that resolver. (The second deploy's no change: the test above.)"""
    from types import SimpleNamespace

    from mailhost.checks.dane import presented_tlsa

    first = lab_host["first_deploy"]
    assert "DANE: TLSA of the new certificate's key in example.test" in first
    for what in (f"matches port 25 on {VPS4}", f"matches port 25 on {VPS6}",
                 "_25._tcp.mail.example.test signed (DNSSEC)"):
        assert re.search(rf"ok +dane: TLSA .*{re.escape(what)}", first), what
    name = "_25._tcp.mail.example.test"
    answer = dns.query.tcp(dns.message.make_query(name, "TLSA", want_dnssec=True),
                           lab_host["dns"]["server"], timeout=10)
    published = {r.to_text() for rrset in answer.answer if rrset.rdtype == 52 for r in rrset}
    assert {rrset.rdtype for rrset in answer.answer} == {52, 46}, answer  # TLSA, RRSIG
    settings = SimpleNamespace(mail_hostname=HOSTNAME)
    assert {presented_tlsa(settings, address) for address in (VPS4, VPS6)} == published
    assert ssh(AD_QUERY + f"{name} 52").split()[:2] == ["0", "1"]  # NOERROR, validated (AD)
    assert ssh(AD_QUERY + "mx.example.net 1").split() == ["0", "0", "1"]  # unsigned: no AD
    assert ssh("postconf -h smtp_tls_security_level smtp_dns_support_level").split() == [
        "dane", "dnssec"]
    assert ssh("cat /var/spool/postfix/etc/resolv.conf").count("nameserver 127.0.0.1") == 1


@only_in(WORLDS[2])
def test_cloudflare_says_pending_for_the_signed_lab_zone_without_ds_so_no_tlsa(lab_host):
    """Knot signs example.test, but no parent zone holds its DS: the lab's Cloudflare reports
    DNSSEC "pending" (lab.cloudflare.lab_server.dnssec_as_served), as Cloudflare does before
    the DS is at the registrar; the deploy publishes no TLSA and its plan says what to do."""
    assert ("no TLSA for _25._tcp.mail.example.test: zone example.test is not DNSSEC-signed "
            "(cloudflare); Cloudflare's DNSSEC status is \"pending\": add the DS record"
            in lab_host["first_deploy"])
    server = lab_host["dns"]["server"]
    keys = dns.query.tcp(dns.message.make_query("example.test", "DNSKEY"), server, timeout=10)
    assert [rrset.rdtype for rrset in keys.answer] == [48]  # signed: its DNSKEY set
    tlsa = dns.query.tcp(dns.message.make_query("_25._tcp.mail.example.test", "TLSA"), server,
                         timeout=10)
    assert tlsa.answer == []

# --- inbound mail checked by rspamd, and no forged From from the host's own users ---

# the standard GTUBE (refused by every filter) and rspamd's "add header" test pattern, which
# the lab's host obeys (spam_test_patterns = True); built here so no file is "spam" itself
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-" + "EMAIL*C.34X"
GTUBE_ADD_HEADER = "Y" + GTUBE[1:]
SEND_FROM_RX = """
import smtplib, sys
address, recipient, message = sys.argv[1], sys.argv[2], sys.stdin.read()
with smtplib.SMTP(address, 25, timeout=60) as client:
    client.ehlo("mx.example.net")
    client.sendmail("news@example.net", [recipient], message)
"""


def offer(recipient, body, from_header="friend@example.org", mail_from="friend@example.org"):
    """One message from outside (the lab bridge) to port 25; (Message-ID, final code, reply)."""
    message_id = f"<{time.time_ns()}@example.org>"
    message = (f"From: {from_header}\r\nTo: {recipient}\r\nSubject: inbound test\r\n"
               f"Message-ID: {message_id}\r\n\r\n{body}\r\n")
    code, reply = inbound.offer(VPS4, "mx.example.org", mail_from, recipient, message, 60)
    return message_id, code, reply


def stored_files(message_id, wait=30):
    """Message files (Maildir new/ and cur/, any folder) holding MESSAGE_ID, waiting up to
    WAIT s for one. Dovecot's index and cache files, which copy headers, are not messages."""
    deadline = time.monotonic() + wait
    while True:
        found = ssh(f"find /var/mail/vhosts -type f \\( -path '*/new/*' -o -path '*/cur/*' \\) "
                    f"-exec grep -lF '{message_id}' {{}} + 2>/dev/null").split()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(1)


def test_forged_from_of_the_lab_domain_is_refused_at_smtp_time(lab_host):
    """example.test publishes DMARC p=reject: a message from outside with From: ceo@example.test
    and no signature gets a 5xx after DATA (rspamd's dmarc module) and is stored nowhere."""
    assert "p=reject" in zone_text(lab_host)
    message_id, code, reply = offer("alice@example.test", "Please pay this invoice today.",
                                    from_header="CEO <ceo@example.test>")
    assert 500 <= code < 600 and "5.7.1" in reply, (code, reply)
    assert stored_files(message_id, wait=3) == []


def test_gtube_is_refused_at_smtp_time(lab_host):
    message_id, code, reply = offer("alice@example.test", GTUBE)
    assert 500 <= code < 600 and "5.7.1" in reply, (code, reply)
    assert stored_files(message_id, wait=3) == []


def test_a_mid_score_message_is_stored_with_x_spam_yes(lab_host):
    """rspamd's "add header" action: accepted, stored with X-Spam: Yes (Sieve, on the imap
    side, files it into Junk: the file is looked for in the whole mailbox)."""
    message_id, code, reply = offer("alice@example.test", GTUBE_ADD_HEADER)
    assert code == 250, (code, reply)
    (path,) = stored_files(message_id)
    headers = ssh(f"sed '/^\\r\\?$/q' {path}")
    assert "\nX-Spam: Yes" in "\n" + headers, headers


def test_inbound_mail_carries_authentication_results(lab_host):
    """From the receiver's network (mx.example.net, example.net's SPF "mx"): delivered to
    alice with rspamd's Authentication-Results: spf and dmarc pass, dkim none (unsigned); the
    sender's forged results in the host's name are gone (OpenDKIM; chasquid's delivery)."""
    message_id = f"<{time.time_ns()}@example.net>"
    message = (f"From: news@example.net\r\nTo: alice@example.test\r\nSubject: news\r\n"
               f"Authentication-Results: {HOSTNAME}; dkim=pass header.d=forged.example\r\n"
               f"Message-ID: {message_id}\r\nDate: {email.utils.formatdate()}\r\n\r\n"
               "The news of the day.\r\n")
    subprocess.run(["ip", "netns", "exec", RX_NETNS, sys.executable, "-c", SEND_FROM_RX, VPS4,
                    "alice@example.test"], input=message, text=True, check=True, timeout=90)
    (path,) = stored_files(message_id)
    stored = email.message_from_string(ssh(f"cat {path}"))
    results = [" ".join(v.split()) for v in stored.get_all("Authentication-Results", [])]
    assert not any("forged.example" in r for r in results), results
    ours = [r for r in results if "dmarc=" in r]
    assert ours, results
    assert "spf=pass" in ours[0] and "dmarc=pass" in ours[0] and "dkim=none" in ours[0], ours


FORGED_FROM = [
    # (From header lines alice writes, what the 5.7.1 reply says)
    (["bob@example.test"], "not owned by user alice@example.test"),
    (["a@example.net"], "not owned by user alice@example.test"),  # a domain the lab does not host
    (['"x" <ceo@example.test>,'], "cannot be parsed"),
    (["alice@example.test, bob@example.test"], "more than one address"),
    (["alice@example.test", "bob@example.test"], "more than one From header"),
]


@pytest.mark.parametrize("from_lines,reason", FORGED_FROM,
                         ids=["other-user", "other-domain", "trailing-comma", "two-addresses",
                              "two-headers"])
def test_a_user_may_send_only_as_one_address_she_owns(lab_host, from_lines, reason):
    """alice authenticated, envelope alice@example.test: the From header decides (rspamd's
    rule for Postfix, the post-data hook for chasquid); each refused with 5.7.1 and why."""
    headers = "".join(f"From: {line}\r\n" for line in from_lines)
    message = (f"{headers}To: inbox@example.net\r\nSubject: from rule\r\n"
               f"Message-ID: <{time.time_ns()}@example.test>\r\n\r\nhello\r\n")
    client = smtplib.SMTP(VPS4, 587, timeout=60)
    client._host = HOSTNAME
    with client:
        client.starttls(context=tls_context(lab_host))
        client.login("alice@example.test", lab_host["passwords"]["alice@example.test"])
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("alice@example.test", ["inbox@example.net"], message)
    text = refused.value.smtp_error.decode(errors="replace")
    assert refused.value.smtp_code >= 500 and "5.7.1" in text and reason in text, text


def test_a_user_sends_as_an_alias_she_owns_and_it_passes_at_the_receiver(lab_host):
    message = received(lab_host, submit(lab_host, 587, user="alice@example.test",
                                        sender="sales@example.test"))
    assert message.message["From"] == "sales@example.test"
    assert [message.verdicts[k] for k in ("dkim", "spf", "dmarc")] == ["pass"] * 3


def submit_headers(status, header_lines, port=587):
    """alice, authenticated on PORT (STARTTLS), sends a message with these header lines as
    bytes (a bare CR and UTF-8 reach the server as written: smtplib rewrites only text);
    (Message-ID, the SMTP error at any step, or None). Postfix allows 12 AUTH a minute from
    one client (anvil), fewer than these tests use: over it, the login waits and tries again."""
    message_id = f"<{time.time_ns()}@example.test>"
    message = "".join(f"{line}\r\n" for line in [
        *header_lines, "To: inbox@example.net", "Subject: from rule", f"Message-ID: {message_id}",
        f"Date: {email.utils.formatdate()}"]) + "\r\nhello\r\n"
    for attempt in range(4):
        client = smtplib.SMTP(VPS4, port, timeout=60)
        client._host = HOSTNAME
        try:
            with client:
                client.starttls(context=tls_context(status))
                client.login("alice@example.test", status["passwords"]["alice@example.test"])
                client.sendmail("alice@example.test", ["inbox@example.net"], message.encode())
            return message_id, None
        except smtplib.SMTPAuthenticationError as error:
            if attempt == 3 or b"too many AUTH" not in error.smtp_error:
                return message_id, error
            time.sleep(20)
        except smtplib.SMTPException as error:
            return message_id, error
    raise AssertionError("unreachable")


def smtp_code_and_text(error) -> tuple[int, str]:
    """The code and reply of a refusal at MAIL, RCPT or DATA."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        ((code, reply),) = error.recipients.values()
        return code, reply.decode(errors="replace")
    reply = getattr(error, "smtp_error", str(error).encode())
    return getattr(error, "smtp_code", 0), reply.decode(errors="replace")


# (header lines alice writes, what the refusal says: Postfix's words (rspamd's rule, on the
# headers as Postfix hands them on), then chasquid's (its hook, or chasquid itself))
FORGED_SENDER = [
    (["From: alice@example.test", "Sender: bob@example.test"],
     ("<bob@example.test>: Sender address not owned by user alice@example.test",) * 2),
    (["From: alice@example.test", "Resent-From: bob@example.test"],
     ("<bob@example.test>: Resent-From address not owned by user alice@example.test",) * 2),
    (["From: alice@example.test", "From: bob@example.test"], ("more than one From header",) * 2),
    # Postfix hands the value on with the CR turned into a space; chasquid refuses the line
    (["From: alice@example.test\rFrom: bob@example.test"],
     ("From header holds more than one address", "5.5.2 Error reading DATA: invalid line ending")),
    # Postfix takes "From :" for a From header (so does rspamd); the hook refuses the block
    (["From : bob@example.test"],
     ("From header missing", "a space before a header name's colon")),
    (["From: alice@example.test", "From : bob@example.test"],
     ("more than one From header", "a space before a header name's colon")),
]


@only_in(*BOTH_MTAS)
@pytest.mark.parametrize("header_lines,reasons", FORGED_SENDER,
                         ids=["sender", "resent-from", "two-from", "bare-cr-pair", "space-colon",
                              "space-colon-beside-from"])
def test_sender_resent_from_bare_cr_and_space_colon_are_refused(lab_host, header_lines, reasons):
    """The headers readers show as who sent the mail are bound like From; a bare CR pair and
    "From :" hide no second From: rspamd's rule for Postfix, the post-data hook (or chasquid
    itself) for chasquid, each with a 5xx and why; nothing reaches the receiver."""
    message_id, error = submit_headers(lab_host, header_lines)
    assert error is not None, f"{header_lines} accepted"
    code, text = smtp_code_and_text(error)
    reason = reasons[lab_host["world"][1] == "chasquid"]
    assert code >= 500 and reason in text, (code, text)
    assert "5.7.1" in text or "5.5.2" in reason
    with pytest.raises(TimeoutError):
        wait_for_message(lab_host["receiver"]["messages_dir"],
                         lambda m: message_id in m.message.get("Message-ID", ""), timeout=5)


@only_in(*BOTH_MTAS)
def test_a_bare_cr_in_another_header_never_hides_a_second_from(lab_host):
    """A bare CR pair in the Subject, a From behind it: chasquid refuses the line; Postfix turns
    the CRs into spaces before anything reads them, so what leaves holds one From, alice's."""
    message_id, error = submit_headers(
        lab_host, ["From: alice@example.test", "Subject: x\r\rFrom: bob@example.test"])
    if lab_host["world"][1] == "chasquid":
        assert error is not None and smtp_code_and_text(error)[0] >= 500, error
        return
    assert error is None, error
    message = received(lab_host, message_id)
    assert [str(v) for v in message.message.get_all("From")] == ["alice@example.test"]
    assert b"\r\r" not in message.raw and "From: bob" in str(message.message["Subject"])


@only_in(*BOTH_MTAS)
@pytest.mark.parametrize("from_value", ['"alice"@example.test', "Ålice <alice@example.test>"],
                         ids=["quoted-local-part", "utf8-display-name"])
def test_a_quoted_local_part_and_a_utf8_name_go_out_signed(lab_host, from_value):
    """The same mailbox written "alice"@, and an unquoted UTF-8 display name (RFC 6532): sent,
    and DKIM verifies at the receiver."""
    message_id, error = submit_headers(lab_host, [f"From: {from_value}"])
    assert error is None, error
    message = received(lab_host, message_id)
    assert message.verdicts["dkim"] == "pass", message.verdicts
    assert message.verdicts["dmarc"] == "pass", message.verdicts


@only_in(*BOTH_MTAS)
def test_with_rspamd_stopped_submission_fails_closed_and_25_stays_open(lab_host):
    """rspamd stopped (a restart, a crash): alice's From: bob is not accepted on 587 (Postfix
    defers every submission, milter_default_action = tempfail there; chasquid's hook holds
    the rule itself); mail from outside on 25 is still accepted, unchecked (README: inbound
    stays open by choice)."""
    ssh("systemctl stop rspamd")
    try:
        message_id, error = submit_headers(lab_host, ["From: bob@example.test"])
        assert error is not None, "From: bob accepted while rspamd was stopped"
        code, text = smtp_code_and_text(error)
        assert 400 <= code < 600, (code, text)
        inbound_id, inbound_code, reply = offer("alice@example.test", "rspamd is away")
        assert inbound_code == 250, (inbound_code, reply)
    finally:
        ssh("systemctl start rspamd")
    with pytest.raises(TimeoutError):
        wait_for_message(lab_host["receiver"]["messages_dir"],
                         lambda m: message_id in m.message.get("Message-ID", ""), timeout=5)
    assert stored_files(inbound_id)


@only_in(BOTH_MTAS[1])
@pytest.mark.parametrize("address", [VPS4, VPS6], ids=["ipv4", "ipv6"])
def test_chasquid_refuses_tls_1_0_and_1_1(lab_host, address):
    """Ubuntu 24.04's chasquid 1.13 (Go 1.22) with the deploy's GODEBUG=tls10server=0: a
    client offering only TLS 1.0/1.1 is refused on 25, 587 and 465, over both families."""
    assert "GODEBUG=tls10server=0" in ssh("systemctl show -p Environment chasquid.service")
    for port in (25, 587, 465):
        with pytest.raises(ssl.SSLError):
            if port == 465:
                client = smtplib.SMTP_SSL(context=smtp_checks.legacy_context(), timeout=30)
                client._host = HOSTNAME
                client.connect(address, port)
            else:
                client = smtplib.SMTP(address, port, timeout=30)
                client.starttls(context=smtp_checks.legacy_context())
            client.close()


def test_forwarding_does_not_forward_what_rspamd_refuses(lab_host):
    """GTUBE to fwd@example.test (forwarded to inbox@example.net) is refused at SMTP time and
    never reaches the receiver; clean mail to it is forwarded (the SRS test above)."""
    message_id, code, reply = offer("fwd@example.test", GTUBE)
    assert 500 <= code < 600 and "5.7.1" in reply, (code, reply)
    with pytest.raises(TimeoutError):
        wait_for_message(lab_host["receiver"]["messages_dir"],
                         lambda m: message_id in m.message.get("Message-ID", ""), timeout=10)


def test_rspamd_memory_fits_a_small_vps(lab_host):
    """The memory rspamd's processes (and Redis, when greylisting) add: proportional set size
    (shared pages counted once, not once per worker as RSS does)."""
    rows = ssh("for p in $(pgrep -x rspamd; pgrep -x redis-server); do "
               "awk '/^(Rss|Pss):/ {printf \"%s \", $2}' /proc/$p/smaps_rollup; echo; done")
    sizes = [[int(kib) for kib in row.split()] for row in rows.splitlines() if row.strip()]
    rss, pss = sum(r for r, _ in sizes), sum(p for _, p in sizes)
    print(f"\n{'-'.join(lab_host['world'])}: rspamd {pss / 1024:.0f} MiB PSS "
          f"({rss / 1024:.0f} MiB RSS summed) in {len(sizes)} processes")
    assert len(sizes) >= 4 and 0 < pss < 400 * 1024, rows


# --- MTA-STS (nginx on 443) and a forced renewal: read-only but for the renewal ---

POLICY_HOST = "mta-sts.example.test"
POLICY_URL_PATH = "/.well-known/mta-sts.txt"


def https_get(status, address, path=POLICY_URL_PATH, server_name=POLICY_HOST):
    """GET over HTTPS from one address, the certificate verified against Pebble's root for
    ``server_name``: (status, Content-Type, body, the certificate's serial)."""
    context = tls_context(status)
    connection = http.client.HTTPSConnection(server_name, 443, timeout=30, context=context)
    connection.sock = context.wrap_socket(socket.create_connection((address, 443), timeout=30),
                                          server_hostname=server_name)
    serial = connection.sock.getpeercert()["serialNumber"]
    with contextlib.closing(connection):
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read().decode(), \
            serial


@only_in(*BOTH_MTAS)
def test_mta_sts_policy_is_served_over_ipv4_and_ipv6_and_passes_the_checks(lab_host):
    """nginx serves the enforce policy with Pebble's certificate (which names mta-sts.DOMAIN)
    on both families, 404 for any other path or name, nothing on 80; the TXT id is the text's;
    the deploy's MTA-STS checks passed."""
    expected = mta_sts.policy_text("enforce", [HOSTNAME], 604800)
    for address in (VPS4, VPS6):
        code, content_type, body, _ = https_get(lab_host, address)
        assert (code, content_type, body) == (200, "text/plain", expected)
        assert https_get(lab_host, address, path="/")[0] == 404
        assert https_get(lab_host, address, server_name=HOSTNAME)[0] == 404
    assert f'"{mta_sts.txt_record(expected)}"' in zone_text(lab_host)
    assert ssh("ss -ltnH 'sport = :80'").strip() == ""
    passed = [line for line in lab_host["first_deploy"].splitlines()
              if "ok    mta-sts: " in line]
    assert len(passed) == 3, lab_host["first_deploy"][-3000:]  # the TXT, IPv4, IPv6
    rows = [line.split() for line in ssh(
        "for p in $(pgrep -x nginx); do awk '/^(Rss|Pss):/ {printf \"%s \", $2}' "
        "/proc/$p/smaps_rollup; echo; done").splitlines() if line.strip()]
    print(f"\n{'-'.join(lab_host['world'])}: nginx {sum(int(r[1]) for r in rows) / 1024:.1f} MiB"
          f" PSS ({sum(int(r[0]) for r in rows) / 1024:.1f} MiB RSS summed) in {len(rows)} "
          "processes")


def presented_serial(status, address, port):
    """The serial of the certificate a TLS port presents (STARTTLS on 25 and 587)."""
    context = tls_context(status)
    if port in (25, 587):
        client = smtplib.SMTP(address, port, timeout=30)
        client._host = HOSTNAME  # verify the certificate for the mail host's name
        with client:
            client.starttls(context=context)
            return client.sock.getpeercert()["serialNumber"]
    if port == 443:
        return https_get(status, address)[3]
    with context.wrap_socket(socket.create_connection((address, port), timeout=30),
                             server_hostname=HOSTNAME) as tls:
        return tls.getpeercert()["serialNumber"]


TLS_PORTS = (25, 465, 587, 993, 443)
RENEW = (f"REQUESTS_CA_BUNDLE={paths.ACME_CA_BUNDLE} certbot renew --force-renewal "
         "--no-random-sleep-on-renew --cert-name mail.example.test >/dev/null 2>&1; echo $?")


@only_in(DEFAULT_WORLD)
def test_a_forced_renewal_reaches_every_tls_port_on_both_families(lab_host):
    """certbot renews (HTTP-01 for both names, its hooks open and close 80); the deploy hook
    hands the new certificate to Postfix, Dovecot and nginx: a new serial on every TLS port
    over IPv4 and IPv6, and the MTA-STS policy still served."""
    before = {presented_serial(lab_host, VPS4, port) for port in TLS_PORTS}
    assert len(before) == 1, before
    assert ssh(RENEW).strip() == "0"
    deadline, found = time.monotonic() + 30, {}
    while time.monotonic() < deadline:  # the reloads are asynchronous
        found = {(address, port): presented_serial(lab_host, address, port)
                 for address in (VPS4, VPS6) for port in TLS_PORTS}
        if len(set(found.values())) == 1 and set(found.values()) != before:
            break
        time.sleep(1)
    assert len(set(found.values())) == 1 and set(found.values()) != before, (before, found)
    assert https_get(lab_host, VPS6)[:3] == (
        200, "text/plain", mta_sts.policy_text("enforce", [HOSTNAME], 604800))
    assert "80/tcp" not in ssh("ufw status")


def connects(address, port) -> bool:
    """Whether this machine opens a TCP connection to the VPS's address:port within 3 s."""
    try:
        socket.create_connection((address, port), timeout=3).close()
    except OSError:
        return False
    return True


@only_in(DEFAULT_WORLD)
def test_mta_sts_turned_off_leaves_no_nginx_then_on_again_serves_the_policy(lab_host,
                                                                          monkeypatch):
    """Deployed with mta_sts_mode "off": nginx inactive and disabled, our nginx.conf and
    policies gone, 443 closed on both families, the records left with the plan's notice
    (RFC 8461 8.3), and a second run changes nothing; deployed with "enforce" again (the tests
    after it need it): served again."""
    started = time.monotonic()
    monkeypatch.setenv("MAILHOST_LAB_MTA_STS", "off")
    try:
        output = deploy(lab_host, "-y")
        assert no_change(deploy(lab_host, "-y"))  # nothing left to retire
    finally:
        monkeypatch.delenv("MAILHOST_LAB_MTA_STS")
    assert "! NOTICE   mta_sts_mode is off for example.test" in output, output[-3000:]
    assert unit_states(["nginx"]) == ["inactive disabled"]
    assert ssh("ls -d /etc/nginx/nginx.conf /etc/nginx/mta-sts 2>/dev/null").strip() == ""
    assert not connects(VPS4, 443) and not connects(VPS6, 443)
    expected = mta_sts.policy_text("enforce", [HOSTNAME], 604800)
    assert f'"{mta_sts.txt_record(expected)}"' in zone_text(lab_host)  # left as it is
    deploy(lab_host, "-y")
    assert unit_states(["nginx"]) == ["active enabled"]
    for address in (VPS4, VPS6):
        assert https_get(lab_host, address)[:3] == (200, "text/plain", expected)
    print(f"\nMTA-STS off and on again: {time.monotonic() - started:.0f} s")


def published_tlsa(lab_host) -> set[str]:
    name = "_25._tcp.mail.example.test"
    answer = dns.query.tcp(dns.message.make_query(name, "TLSA"), lab_host["dns"]["server"],
                           timeout=10)
    return {r.to_text() for rrset in answer.answer if rrset.rdtype == 52 for r in rrset}


def tlsa_of_host_key(path) -> str | None:
    from mailhost.keys.dane import tlsa_of_public_key
    return tlsa_of_public_key(ssh(f"test -f {path} && openssl pkey -in {path} -pubout "
                                  "-outform DER | base64 -w0").strip() or None)


@only_in(*BOTH_MTAS, WORLDS[3])  # and certbot 1.21 (ubuntu-22.04) reusing the key it finds
def test_a_tls_key_rollover_prepublishes_the_next_tlsa_and_switches_after_twice_the_ttl(
        lab_host, monkeypatch):
    """scripts/rotate-tls-key; --dry shows the step and writes nothing; deploy 1 makes the next
    key on the host and publishes its TLSA beside the current one; deploy 2 records it answered
    everywhere; deploy 3 (twice the TTL, 300 s, later on the lab's clock) has certbot renew over
    it: the TLSA set is the new key alone, and every TLS port on both families presents a
    certificate over it; the checks pass at each step; mail still flows; then nothing changes."""
    from types import SimpleNamespace

    from mailhost.checks.dane import presented_tlsa

    settings = SimpleNamespace(mail_hostname=HOSTNAME)
    old = tlsa_of_host_key(dane.certificate_key_path(HOSTNAME))
    assert published_tlsa(lab_host) == {old}
    code, said = run_in_world(lab_host, sys.executable, "-m", "mailhost.cli.rotate_tls_key",
                              "inventory/lab.py", HOSTNAME)
    assert code == 0 and "the next deploy makes the next key" in said, said
    zone_before = zone_text(lab_host)
    dry = deploy(lab_host, "--dry")
    assert "DANE mail.example.test: key rollover; now: make the next key" in dry, dry[-3000:]
    assert dane.NEXT_PENDING in dry and zone_text(lab_host) == zone_before
    assert tlsa_of_host_key(paths.NEXT_KEY) is None
    start = datetime.now(UTC).replace(microsecond=0)
    serials = {presented_serial(lab_host, VPS4, port) for port in TLS_PORTS}
    for offset, said in [(timedelta(0), "now: make the next key"),
                         (timedelta(minutes=1), "now: record that every authoritative server"),
                         (timedelta(minutes=12), "now: renew the certificate over the next key")]:
        monkeypatch.setenv("MAILHOST_LAB_NOW", (start + offset).isoformat())
        new = tlsa_of_host_key(paths.NEXT_KEY)
        output = deploy(lab_host, "-y")
        assert said in output, output[-3000:]
        assert re.search(rf"ok +dane: TLSA .*matches port 25 on {re.escape(VPS6)}", output)
        if offset < timedelta(minutes=12):
            new = tlsa_of_host_key(paths.NEXT_KEY)
            assert new not in (None, old) and published_tlsa(lab_host) == {old, new}
            assert {presented_tlsa(settings, a) for a in (VPS4, VPS6)} == {old}
    assert "key-rollover: " not in output
    assert published_tlsa(lab_host) == {new}
    assert {presented_tlsa(settings, a) for a in (VPS4, VPS6)} == {new}
    after = {presented_serial(lab_host, address, port)
             for address in (VPS4, VPS6) for port in TLS_PORTS}
    assert len(after) == 1 and after != serials, (serials, after)
    left = [paths.NEXT_KEY, paths.NEXT_KEY_SEEN, paths.TLS_HELD]
    assert ssh(f"ls -d {' '.join(left)} 2>/dev/null").split() == []  # the old key went too
    assert received(lab_host, submit(lab_host, 587)).verdicts["dkim"] == "pass"
    monkeypatch.setenv("MAILHOST_LAB_NOW", (start + timedelta(minutes=13)).isoformat())
    output = deploy(lab_host, "-y")
    assert "DANE mail.example.test: key steady" in output
    total = [line for line in output.splitlines() if "Grand total" in line][0].split()
    assert total[3] == "-" and total[4] == "-", total
    assert "= example.test: no DNS changes" in output


@only_in(DEFAULT_WORLD)
def test_the_receivers_reports_are_read_by_scripts_reports(lab_host):
    """A message sent; the receiver sends its DMARC aggregate report (zipped XML) and its
    TLS report (gzipped JSON) to dmarc@ and tlsrpt@example.test (aliases of alice) over port 25;
    scripts/reports reads them over IMAPS: the host a source, DKIM and SPF aligned, the TLS
    session counted."""
    received(lab_host, submit(lab_host, 587))
    sent = subprocess.run(
        ["ip", "netns", "exec", RX_NETNS, sys.executable, "-m", "lab.receiver",
         "send-reports", "--store", lab_host["receiver"]["messages_dir"],
         "--dns", lab_host["dns"]["server"], "--ca-file", lab_host["acme"]["root_ca_file"]],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert sent.returncode == 0, sent.stderr[-2000:]
    kinds = {(r["kind"], r["domain"], tuple(r["to"]))
             for r in json.loads(sent.stdout.splitlines()[-1])}
    assert kinds == {("dmarc", "example.test", ("dmarc@example.test",)),
                     ("tls", "example.test", ("tlsrpt@example.test",))}
    for _ in range(30):  # delivery through rspamd and Dovecot's LMTP takes a moment
        result = subprocess.run([str(ROOT / "scripts" / "reports"), "inventory/lab.py",
                                 "--json"], cwd=ROOT, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stdout[-1000:] + result.stderr[-2000:]
        entry = json.loads(result.stdout)[HOSTNAME]["domains"]["example.test"]
        if entry["dmarc"]["reports"] and entry["tls"]["reports"]:
            break
        time.sleep(1)
    assert json.loads(result.stdout)[HOSTNAME]["unparsed"] == []
    ours = [s for s in entry["dmarc"]["sources"] if s["ip"] in (VPS4, VPS6)]
    assert ours and sum(s["messages"] for s in ours) >= 1, entry["dmarc"]
    for source in ours:  # Postfix delivers over either family
        assert (source["kind"], source["ptr"]) == ("this host", HOSTNAME), source
        assert source["rates"]["dkim_aligned"] == source["rates"]["spf_aligned"] == 1.0, source
    assert entry["tls"]["successful_sessions"] >= 1, entry["tls"]
    assert entry["tls"]["failures"] == {}, entry["tls"]
    assert entry["ladder"]["policy"] == "reject" and entry["ladder"]["next"] is None


RELAY_HOST = RELAY_HOSTNAME  # the lab's relay (scripts/lab up), at RELAY4


def vps_connects(address, port) -> bool:
    """Whether the VPS opens a TCP connection to address:port within 3 s."""
    script = f"exec 3<>/dev/tcp/{address}/{port}"
    return ssh(f"timeout 3 bash -c '{script}' 2>/dev/null && echo yes").strip() == "yes"


@only_in(DEFAULT_WORLD)
def test_mail_leaves_through_the_relay_while_outbound_25_is_blocked(lab_host, monkeypatch):
    """The VPS's outbound port 25 blocked on the bridge, as providers block it: direct SMTP
    fails, 587 to the lab's relay does not. Deployed with the relay (MAILHOST_LAB_RELAY=1, at
    -vvv: the relay's password appears nowhere), a user's message reaches the receiver from the
    relay's address, DKIM (ours), SPF (the relay's record, included) and DMARC passing; the
    checks report port 25 blocked without failing the run. Then unblocked and deployed without
    the relay (the plan drops the relay's SPF include it wrote itself): Postfix's files and
    the zone are as before, and the next deploy changes nothing."""
    relay_password = tomllib.loads(Path(lab_host["secrets_file"]).read_text())["relay_password"]
    config = "cat /etc/postfix/main.cf /etc/postfix/sasl_passwd; wc -c < /etc/postfix/sasl_passwd"
    host_before, zone_before = ssh(config), records(zone_text(lab_host))
    started = time.monotonic()
    lab("block-smtp", "on")
    try:
        assert not vps_connects(RECEIVER[4], 25) and not vps_connects(RECEIVER[6], 25)
        assert vps_connects(RELAY4, 587)
        monkeypatch.setenv("MAILHOST_LAB_RELAY", "1")
        output = deploy(lab_host, "-y", "-vvv")
        assert leaked({"relay_password": relay_password}, output) == []
        assert "include:relay.example.net" in zone_text(lab_host)
        checks = [line for line in output.splitlines() if "host: outbound SMTP" in line
                  or "host: relay [relay.example.net]:587 reachable" in line]
        assert any("warn  host: outbound SMTP to mx.example.net:25" in line for line in checks)
        assert any("ok    host: relay [relay.example.net]:587 reachable" in line
                   for line in checks), checks
        message = received(lab_host, submit(lab_host, 587))
    finally:
        lab("block-smtp", "off")
        monkeypatch.delenv("MAILHOST_LAB_RELAY", raising=False)
    assert (message.meta["peer"], message.meta["helo"]) == (RELAY4, RELAY_HOST)
    assert [message.verdicts[k] for k in ("dkim", "spf", "dmarc", "iprev")] == ["pass"] * 4
    # the include is no longer in the settings: the SPF record found is the one this
    # controller wrote (its memory, secrets/dns/example.test/written.json), so the plan drops the
    # include without dns_force
    output = deploy(lab_host, "-y")
    assert "include:relay.example.net" not in zone_text(lab_host)
    assert (ssh(config), records(zone_text(lab_host))) == (host_before, zone_before)
    assert no_change(deploy(lab_host, "-y"))
    print(f"\nrelay test: {time.monotonic() - started:.0f} s")


def queued():
    """The messages in Postfix's queue files (stopped or not)."""
    return int(ssh("find /var/spool/postfix/deferred /var/spool/postfix/active "
                   "/var/spool/postfix/incoming -type f | wc -l").strip())


def wait_until(predicate, timeout=60, interval=1):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(interval)


@only_in(DEFAULT_WORLD)
def test_queued_mail_survives_a_redeploy_and_a_reboot_and_holds_back_a_switch(lab_host):
    """The receiver is down (451) for a while: the message waits in the queue through a
    deploy and a reboot of the VPS (systemctl reboot; the network state starts empty); after the
    reboot every service, the firewall, IPv6 and the certificate are back with no deploy and
    the checks pass; a switch of MTA stops before changing anything while the queue holds the
    message; once the receiver is back, the message arrives exactly once."""
    tempfail = Path(lab_host["receiver"]["tempfail_flag"])
    tempfail.touch()
    try:
        message_id = submit(lab_host, 587)
        wait_until(lambda: queued() == 1)
        deploy(lab_host, "-y")
        assert queued() == 1
        booted = ssh("cat /proc/sys/kernel/random/boot_id")
        lab("reboot")
        assert ssh("cat /proc/sys/kernel/random/boot_id") != booted
        assert queued() == 1
        units = ["postfix", "opendkim", "postsrsd", "dovecot", "rspamd", "ufw"]
        assert unit_states(units) == ["active enabled"] * len(units), unit_states(units)
        firewall = ssh("ufw status")
        assert "Status: active" in firewall and "587/tcp" in firewall, firewall
        after = ssh(IPV6_STATE).splitlines()  # eth0's index is new: a new namespace
        assert after[0] == "0" and f"inet6 {VPS6}/64" in after[1], after
        code, output = run_in_world(lab_host, str(ROOT / "scripts" / "check"), "inventory/lab.py")
        assert code == 0, output[-3000:]
        queue_line = next(line for line in output.splitlines() if "mail queue not stuck" in line)
        assert queue_line.startswith("ok") and "1 queued" in queue_line  # real `postqueue -j`
        other = dict(lab_host, world=(*lab_host["world"][:1], "chasquid", *lab_host["world"][2:]))
        code, output = run_in_world(other, PYINFRA, "-y", "inventory/lab.py", "deploy.py")
        assert code != 0 and "postfix queue still holds 1 message(s)" in output, output[-3000:]
        assert "postqueue -f" in output
        assert unit_states(["postfix", "chasquid"])[0] == "active enabled"
        assert "not installed" in ssh("dpkg -s chasquid 2>&1 || echo not installed")
    finally:
        tempfail.unlink()
    ssh("postqueue -f")
    received(lab_host, message_id)
    wait_until(lambda: queued() == 0)
    matching = [m for m in list_messages(lab_host["receiver"]["messages_dir"])
                if message_id in m.message.get("Message-ID", "")]
    assert len(matching) == 1


def deploy_killed_at(lab_host, operation: str, then=None) -> str:
    """The deploy, killed (SIGKILL: the laptop's connection is gone) once the operation whose
    name starts with OPERATION has started, after THEN() returns (e.g. waits for something on
    the host); returns what it printed. The deploy must not have finished."""
    env = dict(world_env(lab_host), PYTHONUNBUFFERED="1")
    deploy_ = subprocess.Popen([PYINFRA, "-y", "inventory/lab.py", "deploy.py"], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    lines = []
    for line in deploy_.stdout:
        lines.append(line)
        if re.sub(r"\x1b\[[0-9;]*m", "", line).startswith(f"--> Starting operation: {operation}"):
            if then:
                then()
            os.killpg(deploy_.pid, signal.SIGKILL)
            break
    deploy_.wait(timeout=60)
    output = "".join(lines) + deploy_.stdout.read()
    assert deploy_.returncode == -signal.SIGKILL, output[-3000:]
    return output


def no_change(output: str) -> bool:
    total = [line for line in output.splitlines() if "Grand total" in line][0].split()
    return total[3] == "-" and total[4] == "-"


def kill_dpkg_once_running():
    """Wait until dpkg runs on the host, then kill it and apt (the VPS lost power mid-install)."""
    wait_until(lambda: ssh("pidof dpkg").strip() != "", timeout=120, interval=0.2)
    ssh("kill -9 $(pidof apt-get dpkg) 2>/dev/null; true")


@only_in(DEFAULT_WORLD)
def test_a_fresh_deploy_killed_at_each_step_converges_on_the_next_run(lab_host):
    """A fresh VPS; the deploy killed once in each component (dpkg killed too, mid-install;
    then the firewall, TLS, the MTA's configuration, the DNS apply, the certificate): after
    each kill SSH still answers; the next run converges (finishing the interrupted install,
    checks pass), leaves no service hold, and the run after it changes nothing."""
    lab("up", "--fresh")
    steps = [("Install ", kill_dpkg_once_running), ("Firewall:", None),
             ("TLS fullchain.pem", None), ("/etc/postfix/main.cf", None),
             ("DNS records of", None), ("Certificate for", None)]
    outputs = []
    for operation, then in steps:
        outputs.append(deploy_killed_at(lab_host, operation, then))
        assert ssh("echo up").strip() == "up", f"SSH lost after a kill at {operation}"
    assert "Finish an interrupted package install" in outputs[1], outputs[1][-3000:]
    output = deploy(lab_host, "-y")
    assert "Checks of the mail host" in output
    assert ssh("test -e /usr/sbin/policy-rc.d && echo held").strip() == ""
    assert no_change(deploy(lab_host, "-y"))
    message = received(lab_host, submit(lab_host, 587))
    assert [message.verdicts[k] for k in ("dkim", "spf", "dmarc")] == ["pass"] * 3
@only_in(DEFAULT_WORLD)
def test_warmup_transports_are_read_back_from_postconf(lab_host, monkeypatch):
    """Runs just before the rebuild (which starts from a fresh VPS): a deploy with
    warmup_start today puts the provider domains through paced transports, as postconf and
    the transport table on the host say."""
    monkeypatch.setenv("MAILHOST_LAB_WARMUP_START", time.strftime("%Y-%m-%d", time.gmtime()))
    deploy(lab_host, "-y")
    services = ssh("postconf -M warmupgoogle/unix warmupmicrosoft/unix warmupyahoo/unix")
    assert len(services.splitlines()) == 3 and all(
        line.split()[7] == "smtp" for line in services.splitlines()), services
    main = ssh("postconf -h transport_maps warmupgoogle_destination_concurrency_limit "
               "warmupgoogle_destination_rate_delay warmupyahoo_destination_rate_delay")
    assert main.split() == ["hash:/etc/postfix/transport", "1", "60s", "60s"], main
    routes = ssh("postmap -q gmail.com hash:/etc/postfix/transport; "
                 "postmap -q outlook.com hash:/etc/postfix/transport; "
                 "postmap -q example.net hash:/etc/postfix/transport || echo none")
    assert routes.split() == ["warmupgoogle:", "warmupmicrosoft:", "none"], routes


def records(zone: str) -> list[str]:
    """The zone's records but its SOA, its DNSSEC signatures and keys (the lab signs it) and
    the TLSA (a rebuilt host's certbot makes a new key: DANE pins the new one)."""
    skipped = (" SOA ", " RRSIG ", " NSEC ", " DNSKEY ", " CDS ", " CDNSKEY ", " TLSA ")
    return [line for line in zone.splitlines() if not any(kind in line for kind in skipped)]


def host_dkim_public_key():
    """The public half of the host's RSA key (one after a finished rotation: the signing one)."""
    return ssh("openssl pkey -pubout -in $(ls /etc/mailhost/dkim/example.test/*.rsa.pem)")


def signed_with(message) -> str:
    """The selector (s=) of the message's DKIM signature."""
    tags = dict(t.strip().split("=", 1) for t in str(message.message["DKIM-Signature"]).split(";")
                if "=" in t)
    return "".join(tags["s"].split())


@only_in(*BOTH_MTAS)
def test_dkim_rotation_walks_every_phase_one_deploy_at_a_time(lab_host, monkeypatch):
    """The lab's clock (MAILHOST_LAB_NOW) 181 days on: the next key published beside the old,
    seen everywhere, signing switched after twice the TTL (300 s), the old record and keys
    gone dkim_retire_days (7) later; mail passes DKIM at every phase; then nothing changes."""
    # the controller's keys outlive each world's VPS: start from the key that signs now
    keys_dir = Path(lab_host["secrets_file"]).parent / "secrets" / "dkim" / "example.test"
    state = from_json((keys_dir / "rotation.json").read_text())[0]
    old, start = state.signing, state.signer.created + timedelta(days=181)
    new = selector_on(Policy("mail", 180, 7, 300), start, [old])
    both = sorted([old, new])
    # (clock, what the deploy says, selectors published after it, the signing selector)
    phases = [(timedelta(0), f"publish new key {new}", both, old),
              (timedelta(minutes=1), f"signing switches to {new} after", both, old),
              (timedelta(minutes=12), f"now: sign with {new}", both, new),
              (timedelta(days=7, minutes=12), f"now: remove {old};", [new], new)]
    for offset, said, selectors, signer in phases:
        monkeypatch.setenv("MAILHOST_LAB_NOW", (start + offset).isoformat())
        output = deploy(lab_host, "-y")
        assert "DKIM example.test: " in output and said in output, output[-3000:]
        published = sorted(line.split("._domainkey")[0] for line in
                           records(zone_text(lab_host)) if "._domainkey" in line)
        assert published == selectors, published
        message = received(lab_host, submit(lab_host, 587))
        assert message.verdicts["dkim"] == "pass" and signed_with(message) == signer
    assert sorted(p.name for p in keys_dir.iterdir()) == [f"{new}.rsa.pem", "rotation.json"]
    assert ssh("ls /etc/mailhost/dkim/example.test").split() == [f"{new}.rsa.pem",
                                                                  "rotation.json"]
    zone_before = zone_text(lab_host)
    output = deploy(lab_host, "-y")
    total = [line for line in output.splitlines() if "Grand total" in line][0].split()
    assert total[3] == "-" and total[4] == "-", total
    assert "= example.test: no DNS changes" in output and zone_text(lab_host) == zone_before


def backup_check(lab_host) -> dict:
    """The backup's entry of scripts/check --json, in this world."""
    _, mta, provider, challenge = lab_host["world"]
    result = subprocess.run([str(ROOT / "scripts" / "check"), "inventory/lab.py", "--json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, MAILHOST_LAB_MTA=mta,
                                     MAILHOST_LAB_PROVIDER=provider,
                                     MAILHOST_LAB_ACME_CHALLENGE=challenge))
    (entry,) = [e for e in json.loads(result.stdout) if e["name"] == "host: a recent backup"]
    return entry


def deploy_with_the_ca_down(lab_host) -> str:
    """The first deploy of a new VPS while the ACME CA is down: the run fails, its certificate
    step with certbot's message and its checks naming the certificate, but mail flows on the
    self-signed certificate (in on 25, out with dkim=pass, submission for a client that
    accepts it). With the CA back the next run gets the certificate, and every TLS port on both
    families presents it. Returns the first run's output."""
    lab("ca-down")
    code, output = run_in_world(lab_host, PYINFRA, "-y", "inventory/lab.py", "deploy.py")
    assert code != 0, output[-3000:]
    certificate_step = output[output.index("Starting operation: Certificate for"):]
    assert "Error" in certificate_step[:3000], certificate_step[:3000]
    failed = [line for line in output.splitlines() if "required check(s) failed" in line]
    assert failed and "certificate" in failed[-1], output[-3000:]
    assert "self-signed" in output, output[-3000:]
    for port in TLS_PORTS:
        with pytest.raises(ssl.SSLCertVerificationError):
            presented_serial(lab_host, VPS4, port)
    forwarded = received(lab_host, send_from_outside("fwd@example.test", "while the CA is down"))
    assert forwarded.verdicts["spf"] == "pass"
    accepting = ssl.create_default_context()
    accepting.check_hostname, accepting.verify_mode = False, ssl.CERT_NONE
    message = received(lab_host, submit(lab_host, 587, context=accepting))
    assert message.verdicts["dkim"] == "pass"
    lab("up")  # the CA is back (with a new issuing root, as every Pebble start)
    again = deploy(lab_host, "-y")
    assert "Certificate for mail.example.test" in again
    found = {presented_serial(lab_host, address, port)
             for address in (VPS4, VPS6) for port in TLS_PORTS}
    assert len(found) == 1, found
    return output


@only_in(*REBUILT)
def test_rebuilt_vps_keeps_its_dkim_key_dns_and_mail_flow(lab_host, monkeypatch):
    """Runs last (before the switch): a backup (restic, to the lab's SFTP server), then the
    VPS destroyed and built fresh from the rootfs, deployed with restore_from_backup (in the
    default world while the ACME CA is down, then again with it back): the mail delivered
    before is read over IMAP after; a second run restores nothing."""
    key_before, zone_before = host_dkim_public_key(), records(zone_text(lab_host))
    assert "BEGIN PUBLIC KEY" in key_before
    kept = send_from_outside("alice@example.test", "kept across the rebuild")
    fetch_over_imap(lab_host, kept)
    assert "First backup (restic)" in lab_host["first_deploy"]
    started = time.monotonic()
    ssh("systemctl start mailhost-backup.service")
    print(f"\n{world_id(lab_host['world'])}: backup run {time.monotonic() - started:.1f} s")
    assert backup_check(lab_host)["status"] == "ok"
    lab("up", "--fresh")
    assert "No such file" in ssh("ls /etc/mailhost/dkim 2>&1")  # really a new machine
    monkeypatch.setenv("MAILHOST_LAB_RESTORE", "1")  # restore_from_backup (inventory/lab.py)
    if lab_host["world"] == DEFAULT_WORLD:
        output = deploy_with_the_ca_down(lab_host)
    else:
        output = deploy(lab_host, "-y")
    # before anything delivers: Dovecot (LMTP, both MTAs) starts after the restore
    assert (output.index("Restore the mailboxes from the latest backup")
            < output.index("dovecot running and enabled"))
    assert "= example.test: no DNS changes" in output
    assert host_dkim_public_key() == key_before
    assert records(zone_text(lab_host)) == zone_before  # the SOA serial moves with DNS-01
    assert "Subject: kept across the rebuild" in fetch_over_imap(lab_host, kept, timeout=5)
    assert "restored snapshot" in ssh("cat /etc/mailhost/backup/restored")
    assert "Restore the mailboxes" not in deploy(lab_host, "-y")  # once only
    message = received(lab_host, submit(lab_host, 587))
    assert [message.verdicts[k] for k in ("dkim", "spf", "dmarc")] == ["pass"] * 3


def unit_states(units):
    return ssh("; ".join(f"echo $(systemctl is-active {u}) $(systemctl is-enabled {u} 2>&1)"
                         for u in units)).splitlines()


@only_in(*SWITCHED)
def test_switch_to_the_other_mta_and_back(lab_host):
    """Runs last: the old MTA stopped and disabled, the new one on 25/587/465 (IPv4 and IPv6)
    passing dkim/spf/dmarc, every message delivered before still readable over IMAP; back
    again, and then a run changes nothing. In the default world the first switch is killed
    before its restarts: the next run does them."""
    image, mta, provider, challenge = lab_host["world"]
    other = "chasquid" if mta == "postfix" else "postfix"
    kept = [("INBOX", send_from_outside("alice@example.test", f"via {mta}")),
            ("Junk", send_from_outside("alice@example.test", f"spam via {mta}", SPAM_MARK))]
    for folder, message_id in kept:
        fetch_over_imap(lab_host, message_id, folder=folder)
    for new, old in [(other, mta), (mta, other)]:
        world = dict(lab_host, world=(image, new, provider, challenge))
        if lab_host["world"] == DEFAULT_WORLD and new == other:
            # the laptop gone midway: every file of the new MTA written, no restart done yet
            deploy_killed_at(world, f"{old} stopped and disabled")
            assert ssh(f"test -e {paths.RESTARTS_OWED} && echo owed").strip() == "owed"
            output = deploy(world, "-y")
            assert "Restart dovecot" in output, output[-3000:]  # owed by the stopped run
            assert ssh(f"test -e {paths.RESTARTS_OWED} && echo owed").strip() == ""
        else:
            deploy(world, "-y")
        assert all(line.startswith("inactive disabled") or line.startswith("inactive not-found")
                   for line in unit_states(MTA_UNITS[old])), unit_states(MTA_UNITS[old])
        listeners = ssh("ss -ltnpH '( sport = :25 or sport = :587 or sport = :465 )'")
        ports = {line.split()[3].rsplit(":", 1)[1] for line in listeners.splitlines()}
        assert ports == {"25", "587", "465"}, listeners
        assert all(LISTENER[new] in line for line in listeners.splitlines()), listeners
        for address in (VPS4, VPS6):
            message = received(lab_host, submit(lab_host, 587, address=address))
            assert [message.verdicts[k] for k in ("dkim", "spf", "dmarc")] == ["pass"] * 3
        # every message delivered before is still there, and the new MTA delivers too
        kept.append(("INBOX", send_from_outside("alice@example.test", f"via {new}")))
        for folder, message_id in kept:
            fetch_over_imap(lab_host, message_id, folder=folder)
    output = deploy(lab_host, "-y")
    total = [line for line in output.splitlines() if "Grand total" in line][0].split()
    assert total[3] == "-" and total[4] == "-", total
