"""The value types of the settings: each a validator that returns the value in one canonical form
(lower case, punycode, no final dot...) or raises ValueError with what is expected.

Every pattern is used with fullmatch: `$` alone would let a trailing newline through.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import unicodedata
from pathlib import Path
from types import MappingProxyType
from typing import Annotated
from urllib.parse import urlsplit

import idna
from cryptography import x509
from pydantic import AfterValidator, BeforeValidator

from mailhost.settings.messages import Credentials

# a rotated key's selector is dkim_selector-YYYYMMDD[-N]: room for that in one 63-byte label
MAX_ROTATING_SELECTOR = 50
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_UNDERSCORE_LABEL = re.compile(r"_?[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?")
# The dot-atom characters every MTA here (Postfix maps, chasquid's files, Dovecot's passwd-file)
# and every file path built from a local part handle: letters, digits, '_' and '-', dot-separated.
# '+' is the recipient delimiter of both MTAs, so only forwarding targets (mail of others) use it.
_LOCAL_PART = re.compile(r"[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9_-]+)*")
_FOREIGN_LOCAL_PART = re.compile(r"[a-z0-9_+=-]+(?:\.[a-z0-9_+=-]+)*")
_URL_PATH = re.compile(r"(?:/[A-Za-z0-9._~%-]*)*")
_DMARC_SIZE = re.compile(r"[0-9]{1,15}[kmgt]?")
_QUOTA = re.compile(r"([1-9][0-9]{0,5})([MG])")
# documentation ranges (RFC 5737, RFC 3849): accepted for the host only with lab_allowances
DOCUMENTATION_NETWORKS = tuple(ipaddress.ip_network(n) for n in
                               ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
                                "2001:db8::/32"))


def _text(value) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("expected text without control characters (newline, tab...)")
    return value


def domain_name(value, min_labels: int = 2, underscores: bool = False) -> str:
    """A DNS name, lower case, international names as punycode (xn--), without the final dot."""
    name = _text(value).strip().rstrip(".")
    try:
        name = idna.encode(name, uts46=True).decode() if not name.isascii() else name.lower()
    except idna.IDNAError:
        raise ValueError("expected a domain name; not a valid international name") from None
    labels = name.split(".")
    for label in labels:  # every A-label decoded (IDNA2008), then judged as Unicode
        if label.startswith("xn--"):
            try:
                unicode_label = idna.decode(label)
            except (idna.IDNAError, UnicodeError):
                raise ValueError(f"expected a domain name; {label!r} is not a valid "
                                 "international (xn--) label (IDNA2008)") from None
            _refuse_look_alikes(unicode_label)
    pattern = _UNDERSCORE_LABEL if underscores else _LABEL
    if len(name) > 253 or len(labels) < min_labels or not all(
            len(label) <= 63 and pattern.fullmatch(label) for label in labels):
        what = "a fully qualified domain name such as mail.example.com" if min_labels > 1 \
            else "a DNS name: labels of letters, digits and inner hyphens"
        raise ValueError(f"expected {what}")
    if labels[-1].isdigit():
        raise ValueError("expected a domain name, not an IP address")
    return name


# Scripts whose letters look like Latin ones (UTS #39's "highly restrictive" profile keeps a label
# to one script, Latin joined only with Han, Kana, Hangul or Bopomofo).
_LOOK_ALIKE_SCRIPTS = ("CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE")


# Letters of those scripts that look like a Latin letter (UTS #39's confusables, the lower-case
# ones a name keeps): a label made of these alone reads as a Latin word.
_LATIN_LOOK_ALIKES = MappingProxyType({
    **dict(zip("аԁеһіјӏорԛѕԝхусьԍ", "adehijlopqswxycbg", strict=True)),  # Cyrillic
    **dict(zip("αϲεηικνοϱρτυχ", "acenikvopptux", strict=True)),  # Greek
    **dict(zip("ցհոօզս", "ghnoqu", strict=True)),  # Armenian
})


def _refuse_look_alikes(label: str):
    """A label that mixes Latin letters with letters of a look-alike script (``mаil`` with a
    Cyrillic а), or is written only in such letters (``аррӏе``, all Cyrillic), is refused: it
    would be a different name than it seems."""
    scripts = {unicodedata.name(c, "").split(" ")[0]: c for c in label if c.isalpha()}
    if "LATIN" in scripts and (foreign := scripts.keys() & set(_LOOK_ALIKE_SCRIPTS)):
        letter = scripts[sorted(foreign)[0]]
        raise ValueError(f"expected each label in one script; {label!r} mixes Latin letters "
                         f"with U+{ord(letter):04X} {unicodedata.name(letter)} (a look-alike "
                         "letter pasted in?)")
    letters = [c for c in label if c.isalpha()]
    if letters and scripts.keys() <= set(_LOOK_ALIKE_SCRIPTS) and all(
            c in _LATIN_LOOK_ALIKES for c in letters):
        latin = "".join(_LATIN_LOOK_ALIKES.get(c, c) for c in label)
        raise ValueError(f"expected a name that reads as what it is; {label!r} is written only "
                         f"in {sorted(scripts)[0].title()} letters that look like Latin ones "
                         f"(it reads as {latin!r})")


def _fqdn(value) -> str:
    return domain_name(value)


def _dns_name(value) -> str:
    """A name whose labels may hold underscores (_spf.google.com)."""
    return domain_name(value, underscores=True)


def _inventory_name(value) -> str:
    """A host's name in the inventory (what pyinfra calls it: --limit NAME)."""
    text = _text(value)
    if not text or len(text) > 253 or any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError("expected a host's name in this inventory, such as mail.example.com")
    return text


