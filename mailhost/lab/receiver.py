"""The lab's receiving mail host (mx.example.net): aiosmtpd with STARTTLS that checks every
message's DKIM, SPF, DMARC and iprev against the lab DNS and stores it for tests to read.

Run inside its network namespace (``scripts/lab up`` does this)::

    ip netns exec mhlab-rx python -m mailhost.lab.receiver --listen 198.51.100.20 \\
        --listen 2001:db8::20 --hostname mx.example.net --domain example.net \\
        --dns 198.51.100.1 --store .lab/received --cert rx.pem --key rx.key

Each accepted message becomes ``<store>/<time>-<id>.eml`` (the message as received, with
``Authentication-Results`` and ``Received`` headers prepended) and, written last, a sidecar
``<time>-<id>.json`` with the peer address, the envelope, TLS details and the verdicts.
``wait_for_message`` / ``list_messages`` read them back.

Every DNS lookup (dkimpy, pyspf, authheaders' DMARC) goes through dnspython's default
resolver, which this module replaces with one that asks only the lab DNS server.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import email.utils
import ipaddress
import json
import signal
import ssl
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dns.resolver
import dns.reversename

from mailhost.lab.common import RX_TEMPFAIL_FLAG

# --- reading what the receiver stored (used by tests, no server needed) ---


@dataclass(frozen=True)
class ReceivedMessage:
    """One stored message: the .eml path and its JSON sidecar."""

    eml: Path
    meta: dict

    @property
    def raw(self) -> bytes:
        return self.eml.read_bytes()

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)

    @property
    def authentication_results(self) -> str:
        """The Authentication-Results header value the receiver added."""
        return self.meta["authentication_results"]

    @property
    def verdicts(self) -> dict:
        """{"spf": ..., "dkim": ..., "dmarc": ..., "iprev": ...} (e.g. "pass")."""
        return self.meta["verdicts"]


def list_messages(folder: str | Path) -> list[ReceivedMessage]:
    """Every complete stored message, oldest first."""
    found = []
    for sidecar in sorted(Path(folder).glob("*.json")):
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            continue
        found.append(ReceivedMessage(sidecar.with_suffix(".eml"), meta))
    return found


def wait_for_message(folder: str | Path, predicate: Callable[[ReceivedMessage], bool] | None
                     = None, timeout: float = 60, after: float | None = None) -> ReceivedMessage:
    """The first stored message matching ``predicate`` (received after the Unix time
    ``after``, if given); TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        for item in list_messages(folder):
            if after is not None and item.meta["received_at"] < after:
                continue
            if predicate is None or predicate(item):
                return item
        if time.monotonic() > deadline:
            raise TimeoutError(f"no matching message in {folder} after {timeout}s")
        time.sleep(0.25)


# --- checks ---


