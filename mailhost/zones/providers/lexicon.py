"""Any DNS provider dns-lexicon (3.25) speaks: Hetzner, DigitalOcean, OVH, Gandi, Route 53,
deSEC, PowerDNS and about 80 more, through lexicon's own provider classes.

lexicon lists, creates and deletes records by (type, name, content); the planner already reads
only the keys it owns and writes per key, so a plan maps onto it directly:

- ``read``: one ``list_records()`` of the zone (most lexicon providers fetch the whole zone for
  any list), kept to the owned keys, a CNAME at an owned name and a DNAME above one. A
  wildcard is listed under its own name ``*.zone``: nothing is synthesized. PowerDNS alone is
  read name by name, the owned names and those above them (lexicon_powerdns: lexicon's own
  provider fetches the whole zone, whose time grows with it).
- ``apply``: the zone is listed again and compared with what the plan was made from (a change
  since stops the write, nothing written); then, change by change, our removed values are
  deleted by their exact content as read and our added values created. lexicon has no
  transaction: a failure part-way is reported, and the read-back after the write
  (mailhost.zones.sync.ZoneSync.verify) names what the zone holds.
- The zone is the one the settings name: lexicon's ``Client``, which guesses it from the
  Public Suffix List (tldextract, online by default), is not used. The few lexicon providers
  that call ``tldextract.extract`` themselves (GoDaddy, Namecheap) get, while they run, an
  extractor on tldextract's bundled snapshot that never fetches anything (``offline_suffixes``).
- DNSSEC: lexicon cannot say whether a zone is signed; DANE's TLSA is planned when the zone's
  name servers serve a DNSKEY set that signs itself (``signed``: lookup.zone_signed).
- Credentials: lexicon's own names, ``LEXICON_<PROVIDER>_<OPTION>`` in the environment or
  ``lexicon_<provider>_<option>`` in the secrets file (mailhost.secrets); they are handed to
  lexicon in a dict, never through the process environment, and never shown in a message.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from types import MappingProxyType

from mailhost.dns.records import (
    RecordSet,
    normalize_name,
    normalize_value,
    quote_txt,
    unquote_txt,
)
from mailhost.zones.providers.base import Provider, ProviderError

PROVIDERS_PACKAGE = "lexicon._private.providers"
# Record types the product writes that a provider's API cannot hold (from the providers'
# own documentation): the plan drops them with one notice line, the checks name them.
CANNOT_HOLD = MappingProxyType({
    "digitalocean": frozenset({"TLSA"}),
    "linode": frozenset({"TLSA"}),
    "linode4": frozenset({"TLSA"}),
    "namecheap": frozenset({"TLSA"}),
    "vultr": frozenset({"TLSA"}),
    "duckdns": frozenset({"MX", "CAA", "TLSA", "SRV", "CNAME"}),
})
# providers whose API takes record content in zone-file form: absolute names end with a dot,
# TXT is quoted strings of at most 255 bytes (PowerDNS's HTTP API refuses anything else)
ZONE_FILE_CONTENT = frozenset({"powerdns", "localzone"})
NAME_VALUES = frozenset({"MX", "SRV", "CNAME", "NS", "PTR"})


def provider_exists(name: str) -> bool:
    """Whether dns-lexicon ships a provider called ``name`` (its module, not imported)."""
    return bool(re.fullmatch(r"[a-z0-9_]+", name)) and \
        importlib.util.find_spec(f"{PROVIDERS_PACKAGE}.{name}") is not None


@contextmanager
def offline_suffixes():
    """While inside: ``tldextract.extract`` parses names with tldextract's bundled Public
    Suffix List snapshot, no URL to fetch, no cache to read or write."""
    import tldextract
    import tldextract.tldextract as module

    saved = module.TLD_EXTRACTOR
    module.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None,
                                                 include_psl_private_domains=True)
    try:
        yield module.TLD_EXTRACTOR
    finally:
        module.TLD_EXTRACTOR = saved


class LexiconProvider(Provider):
    """One lexicon provider's zones.

    + name: the lexicon provider (``powerdns``, ``hetzner``...)
    + options: its non-secret options by lexicon's names (``pdns_server``...)
    + credentials: its secret options by lexicon's names (``auth_token``...)
    + signed: whether a zone is DNSSEC-signed, asked outside lexicon, which cannot say
      (make_provider: lookup.zone_signed, the zone's name servers); None: never
    """

    kind = "lexicon"

    def __init__(self, name: str, options: dict[str, str], credentials: dict[str, str],
                 signed: Callable[[str], bool] | None = None):
        super().__init__()
        self._signed = signed
        if not provider_exists(name):
            raise ProviderError(f"dns_lexicon_provider {name!r}: dns-lexicon has no such "
                                "provider (see its list of providers)")
        self.name = name
        self.kind = f"lexicon {name}"
        self._options = {**options, **credentials}
        self._secrets = [v for v in credentials.values() if v]
        self._clients: dict[str, object] = {}
        self._runtime: dict[str, dict] = {}
        self._listed: dict[str, list[dict]] = {}  # whole zones, listed by read
        self._by_name = name == "powerdns"

    # -- the Provider interface --

    def check_zone(self, zone: str) -> None:
        self._client(zone)

    def unsupported_types(self) -> frozenset[str]:
        return CANNOT_HOLD.get(self.name, frozenset())

    def dnssec_signed(self, zone: str) -> bool:
        return self._signed is not None and self._signed(zone)

    def dnssec_advice(self, zone: str) -> str:
        return ("its name servers serve no DNSKEY set that signs itself: sign the zone at "
                f"{self.name} (DNSSEC) and publish its DS at the registrar")

    def read(self, zone: str, owned: Iterable[tuple[str, str]]) -> list[RecordSet]:
        keys = {(normalize_name(n), t.upper()) for n, t in owned}
        names = {name for name, _ in keys}
        wanted = keys | {(name, "CNAME") for name in names}
        grouped: dict[tuple[str, str], list[dict]] = {}
        above = {n.split(".", i)[-1] for n in names for i in range(1, n.count(".") + 1)}
        in_zone = {n for n in names | above if n == zone or n.endswith("." + zone)}
        for record in self._list(zone, in_zone):
            key = (record["name"], record["type"])
            if key in wanted or (key[1] == "DNAME"
                                 and any(n.endswith("." + key[0]) for n in names)):
                grouped.setdefault(key, []).append(record)
        return [_record_set(records) for records in grouped.values()]

    def apply(self, plan) -> None:
        if plan.empty:
            return
        zone = plan.zone
        now, names = {}, {change.name for change in plan.changes}
        for record in self._list(zone, names):
            now.setdefault((record["name"], record["type"]), []).append(record)
        changed = [f"{c.rtype} {c.name}" for c in plan.changes
                   if (_record_set(now[(c.name, c.rtype)]) if (c.name, c.rtype) in now
                       else None) != c.found]
        if changed:
            raise self._error(f"zone {zone} changed since the plan was read "
                              f"({', '.join(changed)}); nothing was written: run again")
        client = self._client(zone)
        try:
            for change in plan.changes:
                if self._by_name:  # lexicon replaces the RRset: with its disabled records
                    client.scope({change.name}, writing=True)
                contents = {record["value"]: record["content"]
                            for record in now.get((change.name, change.rtype), [])}
                for value in change.removed_values:
                    content = contents.get(value, self._content(change.rtype, value))
                    self._call("write", f"deleting {change.rtype} {change.name}",
                               lambda c=change, v=content: client.delete_record(
                                   None, c.rtype, c.name, v))
                for value in change.added_values:
                    self._runtime[zone]["ttl"] = change.new.ttl
                    content = self._content(change.rtype, value)
                    self._call("write", f"creating {change.rtype} {change.name}",
                               lambda c=change, v=content: client.create_record(
                                   c.rtype, c.name, v))
        finally:
            self._listed.pop(zone, None)

    def count_records(self, zone: str) -> int:
        if zone not in self._listed:
            self._list(zone, None)
        return len(self._listed[zone])

    # -- lexicon --

    def _client(self, zone: str):
        """The lexicon provider object of ``zone``, authenticated (it finds the zone)."""
        if zone not in self._clients:
            from lexicon.config import ConfigResolver

            if self._by_name:
                from mailhost.zones.providers.lexicon_powerdns import PowerDnsByName as cls
            else:
                cls = importlib.import_module(f"{PROVIDERS_PACKAGE}.{self.name}").Provider
            runtime = {"provider_name": self.name, "domain": zone, "ttl": 3600,
                       self.name: dict(self._options)}
            config = ConfigResolver().with_dict(runtime)
            client = self._call(None, f"setting up zone {zone}",  # no call to the service
                                lambda: cls(config))
            if self._by_name:
                client.requests = self.calls  # it counts its HTTP requests itself
            self._call("read", f"looking up zone {zone}", client.authenticate)
            self._clients[zone], self._runtime[zone] = client, runtime
        return self._clients[zone]

    def _list(self, zone: str, names: set[str] | None) -> list[dict]:
        """The records of the zone as lexicon lists them, with ``value`` in records.py form:
        PowerDNS's at ``names`` only (None: all), every other provider's all of them."""
        client = self._client(zone)
        if self._by_name:
            client.scope(names)
        listed = self._call("read", f"listing the records of zone {zone}",
                            client.list_records)
        records = []
        for record in listed:
            rtype = str(record.get("type", "")).upper()
            content = str(record.get("content", ""))
            records.append({"name": normalize_name(str(record.get("name", ""))),
                            "type": rtype, "ttl": int(record.get("ttl") or 0),
                            "content": content,
                            "value": _value(rtype, self._stored(record, content))})
        if names is None or not self._by_name:
            self._listed[zone] = records
        return records

    def _stored(self, record: dict, content: str) -> str:
        """The content as the server stores it where lexicon's content is not: its PowerDNS
        provider appends the zone to a CNAME target outside it, but keeps the stored content
        in the record's id ("TYPE/name=content")."""
        if self.name == "powerdns" and "=" in str(record.get("id", "")):
            return str(record["id"]).split("=", 1)[1]
        return content

    def _content(self, rtype: str, value: str) -> str:
        """A value in records.py form as lexicon's content for this provider."""
        if self.name not in ZONE_FILE_CONTENT:
            return value
        if rtype == "TXT":
            return quote_txt(value)
        if rtype in NAME_VALUES:
            *head, target = value.split()
            return " ".join([*head, target if target.endswith(".") else target + "."])
        return value

    def _call(self, kind: str | None, what: str, function):
        """Count (as KIND) and run one lexicon call; its errors become one line without a
        secret."""
        if kind and not self._by_name:
            self.calls[kind] += 1
        with offline_suffixes():
            try:
                return function()
            except ProviderError:
                raise
            except Exception as error:  # lexicon's providers raise anything (requests, own)
                detail = " ".join(str(error).split()) or type(error).__name__
                raise self._error(f"lexicon provider {self.name} failed while {what}: "
                                  f"{detail}") from None

    def _error(self, message: str) -> ProviderError:
        for secret in self._secrets:
            message = message.replace(secret, "[secret]")
        return ProviderError(message)


def record_value(rtype: str, content: str) -> str:
    """lexicon's content of a record as a value in records.py form: TXT unquoted and joined
    (PowerDNS's provider strips only the outer quotes of ``"a" "b"``), names without dot."""
    content = content.strip()
    if rtype == "TXT":
        if content.startswith('"') and content.endswith('"'):
            return unquote_txt(content)
        if '" "' in content:
            return unquote_txt(f'"{content}"')
        return content
    if rtype == "CAA":
        flags, tag, value = (content.split(None, 2) + ["", ""])[:3]
        return f'{flags} {tag} "{unquote_txt(value)}"' if value else content
    return content


def _value(rtype: str, content: str) -> str:
    try:
        return normalize_value(rtype, record_value(rtype, content))
    except ValueError:  # a record of another tool in a form we do not parse: kept as listed
        return content


def _record_set(records: list[dict]) -> RecordSet:
    """Records of one key as a RecordSet: the lowest TTL, and each value's own TTL."""
    first = records[0]
    return RecordSet(first["name"], first["type"], min(r["ttl"] for r in records),
                     tuple(r["value"] for r in records),
                     value_ttls=tuple((r["value"], r["ttl"]) for r in records))
