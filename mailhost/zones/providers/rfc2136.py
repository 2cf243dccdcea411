"""RFC 2136 dynamic updates with TSIG, for a primary server such as Knot, BIND or PowerDNS.

Reads go straight to the primary over TCP, signed with the TSIG key, so no cache or
secondary can hide a change: one query per owned key on one connection, then one
prerequisite-only UPDATE confirming that what was found really exists (prerequisites never
match a wildcard), so a wildcard's synthesized answer is never taken for a record. A CNAME at
an owned name or a DNAME above it is returned too, for the plan to refuse.
A plan is written as ONE update message per zone whose
prerequisites require every touched RRset to be exactly as it was read: a concurrent change
makes the whole update fail (NXRRSET/YXRRSET) instead of being overwritten. Only our values
are deleted (RR by RR), so foreign values sharing a name and type, such as a site
verification TXT beside our SPF at the apex, are left alone.
"""

from __future__ import annotations

import binascii
import ipaddress
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.update

from mailhost.dns.records import RecordSet, normalize_name, normalize_value, split_txt
from mailhost.lookup import signs_itself
from mailhost.zones.providers.base import Provider, ProviderError

# read(): up to this many owned keys, one query per key on one TCP connection (a round trip
# each); above it, one AXFR of the whole zone. A mail domain owns about 15 keys, so queries
# win unless the tool owns very many keys or the zone is tiny.
AXFR_ABOVE_KEYS = 50

CONCURRENT_CHANGE = (
    "zone {zone} changed since the plan was read (concurrent change): nothing was written, "
    "run again"
)


def rdata_value(rdata: dns.rdata.Rdata) -> str:
    """An rdata in the records.py value form: TXT strings joined and unquoted, names as text."""
    if rdata.rdtype in (dns.rdatatype.TXT, dns.rdatatype.SPF):
        return b"".join(rdata.strings).decode("utf-8", errors="replace")
    if rdata.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return rdata.address
    return rdata.to_text()


def value_rdata(rtype: str, value: str) -> dns.rdata.Rdata:
    """Inverse of rdata_value; TXT is split into 255-byte strings."""
    if rtype == "TXT":
        strings = [part.encode() for part in split_txt(value)]
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings)
    return dns.rdata.from_text(
        dns.rdataclass.IN, rtype, value, origin=dns.name.root, relativize=False
    )


def canonical(rtype: str, rdata: dns.rdata.Rdata) -> str:
    """The normalized value of an rdata, as RecordSet stores it."""
    return normalize_value(rtype, rdata_value(rdata))


DNSSEC_TYPES = frozenset({dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3,
                dns.rdatatype.NSEC3PARAM, dns.rdatatype.DNSKEY, dns.rdatatype.CDS,
                dns.rdatatype.CDNSKEY})