def _spf_include(value) -> str:
    """The domain of an SPF ``include:`` (the mechanism is written by the tool)."""
    if _text(value).strip().lower().startswith(("include:", "+include:", "v=spf1")):
        raise ValueError("expected the domain alone, e.g. _spf.google.com (the tool writes "
                         "'include:')")
    return _dns_name(value)


def _key_name(value) -> str:
    """A TSIG key name: a DNS name of one or more labels."""
    return domain_name(value, min_labels=1)


def _address(value, foreign: bool = False) -> str:
    text = _text(value).strip()
    if ":" in text.partition("@")[2]:  # address:password
        raise Credentials(text[:text.index(":", text.index("@"))] + ":***")
    local, at, domain = text.rpartition("@")
    pattern = _FOREIGN_LOCAL_PART if foreign else _LOCAL_PART
    if not at or len(local) > 64 or not pattern.fullmatch(local.lower()):
        chars = "letters, digits, '.', '_', '-'" + (", '+', '='" if foreign else "")
        raise ValueError(f"expected an e-mail address such as postmaster@example.com "
                         f"(local part: {chars})")
    try:
        return f"{local.lower()}@{domain_name(domain)}"
    except ValueError as error:
        why = str(error).removeprefix("expected ")
        raise ValueError("expected an e-mail address such as postmaster@example.com "
                         f"(domain: {why})") from None


def _email(value) -> str:
    return _address(value)


def email_address(value, foreign: bool = False) -> str:
    """An e-mail address, its domain lower case (``foreign``: another system's, whose local
    part may hold '+' and '='); ValueError saying what is expected."""
    return _address(value, foreign)


def _forward_target(value) -> str:
    return _address(value, foreign=True)


def _mailto(value) -> str:
    """mailto:ADDRESS with DMARC's optional !SIZE (RFC 7489 6.4), nothing else."""
    text = _text(value)
    scheme, _, rest = text.partition(":")
    address, bang, size = rest.partition("!")
    try:
        if scheme.lower() != "mailto" or (bang and not _DMARC_SIZE.fullmatch(size.lower())):
            raise ValueError
        return f"mailto:{_address(address)}" + (f"!{size.lower()}" if bang else "")
    except Credentials as error:
        raise Credentials(f"{scheme}:{error.masked}") from None
    except ValueError:
        raise ValueError("expected a mailto: URI such as mailto:dmarc@example.com "
                         "(optionally !SIZE, e.g. !10m)") from None


def _report_uri(value) -> str:
    """TLSRPT rua (RFC 8460 3): mailto: or https:, no size limit."""
    text = _text(value)
    if text.lower().startswith("https:"):
        return _url(text, schemes=("https",))
    if "!" not in text:
        try:
            return _mailto(text)
        except Credentials:
            raise
        except ValueError:
            pass
    raise ValueError("expected mailto:ADDRESS or an https:// URL")


def _iodef(value) -> str:
    """CAA iodef (RFC 8659 4.4): mailto: or https:."""
    return _report_uri(value)


def _host(value: str) -> str:
    """A URL's or HOST:PORT's host: a DNS name or an IP address ([v6] in URLs)."""
    if value.startswith("[") and value.endswith("]"):
        return f"[{_ip_address(value[1:-1])}]"
    try:
        return _ip_address(value)
    except ValueError:
        return domain_name(value, min_labels=1)


