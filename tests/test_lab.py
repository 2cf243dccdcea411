"""The lab itself: `scripts/lab up` brings every part up, each answers, `down` leaves nothing.

Needs root and the lab's system packages (scripts/bootstrap). The tests run in file order:
the last one takes the lab down and checks that nothing is left behind.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import shlex
import smtplib
import ssl
import subprocess
import tomllib
import urllib.request
import uuid
from pathlib import Path

import dkim
import dns.message
import dns.query
import dns.rcode
import dns.resolver
import dns.reversename
import dns.tsigkeyring
import dns.update
import nacl.signing
import pytest
from lab_world import HOST4, HOST6, LANE, RX4, RX6, VPS4, VPS6
from secrecy import leaked

from lab import lab as lab_module
from lab import network, vps
from lab.common import BRIDGE, PREFIX, RX_NETNS, LabError, Paths, Proc
from lab.receiver import wait_for_message
from lab.zones import REVERSE6

pytestmark = pytest.mark.lab

CHECKOUT = Path(__file__).resolve().parents[1]
SCRIPT = CHECKOUT / "scripts" / "lab"
PATHS = Paths.for_checkout(CHECKOUT)
ZONES = ["example.test", "example.net", "lab.test", "bl.lab.test", "100.51.198.in-addr.arpa",
         REVERSE6]  # the lane's /64: 0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa in lane 0


def lab_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def status_json() -> dict:
    result = lab_cli("status", "--json")
    return json.loads(result.stdout)


def ssh(command: str, address: str = VPS4, timeout: float = 60,
        **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*vps.ssh_command(PATHS, address), command], capture_output=True,
                          timeout=timeout, **kwargs)


def resolver(server: str = HOST4) -> dns.resolver.Resolver:
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [server]
    return r


def secrets() -> dict:
    return tomllib.loads(PATHS.secrets_file.read_text())


@pytest.fixture(scope="module")
def lab():
    result = lab_cli("up")
    assert result.returncode == 0, result.stderr + result.stdout
    assert VPS4 in result.stdout  # it prints what runs where
    yield status_json()
    if PATHS.state.exists() and lab_module.status(PATHS)["processes"]:
        lab_cli("down")  # a test failed before test_down_leaves_nothing_behind


def test_status_json_lists_what_runs_where(lab):
    assert lab["running"] is True
    assert lab["lane"] == LANE.number  # each lane: its own names, addresses and processes
    assert {lab["vps"]["netns"], lab["receiver"]["netns"]} == {f"mhlab{LANE.number}-vps",
                                                               f"mhlab{LANE.number}-rx"}
    assert lab["state_file"].endswith(f"/.lab/lane-{LANE.number}/state.json")
    assert lab["vps"]["ipv4"] == VPS4
    assert lab["vps"]["ipv6"] == VPS6
    assert Path(lab["vps"]["ssh_key"]).is_file()
    assert lab["dns"]["server"] == HOST4
    assert lab["dns"]["tsig_key_name"] == "mailhost-lab"
    assert lab["cloudflare"]["base_url"] == f"http://{HOST4}:8443/client/v4"
    assert lab["acme"]["directory_url"] == f"https://{HOST4}:14000/dir"
    assert Path(lab["acme"]["root_ca_file"]).is_file()
    assert Path(lab["acme"]["ca_bundle"]).is_file()
    assert (lab["receiver"]["ipv4"], lab["receiver"]["ipv6"]) == (RX4, RX6)
    assert lab["receiver"]["domain"] == "example.net"
    assert Path(lab["receiver"]["messages_dir"]).is_dir()
    text = json.dumps(lab)
    values = list(secrets().values())
    flat = [v for v in values if isinstance(v, str)]
    flat += [p for v in values if isinstance(v, dict) for p in v.values()]  # [passwords]
    assert len(flat) >= 4
    # names and paths only, never a secret
    assert leaked({f"lab secret {n}": s for n, s in enumerate(flat)}, text) == []


def test_up_twice_is_harmless(lab):
    before = status_json()["processes"]
    result = lab_cli("up")
    assert result.returncode == 0, result.stderr
    after = status_json()
    assert after["running"] is True
    assert after["processes"] == before  # nothing restarted


def test_vps_runs_systemd_and_sshd(lab):
    result = ssh("systemctl is-system-running", text=True)
    assert result.stdout.strip() in ("running", "degraded"), result.stderr


def remote_json(command: str, address: str = VPS4):
    return json.loads(ssh(command, address, text=True).stdout)


def global_addresses(address: str = VPS4) -> set[str]:
    return {info["local"] for link in remote_json("ip -j addr show eth0", address)
            for info in link["addr_info"] if info.get("scope") == "global"}


def test_default_vps_is_ubuntu_24_04_as_a_provider_ships_it(lab):
    """cloud-init's netplan (networkd) with the IPv4 address and default route; IPv6 routed
    to the VPS by the "provider" but off by sysctl, no IPv6 address: the deploy's job."""
    assert lab["vps"]["image"] == "ubuntu-24.04" and lab["vps"]["network"] == "netplan"
    assert lab["vps"]["os_release"]["VERSION_ID"] == "24.04"
    assert 'VERSION_ID="24.04"' in ssh("cat /etc/os-release", text=True).stdout
    netplan = ssh("netplan get ethernets.eth0", text=True).stdout
    assert f"{VPS4}/26" in netplan and "2001:db8" not in netplan
    assert ssh("networkctl list eth0", text=True).stdout.count("configured") == 1
    assert ssh("sysctl -n net.ipv6.conf.all.disable_ipv6", text=True).stdout.strip() == "1"
    assert global_addresses() == {VPS4}
    assert ssh("true", VPS6, timeout=30).returncode != 0
    # cloud image apt sources: main, universe, -updates, -security
    sources = ssh("cat /etc/apt/sources.list", text=True).stdout
    for suite in ("noble", "noble-updates", "noble-security"):
        assert f" {suite} main restricted universe multiverse" in sources


