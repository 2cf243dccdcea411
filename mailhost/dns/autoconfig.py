"""Mail clients that set themselves up: the files a mail domain serves with
``mail_client_autoconfig`` and the names they are served at. nginx on the mail host serves them
(mailhost.host.nginx); the checks fetch and parse them back (mailhost.checks.autoconfig).

- Mozilla's autoconfig (Thunderbird, and others that read it), at
  ``https://autoconfig.DOMAIN/mail/config-v1.1.xml``;
- Outlook's Autodiscover (the "POX" protocol), the answer to a POST at
  ``https://autodiscover.DOMAIN/autodiscover/autodiscover.xml``.

Both name exactly the servers the host serves: IMAP on 993 (TLS; 143 with STARTTLS when
``imap_starttls``) and submission on 465 (TLS) and 587 (STARTTLS), all at ``mail_hostname``,
the user name being the full address. Nothing is served at the domain's apex
(``DOMAIN/.well-known/autoconfig/``): the apex is usually the website's, not the mail host's.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree import ElementTree
from xml.sax.saxutils import escape

AUTOCONFIG_PATH = "/mail/config-v1.1.xml"
AUTODISCOVER_PATH = "/autodiscover/autodiscover.xml"
AUTODISCOVER_RESPONSE = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_RESPONSE = ("http://schemas.microsoft.com/exchange/autodiscover/outlook/"
                    "responseschema/2006a")


@dataclass(frozen=True)
class Server:
    """One server a client is told about: ``kind`` "imap" or "smtp", ``socket`` "SSL"
    (implicit TLS) or "STARTTLS"."""

    kind: str
    hostname: str
    port: int
    socket: str


def servers(settings) -> tuple[Server, ...]:
    """What the host serves mail clients, in the order clients should prefer."""
    name = settings.mail_hostname
    imap = [Server("imap", name, 993, "SSL")]
    if settings.imap_starttls:
        imap.append(Server("imap", name, 143, "STARTTLS"))
    return (*imap, Server("smtp", name, 465, "SSL"), Server("smtp", name, 587, "STARTTLS"))


def autoconfig_host(domain: str) -> str:
    return f"autoconfig.{domain}"


def autodiscover_host(domain: str) -> str:
    return f"autodiscover.{domain}"


def host_names(settings) -> list[str]:
    """The names the host serves the files at (and its certificate must hold): none unless
    ``mail_client_autoconfig``."""
    if not settings.mail_client_autoconfig:
        return []
    return [name for domain in settings.mail_domains
            for name in (autoconfig_host(domain), autodiscover_host(domain))]


def record_keys(domain: str) -> set[tuple[str, str]]:
    """The (name, type) keys of a domain's autoconfiguration records: both names' addresses."""
    return {(name, rtype) for name in (autoconfig_host(domain), autodiscover_host(domain))
            for rtype in ("A", "AAAA")}


def mozilla_config(domain: str, settings) -> str:
    """Mozilla's clientConfig 1.1 for DOMAIN."""
    def server(s: Server) -> str:
        tag = "incomingServer" if s.kind == "imap" else "outgoingServer"
        return (f'    <{tag} type="{s.kind}">\n'
                f"      <hostname>{escape(s.hostname)}</hostname>\n"
                f"      <port>{s.port}</port>\n"
                f"      <socketType>{s.socket}</socketType>\n"
                "      <authentication>password-cleartext</authentication>\n"
                "      <username>%EMAILADDRESS%</username>\n"
                f"    </{tag}>\n")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<clientConfig version="1.1">\n'
            f'  <emailProvider id="{escape(domain)}">\n'
            f"    <domain>{escape(domain)}</domain>\n"
            f"    <displayName>{escape(domain)}</displayName>\n"
            f"    <displayShortName>{escape(domain)}</displayShortName>\n"
            + "".join(server(s) for s in servers(settings)) +
            "  </emailProvider>\n"
            "</clientConfig>\n")


def autodiscover_response(settings) -> str:
    """Outlook's POX Autodiscover answer: the servers, the login being the address the client
    asked about (Outlook sends it; LoginName left out)."""
    def protocol(s: Server) -> str:
        encryption = "SSL" if s.socket == "SSL" else "TLS"
        return ("      <Protocol>\n"
                f"        <Type>{s.kind.upper()}</Type>\n"
                f"        <Server>{escape(s.hostname)}</Server>\n"
                f"        <Port>{s.port}</Port>\n"
                "        <DomainRequired>off</DomainRequired>\n"
                "        <SPA>off</SPA>\n"
                f"        <SSL>on</SSL>\n"
                f"        <Encryption>{encryption}</Encryption>\n"
                "        <AuthRequired>on</AuthRequired>\n"
                "      </Protocol>\n")
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            f'<Autodiscover xmlns="{AUTODISCOVER_RESPONSE}">\n'
            f'  <Response xmlns="{OUTLOOK_RESPONSE}">\n'
            "    <Account>\n"
            "      <AccountType>email</AccountType>\n"
            "      <Action>settings</Action>\n"
            + "".join(protocol(s) for s in servers(settings)) +
            "    </Account>\n"
            "  </Response>\n"
            "</Autodiscover>\n")


def parse_mozilla(text: str) -> tuple[Server, ...]:
    """The servers a clientConfig names (ValueError when it is not one)."""
    root = _xml(text)
    if root.tag != "clientConfig":
        raise ValueError(f"root element {root.tag}, not clientConfig")
    found = []
    for element in root.iter():
        if element.tag in ("incomingServer", "outgoingServer"):
            found.append(Server(element.get("type", ""), element.findtext("hostname", ""),
                                _port(element.findtext("port")),
                                element.findtext("socketType", "")))
    return tuple(found)


def parse_autodiscover(text: str) -> tuple[Server, ...]:
    """The servers an Autodiscover (POX) answer names (ValueError when it is not one)."""
    root = _xml(text)
    ns = {"a": AUTODISCOVER_RESPONSE, "o": OUTLOOK_RESPONSE}
    if root.tag != f"{{{AUTODISCOVER_RESPONSE}}}Autodiscover":
        raise ValueError(f"root element {root.tag}, not Autodiscover")
    found = []
    for element in root.findall("o:Response/o:Account/o:Protocol", ns):
        encryption = element.findtext("o:Encryption", "", ns)
        found.append(Server(element.findtext("o:Type", "", ns).lower(),
                            element.findtext("o:Server", "", ns),
                            _port(element.findtext("o:Port", None, ns)),
                            "SSL" if encryption == "SSL" else
                            "STARTTLS" if encryption == "TLS" else encryption))
    return tuple(found)


def _xml(text: str):
    try:
        return ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise ValueError(f"not XML: {error}") from None


def _port(text: str | None) -> int:
    if not text or not text.strip().isdigit():
        raise ValueError(f"port {text!r} is not a number")
    return int(text)