class Rfc2136Provider(Provider):
    """A primary DNS server that accepts TSIG-signed updates and transfers.

    + server: IP address (or host name) of the primary
    + port: its DNS port, usually 53
    + tsig_key_name, tsig_secret (base64), tsig_algorithm: the TSIG key; the secret is
      never shown in a message
    + timeout: seconds to wait for each answer
    """

    kind = "rfc2136"

    def __init__(
        self,
        server: str,
        port: int,
        tsig_key_name: str,
        tsig_secret: str,
        tsig_algorithm: str = "hmac-sha256",
        timeout: float = 10.0,
    ):
        super().__init__()
        self.server = server
        self.port = port
        self.timeout = timeout
        self.key_name = tsig_key_name
        try:
            self._key = dns.tsig.Key(tsig_key_name, tsig_secret, tsig_algorithm)
        except (binascii.Error, ValueError):
            raise ProviderError(
                f"TSIG key {tsig_key_name!r}: the secret is not valid base64"
            ) from None
        except dns.exception.DNSException as error:
            raise ProviderError(f"TSIG key {tsig_key_name!r}: {error}") from None
        self._address: str | None = None
        # The rdatas as read, by key and value: prerequisites and deletes must match the
        # server's RRs byte for byte, and another tool may have split a TXT differently.
        self._read_rdatas: dict[tuple[str, str], dict[str, dns.rdata.Rdata]] = {}

    @property
    def where(self) -> str:
        return f"{self.server} port {self.port}"

    @property
    def address(self) -> str:
        """The server's IP address, looked up once when given as a host name."""
        if self._address is None:
            try:
                ipaddress.ip_address(self.server)
                self._address = self.server
            except ValueError:
                try:
                    info = socket.getaddrinfo(self.server, self.port, type=socket.SOCK_STREAM)
                except socket.gaierror as error:
                    raise ProviderError(
                        f"cannot resolve DNS server {self.server}: {error}"
                    ) from None
                self._address = info[0][4][0]
        return self._address

    # -- the Provider interface --

    def check_zone(self, zone: str) -> None:
        zone = normalize_name(zone)
        query = dns.message.make_query(zone + ".", dns.rdatatype.SOA)
        with self._talking(zone):
            self.calls["read"] += 1
            answer = dns.query.tcp(query, self.address, timeout=self.timeout, port=self.port)
        rcode = answer.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise ProviderError(
                f"DNS server {self.where} does not serve zone {zone} "
                f"(SOA query answered {dns.rcode.to_text(rcode)})"
            )
        apex = dns.name.from_text(zone)
        if answer.flags & dns.flags.AA and answer.get_rrset(
            answer.answer, apex, dns.rdataclass.IN, dns.rdatatype.SOA
        ):
            return
        inside = next((r.name for r in answer.authority if r.rdtype == dns.rdatatype.SOA), None)
        hint = f": it is inside zone {normalize_name(inside.to_text())}" if inside else ""
        raise ProviderError(f"DNS server {self.where} is not authoritative for zone {zone}{hint}")

    def dnssec_signed(self, zone: str) -> bool:
        """The server answers the zone's DNSKEY set with a signature that one of those keys
        validates (lookup.signs_itself). Whether the parent publishes the DS (the chain a
        resolver follows) is not seen from here: the checks (mailhost.checks.dane) ask a
        resolver."""
        zone = normalize_name(zone)
        with self._talking(zone):
            self.calls["read"] += 1
            return signs_itself(self.address, self.port, zone, timeout=self.timeout)

    def read(self, zone: str, owned: Iterable[tuple[str, str]]) -> list[RecordSet]:
        zone = normalize_name(zone)
        keys = sorted({(normalize_name(name), rtype.upper()) for name, rtype in owned})
        if len(keys) > AXFR_ABOVE_KEYS:
            wanted = set(keys) | {(name, "CNAME") for name, _rtype in keys}
            names = {name for name, _rtype in keys}
            found = {
                k: v for k, v in self._transfer(zone).items()
                if k[:2] in wanted
                or (k[1] == "DNAME" and any(n.endswith("." + k[0]) for n in names))
            }
        else:
            found = self._query_each(zone, keys)
        for key in keys:
            self._read_rdatas.pop(key, None)
        record_sets = []
        for (name, rtype, ttl), rdatas in found.items():
            by_value = {canonical(rtype, rdata): rdata for rdata in rdatas}
            self._read_rdatas[(name, rtype)] = by_value
            record_sets.append(RecordSet(name, rtype, ttl, tuple(by_value)))
        return record_sets

    def apply(self, plan) -> None:
        if plan.empty:
            return
        zone = normalize_name(plan.zone)
        update = dns.update.UpdateMessage(
            zone + ".", keyring={self._key.name: self._key}, keyname=self._key.name
        )
        for change in plan.changes:
            name = dns.name.from_text(change.name)
            key = (change.name, change.rtype)
            if change.found is None:
                update.absent(name, change.rtype)
            else:
                update.present(name, *(self._rdata(key, v) for v in change.found.values))
            for value in change.removed_values:
                update.delete(name, self._rdata(key, value))
            if change.added_values:
                rdatas = [self._rdata(key, value) for value in change.added_values]
                update.add(name, change.new.ttl, *rdatas)
        with self._talking(zone):
            self.calls["write"] += 1
            answer = dns.query.tcp(update, self.address, timeout=self.timeout, port=self.port)
        for change in plan.changes:
            self._read_rdatas.pop((change.name, change.rtype), None)
        self._check_update_rcode(zone, answer.rcode())

    def count_records(self, zone: str) -> int:
        """Number of RRs in the zone, SOA included, counted while the AXFR streams in."""
        zone = normalize_name(zone)
        count = 0
        for message in self._xfr_messages(zone):  # a signed zone's signatures are not records
            count += sum(len(rrset) for rrset in message.answer
                         if rrset.rdtype not in DNSSEC_TYPES)
        return count - 1  # the transfer ends with the SOA again

    # -- helpers --

    def _query_each(self, zone: str, keys: list[tuple[str, str]]) -> dict:
        """One TSIG-signed query per key, all on one TCP connection, then one existence check.

        An answer may come from a wildcard, or through a CNAME at the name or a DNAME above
        it: the CNAME and DNAME sets are kept (the plan refuses them), and everything found is
        confirmed by a prerequisite-only UPDATE, which never matches a wildcard (RFC 2136
        2.4); what the server only synthesized is dropped.
        """
        found = {}
        with (
            self._talking(zone),
            socket.create_connection((self.address, self.port), timeout=self.timeout) as connection,
        ):
            for name, rtype in keys:
                query = dns.message.make_query(name + ".", rtype)
                query.use_tsig({self._key.name: self._key}, keyname=self._key.name)
                self.calls["read"] += 1
                answer = dns.query.tcp(query, self.address, timeout=self.timeout, sock=connection)
                rcode = answer.rcode()
                if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                    raise ProviderError(
                        f"DNS server {self.where} answered {dns.rcode.to_text(rcode)} "
                        f"to a query for {name} {rtype} (does it serve zone {zone}?)"
                    )
                for rrset in answer.answer:
                    owner = normalize_name(rrset.name.to_text())
                    kind = dns.rdatatype.to_text(rrset.rdtype)
                    if (owner == name and kind in (rtype, "CNAME")) or kind == "DNAME":
                        found[(owner, kind, rrset.ttl)] = list(rrset)
            real = self._existing(zone, [key[:2] for key in found], connection)
        return {key: rdatas for key, rdatas in found.items() if key[:2] in real}

    def _existing(self, zone: str, keys: list[tuple[str, str]], connection) -> set:
        """The keys that really exist: one prerequisite-only UPDATE for all, one per key when
        that fails (only when something was synthesized)."""
        if not keys:
            return set()
        if self._all_exist(zone, keys, connection):
            return set(keys)
        return {key for key in keys if self._all_exist(zone, [key], connection)}

    def _all_exist(self, zone: str, keys: list[tuple[str, str]], connection) -> bool:
        check = dns.update.UpdateMessage(
            zone + ".", keyring={self._key.name: self._key}, keyname=self._key.name
        )
        for name, rtype in keys:
            check.present(dns.name.from_text(name), rtype)
        self.calls["read"] += 1
        answer = dns.query.tcp(check, self.address, timeout=self.timeout, sock=connection)
        rcode = answer.rcode()
        if rcode in (dns.rcode.NXRRSET, dns.rcode.NXDOMAIN):
            return False
        if rcode != dns.rcode.NOERROR:
            self._check_update_rcode(zone, rcode)
        return True

    def _transfer(self, zone: str) -> dict:
        """The whole zone by AXFR, as {(name, rtype, ttl): [rdata]} (SOA once)."""
        found: dict[tuple[str, str], tuple[int, dict]] = {}
        for message in self._xfr_messages(zone):
            for rrset in message.answer:
                key = (normalize_name(rrset.name.to_text()), dns.rdatatype.to_text(rrset.rdtype))
                ttl, rdatas = found.setdefault(key, (rrset.ttl, {}))
                rdatas.update((rdata, None) for rdata in rrset)  # an ordered set
        return {(*key, ttl): list(rdatas) for key, (ttl, rdatas) in found.items()}

    def _xfr_messages(self, zone: str) -> Iterator[dns.message.Message]:
        """The AXFR of ``zone``, message by message, TSIG-signed and checked."""
        with self._talking(zone):
            self.calls["read"] += 1
            yield from dns.query.xfr(
                self.address,
                zone + ".",
                port=self.port,
                timeout=self.timeout,
                keyring={self._key.name: self._key},
                keyname=self._key.name,
                keyalgorithm=self._key.algorithm,
                relativize=False,
            )

    def _rdata(self, key: tuple[str, str], value: str) -> dns.rdata.Rdata:
        """The rdata of a value as read from the server, or built when it was not read."""
        read = self._read_rdatas.get(key, {}).get(value)
        return read if read is not None else value_rdata(key[1], value)

    def _check_update_rcode(self, zone: str, rcode: dns.rcode.Rcode) -> None:
        if rcode == dns.rcode.NOERROR:
            return
        if rcode in (dns.rcode.NXRRSET, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.YXDOMAIN):
            raise ProviderError(CONCURRENT_CHANGE.format(zone=zone))
        if rcode == dns.rcode.REFUSED:
            raise ProviderError(
                f"DNS server {self.where} refused the update of zone {zone}: does its ACL "
                f"allow updates with TSIG key {self.key_name!r}?"
            )
        if rcode == dns.rcode.NOTAUTH:
            raise ProviderError(
                f"DNS server {self.where} is not authoritative for zone {zone} (NOTAUTH)"
            )
        raise ProviderError(
            f"DNS server {self.where} rejected the update of zone {zone}: "
            f"{dns.rcode.to_text(rcode)}"
        )

    @contextmanager
    def _talking(self, zone: str):
        """Turn network, TSIG and protocol errors into one-line ProviderErrors."""
        key = f"TSIG key {self.key_name!r}"
        try:
            yield
        except dns.tsig.PeerBadKey:
            raise ProviderError(
                f"DNS server {self.where} does not know {key} (BADKEY): check the key name"
            ) from None
        except dns.tsig.PeerBadSignature:
            raise ProviderError(
                f"DNS server {self.where} rejected the signature of {key} (BADSIG): "
                "check the key's secret and algorithm"
            ) from None
        except dns.tsig.PeerBadTime:
            raise ProviderError(
                f"DNS server {self.where} rejected {key} (BADTIME): the clocks differ too much"
            ) from None
        except dns.tsig.PeerError as error:
            raise ProviderError(f"DNS server {self.where} rejected {key}: {error}") from None
        except (dns.exception.Timeout, TimeoutError):
            raise ProviderError(
                f"DNS server {self.where} did not answer within {self.timeout:g}s"
            ) from None
        except ConnectionRefusedError:
            raise ProviderError(
                f"DNS server {self.where} refused the TCP connection: is it running?"
            ) from None
        except EOFError:
            raise ProviderError(
                f"DNS server {self.where} closed the connection part-way (zone {zone}): run again"
            ) from None
        except dns.query.TransferError as error:
            raise ProviderError(
                f"DNS server {self.where} refused the transfer of zone {zone} "
                f"({dns.rcode.to_text(error.rcode)}): does its ACL allow {key} to transfer?"
            ) from None
        except dns.exception.FormError:
            raise ProviderError(
                f"DNS server {self.where} answered without a TSIG signature: it does not "
                f"serve zone {zone}, or does not accept {key}"
            ) from None
        except OSError as error:
            raise ProviderError(
                f"cannot talk to DNS server {self.where}: {error.strerror or error}"
            ) from None
        except dns.exception.DNSException as error:
            raise ProviderError(f"DNS error from {self.where} for zone {zone}: {error}") from None
