"""Mail clients' autoconfiguration in the lab (mail_client_autoconfig on, by
MAILHOST_LAB_AUTOCONFIG=1):
Thunderbird's file and Outlook's Autodiscover answer fetched from the deployed host over IPv4
and IPv6 like the clients fetch them (GET, and POST for Outlook; the certificate verified for
each name against the lab's CA), parsed here with the standard library's XML parser, naming
993, 465 and 587 at the host's name; their records in the zone, their names on the
certificate, the deploy's checks passing; a second run changes nothing."""

from __future__ import annotations

import http.client
import socket
import tomllib
from pathlib import Path
from xml.etree import ElementTree

import pytest
from lab_world import (
    HOSTNAME,
    PYINFRA,
    VPS4,
    VPS6,
    fresh_lab,
    lab,
    run_in_world,
    tls_context,
    world_env,
    zone_text,
)

pytestmark = pytest.mark.lab

WORLD = ("ubuntu-24.04", "postfix", "rfc2136", "http-01")
DOMAIN = "example.test"
OUTLOOK = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"
REQUEST = (b'<?xml version="1.0" encoding="utf-8"?>\r\n<Autodiscover xmlns="http://schemas.'
           b'microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request>'
           b"<EMailAddress>alice@example.test</EMailAddress><AcceptableResponseSchema>"
           b"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
           b"</AcceptableResponseSchema></Request></Autodiscover>")


def deploy(world) -> str:
    code, output = run_in_world(world, PYINFRA, "inventory/lab.py", "deploy.py", "-y",
                                env=world_env(world, MAILHOST_LAB_AUTOCONFIG="1"))
    assert code == 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def world():
    status = fresh_lab(WORLD[0])
    status["world"] = WORLD
    status["first_deploy"] = deploy(status)
    status["passwords"] = tomllib.loads(Path(status["secrets_file"]).read_text())["passwords"]
    yield status
    lab("down")  # nothing of this world is left running after its tests


def fetch(world, name: str, address: str, method: str, path: str, body: bytes | None = None):
    """METHOD https://NAME/PATH from ADDRESS, the certificate verified for NAME: (status,
    Content-Type, body)."""
    context = tls_context(world)
    connection = http.client.HTTPSConnection(name, 443, timeout=30, context=context)
    connection.sock = context.wrap_socket(socket.create_connection((address, 443), timeout=30),
                                          server_hostname=name)
    headers = {"Content-Type": "text/xml"} if body else {}
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.getheader("Content-Type"), response.read().decode()


@pytest.mark.parametrize("address", [VPS4, VPS6], ids=["ipv4", "ipv6"])
def test_thunderbirds_file_names_the_hosts_imap_and_submission(world, address):
    status, content_type, text = fetch(world, f"autoconfig.{DOMAIN}", address, "GET",
                                       "/mail/config-v1.1.xml?emailaddress=alice%40example.test")
    assert status == 200 and content_type.startswith("application/xml"), (status, text)
    root = ElementTree.fromstring(text)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider.findtext("domain") == DOMAIN
    incoming = [(s.get("type"), s.findtext("hostname"), s.findtext("port"),
                 s.findtext("socketType")) for s in provider.findall("incomingServer")]
    outgoing = [(s.get("type"), s.findtext("hostname"), s.findtext("port"),
                 s.findtext("socketType")) for s in provider.findall("outgoingServer")]
    # the lab opens 143 too (imap_starttls): offered after 993
    assert incoming == [("imap", HOSTNAME, "993", "SSL"), ("imap", HOSTNAME, "143", "STARTTLS")]
    assert outgoing == [("smtp", HOSTNAME, "465", "SSL"), ("smtp", HOSTNAME, "587", "STARTTLS")]
    assert {s.findtext("username") for s in provider} - {None} == {"%EMAILADDRESS%"}


@pytest.mark.parametrize("address", [VPS4, VPS6], ids=["ipv4", "ipv6"])
def test_outlooks_post_gets_the_hosts_servers(world, address):
    status, content_type, text = fetch(world, f"autodiscover.{DOMAIN}", address, "POST",
                                       "/Autodiscover/Autodiscover.xml", REQUEST)
    assert status == 200 and content_type.startswith("application/xml"), (status, text)
    root = ElementTree.fromstring(text)
    account = root.find(f"{OUTLOOK}Response/{OUTLOOK}Account")
    assert account.findtext(f"{OUTLOOK}AccountType") == "email"
    protocols = [(p.findtext(f"{OUTLOOK}Type"), p.findtext(f"{OUTLOOK}Server"),
                  p.findtext(f"{OUTLOOK}Port"), p.findtext(f"{OUTLOOK}Encryption"))
                 for p in account.findall(f"{OUTLOOK}Protocol")]
    assert protocols == [("IMAP", HOSTNAME, "993", "SSL"), ("IMAP", HOSTNAME, "143", "TLS"),
                         ("SMTP", HOSTNAME, "465", "SSL"), ("SMTP", HOSTNAME, "587", "TLS")]


def test_any_other_path_or_name_is_404(world):
    assert fetch(world, f"autoconfig.{DOMAIN}", VPS4, "GET", "/")[0] == 404
    assert fetch(world, f"autodiscover.{DOMAIN}", VPS4, "GET", "/mail/config-v1.1.xml")[0] \
        == 404


def test_records_certificate_names_and_checks(world):
    zone = zone_text(world)
    for label in ("autoconfig", "autodiscover"):  # AXFR's names, relative to the zone
        assert f"\n{label} 300 IN A {VPS4}\n" in zone, zone
        assert f"\n{label} 300 IN AAAA {VPS6}\n" in zone, zone
    with socket.create_connection((VPS4, 443), timeout=30) as raw, \
            tls_context(world).wrap_socket(raw, server_hostname=f"autodiscover.{DOMAIN}") as tls:
        names = {value for kind, value in tls.getpeercert()["subjectAltName"] if kind == "DNS"}
    assert {HOSTNAME, f"autoconfig.{DOMAIN}", f"autodiscover.{DOMAIN}"} <= names
    checks = [line for line in world["first_deploy"].splitlines()
              if "autoconfig: " in line or "autodiscover: " in line]
    assert len(checks) == 4 and all(" ok " in line for line in checks), checks


def test_a_second_run_changes_nothing(world):
    zone_before = zone_text(world)
    output = deploy(world)
    assert f"= {DOMAIN}: no DNS changes" in output
    total = [line for line in output.splitlines() if "Grand total" in line][0].split()
    assert total[3] == "-" and total[4] == "-", total  # no success (change), no error
    assert zone_text(world) == zone_before