def _url(value, schemes=("https", "http")) -> str:
    """A URL reduced to scheme://host[:port]/path: no user, query or fragment."""
    text = _text(value).strip()
    expected = f"expected a {' or '.join(s + '://' for s in schemes)} URL (scheme, host, " \
               "optional port and path; no user, query or fragment)"
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError:
        raise ValueError(expected) from None
    if url.username or url.password or url.query or "?" in text:
        raise Credentials(_masked(text))
    if (url.scheme not in schemes or not url.hostname or url.fragment or "#" in text
            or not _URL_PATH.fullmatch(url.path)):
        raise ValueError(expected)
    host = url.netloc.rpartition(":")[0] if port is not None else url.netloc
    try:
        host = _host(host)
    except ValueError:
        raise ValueError(expected) from None
    return f"{url.scheme}://{host}{f':{port}' if port is not None else ''}{url.path}".rstrip("/")


def _masked(url: str) -> str:
    """A URL with its user, password and query masked."""
    scheme, colon, rest = url.partition("://")
    rest = rest.split("?")[0] + ("?***" if "?" in rest else "")
    host = rest.split("/")[0]
    if "@" in host:
        rest = "***@" + rest[len(host.rpartition("@")[0]) + 1:]
    return scheme + colon + rest


def _flag(value) -> bool:
    """True or False themselves (``--data`` turns true/false into them): no "on", "yes" or 1,
    so that a stray word cannot turn a switch on."""
    if not isinstance(value, bool):
        raise ValueError("expected True or False")
    return value