def test_vps_network_resolver_and_no_route_out(lab):
    routes = remote_json("ip -j route")
    assert [r.get("gateway") for r in routes if r["dst"] == "default"] == [HOST4]
    # the "provider's" gateway is the lab bridge, which forwards nothing anywhere
    forwarding = [Path(f"/proc/sys/net/{key}").read_text().strip() for key in
                  (f"ipv4/conf/{BRIDGE}/forwarding", f"ipv6/conf/{BRIDGE}/forwarding")]
    assert forwarding == ["0", "0"]
    assert f"nameserver {HOST4}\n" in ssh("cat /etc/resolv.conf", text=True).stdout
    assert ssh("hostname -f", text=True).stdout.strip() == "mail.example.test"
    # root manages its own network namespace, as on a real VPS (firewall, sysctls)
    assert ssh("sysctl -w net.ipv6.conf.eth0.accept_ra=0 && ip link set lo mtu 65535",
               text=True).returncode == 0


def test_vps_apt_goes_through_the_proxy(lab):
    result = ssh("apt-config dump | grep -i proxy; apt-get -q update", text=True, timeout=300)
    assert f'"http://{HOST4}:3128"' in result.stdout
    assert result.returncode == 0, result.stdout[-500:] + result.stderr[-500:]
    # and tinyproxy through the package cache every lane shares, which now holds the indexes
    cache = Path(lab["apt_cache"]["directory"])
    assert lab["apt_cache"]["pid"] and any(cache.glob(f"{lab['apt_proxy_allows'][0]}/**/*Release"))
    # the proxy forwards to the package mirrors only
    script = ("import urllib.request as u, urllib.error as e\n"
              f"o = u.build_opener(u.ProxyHandler({{'http': 'http://{HOST4}:3128'}}))\n"
              "try:\n    o.open('http://example.com/', timeout=10)\n"
              "except e.HTTPError as error:\n    print(error.code)\n")
    assert ssh(f"python3 -c {shlex.quote(script)}", text=True).stdout.strip() == "403"


def test_lab_refuses_ranges_the_machine_uses(monkeypatch):
    real = network._ip_json

    def with_colliding_route(*args):
        if "route" in args and "-4" in args:
            return [{"dst": str(ipaddress.ip_network(LANE.net4).supernet()), "dev": "eth0"}]
        return real(*args)

    monkeypatch.setattr(network, "_ip_json", with_colliding_route)
    with pytest.raises(LabError, match="collides"):
        network.check_ranges()
    monkeypatch.setattr(network, "_ip_json", real)
    network.check_ranges()  # the machine's own routes (192.0.2.0/24, fd00::/64) do not collide


