"""The Cloudflare emulator's Knot mirror: a write hook that copies changed RRsets by RFC 2136.

Its conversion from a Cloudflare record to DNS presentation form is its own (it does not use
the provider's helpers), so that a quoting mistake on either side shows in the tests.
"""

from __future__ import annotations


class Rfc2136Mirror:
    """A write hook that copies the rrsets an emulator write changed into a DNS server.

    Use as ``CloudflareEmulator(..., on_write=Rfc2136Mirror(...))``; each call sends one
    TSIG-signed RFC 2136 update replacing (or deleting) every (name, type) that changed.
    """

    def __init__(self, server: str, port: int, zone: str, tsig_name: str, tsig_secret: str,
                 algorithm: str = "hmac-sha256", timeout: float = 5.0):
        import dns.tsigkeyring

        self.server, self.port, self.timeout = server, port, timeout
        self.zone = zone.rstrip(".").lower()
        self.keyring = dns.tsigkeyring.from_text({tsig_name: tsig_secret})
        self.algorithm = algorithm

    def __call__(self, zone: str, old_records: list[dict], new_records: list[dict]) -> None:
        if zone.rstrip(".").lower() != self.zone:
            return
        old, new = _rrsets(old_records), _rrsets(new_records)
        changed = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
        if changed:
            self.push({key: new.get(key) for key in changed})

    def push(self, rrsets: dict) -> None:
        """Send one update: ``{(name, type): (ttl, [rdata text]) or None to delete}``."""
        import dns.query
        import dns.rcode
        import dns.update

        update = dns.update.Update(self.zone + ".", keyring=self.keyring,
                                   keyalgorithm=self.algorithm)
        for (name, rtype), rrset in rrsets.items():
            if rrset is None:
                update.delete(name + ".", rtype)
            else:
                ttl, rdatas = rrset
                update.replace(name + ".", ttl, rtype, *rdatas)
        response = dns.query.tcp(update, self.server, port=self.port, timeout=self.timeout)
        if response.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"RFC 2136 update refused: {dns.rcode.to_text(response.rcode())}")


def _rrsets(records: list[dict]) -> dict:
    """Cloudflare records as {(name, type): (min ttl, sorted rdata texts)}."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        grouped.setdefault((record["name"], record["type"]), []).append(record)
    result = {}
    for key, group in grouped.items():
        rdatas = []
        for record in group:
            content, rtype = record["content"], record["type"]
            if rtype == "MX":
                content = f"{record['priority']} {content.rstrip('.')}."  # "0 ." stays "0 ."
            elif rtype in ("CNAME", "NS", "PTR"):
                content += "."
            elif rtype == "SRV" and not content.endswith("."):
                content += "."  # the target: absolute, as Cloudflare serves it
            elif rtype == "TXT" and not content.startswith('"'):
                content = _txt_strings(content)
            rdatas.append(content)
        ttl = min(300 if r["ttl"] == 1 else r["ttl"] for r in group)
        result[key] = (ttl, sorted(rdatas))
    return result




def _txt_strings(content: str) -> str:
    """Unquoted TXT content as DNS presentation text: quoted strings of at most 255 bytes,
    as Cloudflare serves content longer than one string."""
    data = content.encode()
    pieces = []
    while True:
        piece, data = data[:255], data[255:]
        while data and piece and (data[0] & 0xC0) == 0x80:  # keep UTF-8 characters whole
            piece, data = piece[:-1], piece[-1:] + data
        text = piece.decode()
        escaped = "".join("\\" + c if c in '"\\' else c for c in text)
        pieces.append(f'"{escaped}"')
        if not data:
            return " ".join(pieces)