def _whole_number(value):
    """An int, or the digits of one (from --data): never a bool, a float or padded text."""
    if isinstance(value, bool) or not (isinstance(value, int) or (
            isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,9}", value))):
        raise ValueError("expected a whole number")
    return int(value)


def _selector(value) -> str:
    if not _LABEL.fullmatch(_text(value)):
        raise ValueError("expected one DNS label: lowercase letters, digits and hyphens")
    return value


def _quota(value) -> str:
    """A mailbox size: a whole number of megabytes or gigabytes, '500M' or '2G'."""
    match = _QUOTA.fullmatch(_text(value).strip().upper()) if isinstance(value, str) else None
    if not match:
        raise ValueError("expected a size such as 500M or 2G (1 to 999999, M or G), or None")
    return "".join(match.groups())


def _day(value) -> datetime.date:
    """A calendar day: a date, or text YYYY-MM-DD."""
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("expected a day such as 2026-11-25, or None")


def is_documentation(address) -> bool:
    return any(address in network for network in DOCUMENTATION_NETWORKS)


def _public_ipv4(value) -> ipaddress.IPv4Address:
    """Global unicast (documentation ranges pass here; the model refuses them outside a lab)."""
    expected = "expected the host's public IPv4 address (global unicast), e.g. 198.51.100.10"
    try:
        address = ipaddress.IPv4Address(_text(str(value)).strip())
    except ValueError:
        raise ValueError(expected) from None
    if not (address.is_global or is_documentation(address)) or address.is_multicast:
        raise ValueError(expected)
    return address


def _public_ipv6(value) -> ipaddress.IPv6Address:
    """Global unicast: no %scope, no IPv4-mapped, 6to4 or Teredo, no ULA or link-local."""
    expected = "expected the host's global IPv6 address (global unicast, no %scope), or None"
    text = _text(str(value)).strip()
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise ValueError(expected) from None
    if ("%" in text or address.scope_id or address.ipv4_mapped or address.sixtofour
            or address.teredo or address.is_multicast or address.is_site_local
            or not (address.is_global or is_documentation(address))):
        raise ValueError(expected)
    return address


def _mx_value(value) -> str:
    """'PRIORITY HOST' of an MX record to keep beside ours."""
    priority, _, host = _text(value).strip().partition(" ")
    if not (priority.isdigit() and int(priority) <= 65535):
        raise ValueError("expected 'PRIORITY HOST', e.g. '20 backup-mx.example.net'")
    return f"{int(priority)} {_fqdn(host)}"


def _ip_address(value) -> str:
    """An IPv4 or IPv6 address without %scope (a server the controller asks: may be private)."""
    text = _text(value).strip()
    if "%" in text:
        raise ValueError("expected an IPv4 or IPv6 address without %scope")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError("expected an IPv4 or IPv6 address") from None
    if address.is_unspecified or address.is_multicast:
        raise ValueError("expected an IPv4 or IPv6 address of a host (not unspecified/multicast)")
    return str(address)


def _server(value) -> str:
    """A server the controller talks to: an IP address or a host name."""
    try:
        return _ip_address(value)
    except ValueError:
        try:
            return domain_name(value, min_labels=1)
        except ValueError:
            raise ValueError("expected a host name or an IP address") from None


def _path(value) -> str:
    """A path on the controller (``~`` is the user's home, as in a shell)."""
    if not _text(value):
        raise ValueError("expected a path")
    return str(Path(value).expanduser())


MAX_PEM_BYTES = 1 << 20


def _pem_file(value) -> str:
    """A file of PEM certificates on the controller (a CA bundle): certificates only, each
    parsed; a private key in it is refused (the bundle is copied to the host, readable by all)
    and never shown."""
    path = _path(value)
    if not Path(path).is_file():
        raise ValueError("expected the path of a PEM file on the controller")
    with open(path, "rb") as file:
        data = file.read(MAX_PEM_BYTES + 1)
    if b"PRIVATE KEY" in data:
        raise ValueError("expected certificates only; this file holds a private key (not shown: "
                         "a CA bundle is copied to the host, readable by all)")
    labels = set(re.findall(rb"-----BEGIN ([A-Z0-9 ]+)-----", data))
    try:
        if len(data) > MAX_PEM_BYTES or labels != {b"CERTIFICATE"}:
            raise ValueError
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError("expected a PEM file of certificates only (-----BEGIN CERTIFICATE-----"
                         f", at most {MAX_PEM_BYTES} bytes), each one readable") from None
    return path


def _host_port(value) -> str:
    host, _, port = _text(value).rpartition(":")
    try:
        if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError
        return f"{_host(host)}:{int(port)}"
    except ValueError:
        raise ValueError("expected HOST:PORT, e.g. gmail-smtp-in.l.google.com:25") from None


def _relay(value) -> str:
    """A smarthost as Postfix's relayhost writes it: [name]:587 or [name]:465 (brackets: no MX
    lookup). A bare name:port is taken as the same."""
    text = _text(value)
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if port not in ("587", "465"):
        raise ValueError("expected [HOST]:587 or [HOST]:465, e.g. [smtp.relay.example]:587 "
                         "(submission with STARTTLS, or implicit TLS)")
    return f"[{domain_name(host)}]:{port}"


def _login(value) -> str:
    """A SASL login as relays issue them (an address, "apikey", an access key id): kept as
    written, case included; no space, colon or control character."""
    text = _text(value)
    if ":" in text:  # login:password
        raise Credentials(text.partition(":")[0] + ":***")
    if not re.fullmatch(r"[A-Za-z0-9._@+=-]{1,128}", text):
        raise ValueError("expected a login of letters, digits and . _ @ + = - (1 to 128)")
    return text


Fqdn = Annotated[str, AfterValidator(_fqdn)]
DnsName = Annotated[str, AfterValidator(_dns_name)]
InventoryName = Annotated[str, AfterValidator(_inventory_name)]
KeyName = Annotated[str, AfterValidator(_key_name)]
MailtoUri = Annotated[str, AfterValidator(_mailto)]
ReportUri = Annotated[str, AfterValidator(_report_uri)]
IodefUri = Annotated[str, AfterValidator(_iodef)]
Email = Annotated[str, AfterValidator(_email)]
ForwardTarget = Annotated[str, AfterValidator(_forward_target)]
Url = Annotated[str, AfterValidator(_url)]
Selector = Annotated[str, AfterValidator(_selector)]
IpAddress = Annotated[str, AfterValidator(_ip_address)]
Server = Annotated[str, AfterValidator(_server)]
ControllerPath = Annotated[str, AfterValidator(_path)]
PemFile = Annotated[str, AfterValidator(_pem_file)]
HostPort = Annotated[str, AfterValidator(_host_port)]
Quota = Annotated[str, AfterValidator(_quota)]
MxValue = Annotated[str, AfterValidator(_mx_value)]
Number = Annotated[int, BeforeValidator(_whole_number)]
Flag = Annotated[bool, BeforeValidator(_flag)]
RelayHost = Annotated[str, AfterValidator(_relay)]
Login = Annotated[str, AfterValidator(_login)]
SpfInclude = Annotated[str, AfterValidator(_spf_include)]
Day = Annotated[datetime.date, BeforeValidator(_day)]
PublicIPv4 = Annotated[ipaddress.IPv4Address, BeforeValidator(_public_ipv4)]
PublicIPv6 = Annotated[ipaddress.IPv6Address, BeforeValidator(_public_ipv6)]