@pytest.mark.parametrize("server", [HOST4, HOST6], ids=["ipv4", "ipv6"])  # ids: any lane
def test_knot_answers_soa_for_each_zone(lab, server):
    for zone in ZONES:
        answer = dns.query.udp(dns.message.make_query(zone, "SOA"), server, timeout=3)
        assert answer.rcode() == dns.rcode.NOERROR
        assert answer.answer and answer.answer[0].rdtype == dns.rdatatype.SOA, zone


def test_vps_and_receiver_reach_the_lab_dns(lab):
    result = ssh("getent hosts mx.example.net", text=True)
    assert RX4 in result.stdout or RX6 in result.stdout
    query = subprocess.run(
        ["ip", "netns", "exec", RX_NETNS, "kdig", "+short", f"@{HOST4}", "example.net",
         "MX"], capture_output=True, text=True, timeout=10)
    assert query.stdout.strip() == "10 mx.example.net."


def test_ptr_lookups(lab):
    r = resolver()
    expected = {VPS4: "mail.example.test.", VPS6: "mail.example.test.",
                RX4: "mx.example.net.", RX6: "mx.example.net."}
    for address, name in expected.items():
        answer = r.resolve(dns.reversename.from_address(address), "PTR")
        assert [a.target.to_text() for a in answer] == [name]


def test_knot_accepts_tsig_updates_only(lab):
    name = f"tsig-{uuid.uuid4().hex[:8]}.example.test."
    keyring = dns.tsigkeyring.from_text({"mailhost-lab": secrets()["tsig_secret"]})
    unsigned = dns.update.Update("example.test.")
    unsigned.add(name, 60, "TXT", '"unsigned"')
    refused = dns.query.tcp(unsigned, HOST4, timeout=5).rcode()
    assert refused in (dns.rcode.REFUSED, dns.rcode.NOTAUTH)  # Knot says NOTAUTH
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver().resolve(name, "TXT")
    update = dns.update.Update("example.test.", keyring=keyring, keyalgorithm="hmac-sha256")
    update.add(name, 60, "TXT", '"signed"')
    assert dns.query.tcp(update, HOST4, timeout=5).rcode() == dns.rcode.NOERROR
    assert [a.to_text() for a in resolver().resolve(name, "TXT")] == ['"signed"']
    cleanup = dns.update.Update("example.test.", keyring=keyring, keyalgorithm="hmac-sha256")
    cleanup.delete(name)
    assert dns.query.tcp(cleanup, HOST4, timeout=5).rcode() == dns.rcode.NOERROR


