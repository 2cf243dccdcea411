"""DNS-01 with least privilege, against a real knotd: the ACME key (the one the VPS gets) may
write the _acme-challenge TXT record and nothing else; the provisioning key still may."""

import dns.name
import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from lab.knot import KnotServer, TsigKey, minimal_zone

ZONE = "example.test"
CHALLENGE = "_acme-challenge.mail.example.test."


@pytest.fixture(scope="module")
def knot():
    main, acme = TsigKey.generate("provisioner"), TsigKey.generate("vps-acme")
    with KnotServer({ZONE: minimal_zone(ZONE)}, key=main, acme_key=acme,
                    acme_names=[CHALLENGE]) as server:
        yield server, main, acme


def update(server, key, name, rdtype, value):
    keyring = dns.tsigkeyring.from_text({key.name: key.secret})
    message = dns.update.UpdateMessage(ZONE, keyring=keyring, keyname=key.name,
                                       keyalgorithm=key.algorithm)
    message.add(dns.name.from_text(name), 300, rdtype, value)
    try:
        response = dns.query.tcp(message, server.address, port=server.port, timeout=5)
    except dns.tsig.PeerBadKey:  # Knot's answer to a key its ACL does not allow here
        return "NOTAUTH/BADKEY"
    return dns.rcode.to_text(response.rcode())


def test_acme_key_writes_only_the_challenge_txt(knot):
    server, main, acme = knot
    assert update(server, acme, CHALLENGE, "TXT", '"token"') == "NOERROR"
    assert update(server, acme, "example.test.", "MX", "10 evil.example.org.") != "NOERROR"
    assert update(server, acme, "example.test.", "TXT", '"v=spf1 +all"') != "NOERROR"
    assert update(server, acme, "_acme-challenge.other.example.test.", "TXT", '"x"') \
        != "NOERROR"
    assert update(server, acme, CHALLENGE, "A", "198.51.100.66") != "NOERROR"
    assert update(server, main, "example.test.", "MX", "10 mail.example.test.") == "NOERROR"


def test_the_vps_gets_the_acme_credential_not_the_provisioning_one():
    from sample import sample_settings

    from mailhost.host.tls import _dns_credentials
    from mailhost.secrets import Secret, Secrets

    secrets = Secrets(Secret("cf-main"), Secret("bWFpbg=="), {}, Secret("YWNtZQ=="),
                      Secret("cf-acme"))
    rfc2136 = _dns_credentials(sample_settings(acme_challenge="dns-01",
                                               dns_acme_tsig_key_name="vps-acme"), secrets)
    assert "dns_rfc2136_name = vps-acme\n" in rfc2136.reveal()
    assert "YWNtZQ==" in rfc2136.reveal() and "bWFpbg==" not in rfc2136.reveal()
    cloudflare = _dns_credentials(sample_settings(dns_provider="cloudflare"), secrets)
    assert cloudflare.reveal() == "dns_cloudflare_api_token = cf-acme\n"
    without = _dns_credentials(sample_settings(acme_challenge="dns-01"), secrets)
    assert "dns_rfc2136_name = mailhost\n" in without.reveal()  # no ACME key: the main one