def use_lab_dns(server: str, port: int = 53) -> dns.resolver.Resolver:
    """Make dnspython's default resolver (used by dkimpy, pyspf, authheaders) ask ``server``."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server]
    resolver.port = port
    resolver.lifetime = 5
    dns.resolver.default_resolver = resolver
    return resolver


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def check_iprev(ip: str) -> tuple[str, str]:
    """RFC 8601 iprev: the PTR name of ``ip`` must resolve back to ``ip``."""
    try:
        names = [r.target.to_text().rstrip(".")
                 for r in dns.resolver.resolve(dns.reversename.from_address(ip), "PTR")]
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return "fail", ""
    except dns.exception.DNSException:
        return "temperror", ""
    wanted = ipaddress.ip_address(ip)
    for name in names:
        for rtype in ("A", "AAAA"):
            try:
                answers = dns.resolver.resolve(name, rtype)
            except dns.exception.DNSException:
                continue
            if any(ipaddress.ip_address(a.address) == wanted for a in answers):
                return "pass", name
    return "fail", names[0] if names else ""


def check_dkim(raw: bytes) -> list[dict]:
    """Verify every DKIM-Signature; one dict per signature (d, s, a, result)."""
    import dkim

    count = len(email.message_from_bytes(raw).get_all("DKIM-Signature") or [])
    results = []
    for index in range(count):
        verifier = dkim.DKIM(raw)
        reason = ""
        try:
            result = "pass" if verifier.verify(idx=index) else "fail"
        except dkim.DnsTimeoutError as error:
            result, reason = "temperror", str(error)
        except dkim.ValidationError as error:  # e.g. body hash mismatch
            result, reason = "fail", str(error)
        except Exception as error:  # a malformed signature or key: dkimpy raises several kinds
            result, reason = "permerror", f"{type(error).__name__}: {error}"
        fields = verifier.signature_fields or {}
        results.append({
            "result": result,
            "d": fields.get(b"d", b"").decode(errors="replace").lower(),
            "s": fields.get(b"s", b"").decode(errors="replace"),
            "a": fields.get(b"a", b"").decode(errors="replace"),
            "reason": reason,
        })
    return results


def authenticate(raw: bytes, ip: str, mail_from: str, helo: str, authserv_id: str) -> dict:
    """All verdicts for one message plus the Authentication-Results header value."""
    from authheaders import check_dmarc, check_spf
    from authres import (
        AuthenticationResultsHeader,
        DKIMAuthenticationResult,
        IPRevAuthenticationResult,
    )

    iprev, ptr = check_iprev(ip)
    spf = check_spf(ip, mail_from, helo)
    signatures = check_dkim(raw)
    dkim_results = [
        DKIMAuthenticationResult(result=sig["result"], header_d=sig["d"], header_s=sig["s"],
                                 header_a=sig["a"])
        for sig in signatures
    ]
    # DMARC looks at one DKIM result: a passing one, aligned with From: if there is one
    from_domain = _domain(email.utils.parseaddr(
        email.message_from_bytes(raw).get("From", ""))[1])
    passing = [r for r, s in zip(dkim_results, signatures, strict=True) if s["result"] == "pass"]
    aligned = [r for r in passing if r.header_d == from_domain or
               from_domain.endswith("." + r.header_d)]
    best = (aligned or passing or dkim_results or [DKIMAuthenticationResult(result="none")])[0]
    dmarc = check_dmarc(raw, spf, best)
    results = [IPRevAuthenticationResult(result=iprev, policy_iprev=ip,
                                         policy_iprev_comment=ptr or None), spf]
    results += dkim_results or [DKIMAuthenticationResult(result="none")]
    results.append(dmarc)
    header = str(AuthenticationResultsHeader(authserv_id=authserv_id, results=results))
    return {
        "authentication_results": header.split(":", 1)[1].strip(),
        "verdicts": {
            "iprev": iprev,
            "spf": spf.result or "none",
            "dkim": "pass" if passing else (signatures[0]["result"] if signatures else "none"),
            "dmarc": dmarc.result or "none",
        },
        "dkim_signatures": signatures,
        "dmarc_policy": getattr(dmarc, "policy", None),
        "from_domain": from_domain,
        "ptr": ptr,
    }


# --- the SMTP server ---


class Handler:
    """aiosmtpd handler: accept mail for our domains, verify it, store it."""

    def __init__(self, hostname: str, domains: list[str], store: Path):
        self.hostname = hostname
        self.domains = [d.lower() for d in domains]
        self.store = store

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if _domain(address) not in self.domains:
            return "550 5.7.1 Relaying denied"
        if (self.store / RX_TEMPFAIL_FLAG).exists():
            return "451 4.3.2 lab receiver: try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        loop = asyncio.get_running_loop()
        queue_id = uuid.uuid4().hex[:12]
        try:
            await loop.run_in_executor(None, self.store_message, session, envelope, queue_id)
        except Exception as error:  # a bug here must not look like a rejection: retry later
            traceback.print_exc()
            return f"451 4.3.0 lab receiver could not store the message: {error}"
        return f"250 2.0.0 OK queued as {queue_id}"

    def store_message(self, session, envelope, queue_id: str) -> None:
        raw = envelope.original_content or b""
        ip = ipaddress.ip_address(session.peer[0])
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        helo = session.host_name or ""
        mail_from = envelope.mail_from or ""
        tls = None
        if session.ssl:
            ssl_object = session.ssl.get("ssl_object")
            cipher = session.ssl.get("cipher")
            tls = {"version": ssl_object.version() if ssl_object else None,
                   "cipher": cipher[0] if cipher else None}
        result = authenticate(raw, str(ip), mail_from, helo, self.hostname)
        received_at = time.time()
        with_ = "ESMTPS" if tls else "ESMTP"
        tls_note = f" ({tls['version']} {tls['cipher']})" if tls else ""
        headers = (
            f"Authentication-Results: {self.hostname};\r\n    "
            + ";\r\n    ".join(p.strip() for p in result["authentication_results"]
                                .split(";")[1:]) + "\r\n"
            f"Received: from {helo} ({result['ptr'] or 'unknown'} [{ip}])\r\n"
            f"    by {self.hostname} (mailhost lab receiver) with {with_}{tls_note}\r\n"
            f"    id {queue_id}; {email.utils.formatdate(received_at)}\r\n"
        )
        stem = f"{time.time_ns()}-{queue_id}"
        self.store.mkdir(parents=True, exist_ok=True)
        (self.store / f"{stem}.eml").write_bytes(headers.encode() + raw)
        meta = {
            "id": queue_id,
            "eml": f"{stem}.eml",
            "received_at": received_at,
            "peer": str(ip),
            "family": ip.version,
            "helo": helo,
            "mail_from": mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "tls": tls,
            **result,
        }
        temporary = self.store / f"{stem}.json.tmp"
        temporary.write_text(json.dumps(meta, indent=2) + "\n")
        temporary.replace(self.store / f"{stem}.json")  # complete once the sidecar exists
        print(f"receiver: {queue_id} from {mail_from} [{ip}] to {envelope.rcpt_tos}: "
              f"{result['verdicts']}", flush=True)


async def serve(args: argparse.Namespace) -> None:
    from aiosmtpd.smtp import SMTP

    use_lab_dns(args.dns, args.dns_port)
    tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_context.load_cert_chain(args.cert, args.key)
    handler = Handler(args.hostname, args.domain, Path(args.store))
    loop = asyncio.get_running_loop()

    def protocol() -> SMTP:
        return SMTP(handler, hostname=args.hostname, ident="ESMTP mailhost lab receiver",
                    tls_context=tls_context, require_starttls=False, loop=loop)

    server = await loop.create_server(protocol, host=args.listen, port=args.port)
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    print(f"receiver {args.hostname} listening on "
          + ", ".join(f"[{a}]:{args.port}" for a in args.listen), flush=True)
    await stopping.wait()
    server.close()
    await server.wait_closed()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", action="append", required=True, help="address (repeat)")
    parser.add_argument("--port", type=int, default=25)
    parser.add_argument("--hostname", default="mx.example.net")
    parser.add_argument("--domain", action="append", required=True,
                        help="accept mail for this domain (repeat)")
    parser.add_argument("--dns", required=True, help="the only DNS server to ask")
    parser.add_argument("--dns-port", type=int, default=53)
    parser.add_argument("--store", required=True, help="folder for received messages")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    asyncio.run(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