class Emulator:
    """Just enough of the Cloudflare API for the tests."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.token = secrets()["cloudflare_api_token"]

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            self.base_url + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def zone_id(self, name: str) -> str:
        return self.call("GET", f"/zones?name={name}")["result"][0]["id"]


def test_emulator_lists_the_zone_and_writes_through_to_knot(lab):
    emulator = Emulator(lab["cloudflare"]["base_url"])
    zones = [z["name"] for z in emulator.call("GET", "/zones")["result"]]
    assert zones == ["example.test", "shop.test"]
    zone_id = emulator.zone_id("example.test")
    name = f"cf-{uuid.uuid4().hex[:8]}.example.test"
    record = emulator.call("POST", f"/zones/{zone_id}/dns_records",
                           {"name": name, "type": "A", "content": "198.51.100.99", "ttl": 60})
    assert [a.address for a in resolver().resolve(name, "A")] == ["198.51.100.99"]
    emulator.call("DELETE", f"/zones/{zone_id}/dns_records/{record['result']['id']}")
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver().resolve(name, "A")


def test_pebble_directory_and_root(lab):
    context = ssl.create_default_context(cafile=lab["acme"]["ca_bundle"])
    with urllib.request.urlopen(lab["acme"]["directory_url"], context=context,
                                timeout=5) as response:
        directory = json.load(response)
    assert directory["newOrder"].startswith(f"https://{HOST4}:14000/")
    with urllib.request.urlopen(f"https://{HOST4}:15000/roots/0", context=context,
                                timeout=5) as response:
        root = response.read().decode()
    assert root.strip() == Path(lab["acme"]["root_ca_file"]).read_text().strip()
    assert Path(lab["acme"]["ca_bundle"]).read_text().count("BEGIN CERTIFICATE") == 2


@pytest.mark.parametrize("address", [RX4, RX6], ids=["ipv4", "ipv6"])  # ids: any lane
def test_receiver_banner_and_starttls(lab, address):
    assert lab_module.smtp_banner(address).startswith("220 mx.example.net ")
    context = ssl.create_default_context(cafile=str(PATHS.ca / "lab-ca.pem"))
    with smtplib.SMTP(address, 25, local_hostname="controller.lab.test", timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        smtp.starttls(context=context)  # verifies mx.example.net's certificate
        code, _ = smtp.ehlo()
        assert code == 250
        assert smtp.mail("a@example.test")[0] == 250
        assert smtp.rcpt("x@elsewhere.test")[0] == 550  # not an open relay


def _send_from_vps(message: bytes, address: str, mail_from: str) -> None:
    script = (
        "import smtplib, sys\n"
        f"s = smtplib.SMTP({address!r}, 25, local_hostname='mail.example.test', timeout=20)\n"
        "s.starttls(); s.ehlo('mail.example.test')\n"
        f"s.sendmail({mail_from!r}, ['postmaster@example.net'], sys.stdin.buffer.read())\n"
        "s.quit()\n"
    )
    result = ssh(f"python3 -c {shlex.quote(script)}", input=message)
    assert result.returncode == 0, result.stderr.decode()


@pytest.fixture
def probe_domain(lab):
    """probe.example.test with SPF, DKIM (ed25519) and DMARC, published through the emulator."""
    emulator = Emulator(lab["cloudflare"]["base_url"])
    zone_id = emulator.zone_id("example.test")
    key = nacl.signing.SigningKey.generate()
    public = base64.b64encode(bytes(key.verify_key)).decode()
    records = [
        ("probe.example.test", f"v=spf1 ip4:{VPS4} ip6:{VPS6} -all"),
        ("_dmarc.probe.example.test", "v=DMARC1; p=reject"),
        ("lab._domainkey.probe.example.test", f"v=DKIM1; k=ed25519; p={public}"),
    ]
    ids = [emulator.call("POST", f"/zones/{zone_id}/dns_records",
                         {"name": n, "type": "TXT", "content": c, "ttl": 60})["result"]["id"]
           for n, c in records]
    yield base64.b64encode(bytes(key))
    for record_id in ids:
        emulator.call("DELETE", f"/zones/{zone_id}/dns_records/{record_id}")


@pytest.mark.parametrize("address,case,expected", [
    (RX4, "signed", {"spf": "pass", "dkim": "pass", "dmarc": "pass"}),
    (RX6, "signed", {"spf": "pass", "dkim": "pass", "dmarc": "pass"}),
    # the body changed after signing: DKIM fails, DMARC still passes on aligned SPF
    (RX4, "tampered", {"spf": "pass", "dkim": "fail", "dmarc": "pass"}),
    # and sent with an envelope sender whose SPF does not list the VPS: nothing passes
    (RX6, "forged", {"spf": "fail", "dkim": "fail", "dmarc": "fail"}),
], ids=["ipv4-signed", "ipv6-signed", "ipv4-tampered", "ipv6-forged"])  # ids: any lane
def test_receiver_checks_dkim_spf_dmarc_against_lab_dns(lab, probe_domain, address, case,
                                                        expected):
    token = uuid.uuid4().hex
    message = (f"From: Probe <probe@probe.example.test>\r\nTo: postmaster@example.net\r\n"
               f"Subject: lab probe {token}\r\nMessage-ID: <{token}@probe.example.test>\r\n"
               "Date: Mon, 23 Nov 2026 17:00:00 +0000\r\n\r\nhello from the lab\r\n").encode()
    signature = dkim.sign(message, b"lab", b"probe.example.test", probe_domain,
                          signature_algorithm=b"ed25519-sha256",
                          include_headers=[b"from", b"to", b"subject", b"message-id"])
    signed = signature + message
    if case != "signed":
        signed = signed.replace(b"hello from the lab", b"hello from a forger")
    mail_from = "bounce@example.net" if case == "forged" else "bounce@probe.example.test"
    if ":" in address:  # the Ubuntu image starts with IPv6 off: turn it on as the deploy does
        on = ssh("sysctl -qw net.ipv6.conf.all.disable_ipv6=0 && "
                 f"ip addr replace {VPS6}/64 dev eth0 && sleep 2 && "
                 f"ip -6 addr show to {VPS6}", text=True)
        assert VPS6 in on.stdout, on.stderr
    _send_from_vps(signed, address, mail_from)
    got = wait_for_message(lab["receiver"]["messages_dir"],
                           lambda m: token in str(m.message["Subject"]), timeout=30)
    assert got.meta["peer"] == (VPS4 if "." in address else VPS6)
    assert got.meta["mail_from"] == mail_from
    assert got.meta["tls"] and got.meta["tls"]["version"].startswith("TLS")
    assert {k: got.verdicts[k] for k in expected} == expected
    header = " ".join(got.message["Authentication-Results"].split())
    assert header.startswith("mx.example.net;")
    assert f"dkim={expected['dkim']} header.d=probe.example.test" in header
    assert f"dmarc={expected['dmarc']}" in header and f"spf={expected['spf']}" in header


@pytest.mark.parametrize("image,version,network_unit", [
    ("debian-12", "12", "systemd-networkd"), ("debian-13", "13", "systemd-networkd"),
    ("ubuntu-22.04", "22.04", "netplan"), ("ubuntu-24.04", "24.04", "netplan")])
def test_each_image_boots_with_its_network_and_apt(lab, image, version, network_unit):
    """Another image rebuilds the VPS. Debian images configure both addresses with
    systemd-networkd (no netplan; IPv6 on); the Ubuntu ones start with IPv4 only."""
    result = lab_cli("up", "--image", image)
    assert result.returncode == 0, result.stderr
    status = status_json()
    assert status["vps"]["image"] == image and status["vps"]["os_release"]["VERSION_ID"] == version
    assert f'VERSION_ID="{version}"' in ssh("cat /etc/os-release", text=True).stdout
    if network_unit == "netplan":
        assert global_addresses() == {VPS4}
    else:
        assert "No such file" in ssh("ls /etc/netplan 2>&1", text=True).stdout
        assert ssh("systemctl is-active systemd-networkd", text=True).stdout.strip() == "active"
        assert global_addresses() == {VPS4, VPS6}
        assert global_addresses(VPS6) == {VPS4, VPS6}
    # the proxy lets through exactly the hosts of this image's mirrors
    sources = ssh("cat /etc/apt/sources.list", text=True).stdout
    hosts = sorted({line.split()[1].split("/")[2] for line in sources.splitlines()
                    if line.startswith("deb ")})
    assert status["apt_proxy_allows"] == hosts
    result = ssh("apt-get -q update", text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-500:] + result.stderr[-500:]


def test_fresh_rebuilds_the_vps(lab):
    assert ssh("touch /root/was-here").returncode == 0
    before = status_json()
    old_known_hosts = PATHS.known_hosts.read_text()
    result = lab_cli("up", "--fresh")
    assert result.returncode == 0, result.stderr
    after = status_json()
    assert after["processes"]["vps"]["pid"] != before["processes"]["vps"]["pid"]
    assert after["processes"]["knot"] == before["processes"]["knot"]  # the rest kept running
    assert PATHS.known_hosts.read_text() != old_known_hosts  # new host keys
    assert ssh("test -e /root/was-here").returncode == 1  # a new machine
    assert not Proc.from_json(before["processes"]["vps"]).alive()


def test_down_leaves_nothing_behind(lab):
    processes = status_json()["processes"]
    assert processes
    result = lab_cli("down")
    assert result.returncode == 0, result.stderr
    assert network.lab_namespaces() == []
    assert network.lab_links() == []
    mounts = Path("/proc/self/mountinfo").read_text()
    assert PREFIX not in mounts and str(PATHS.vps_rootfs) not in mounts
    assert not [name for name, p in processes.items() if Proc.from_json(p).alive()]
    assert not PATHS.vps_rootfs.exists()
    assert lab_module.leftovers(PATHS) == {"namespaces": [], "links": [], "mounts": [],
                                           "nspawn_files": [], "processes": []}
    assert lab_module.smtp_banner(RX4, timeout=1) == ""
    assert lab_cli("status").returncode == 3
