"""The lab's receiving mail host (mx.example.net): aiosmtpd with STARTTLS that checks every
message's DKIM, SPF, DMARC and iprev against the lab DNS and stores it for tests to read.

Run inside its network namespace (``scripts/lab up`` does this)::

    ip netns exec mhlab0-rx python -m lab.receiver --listen 198.51.100.20 \\
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
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dns.resolver
import dns.reversename

from lab.common import RX_TEMPFAIL_FLAG

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
    # (str: a From with UTF-8 (RFC 6532) comes back as a Header object, which parseaddr refuses)
    from_domain = _domain(email.utils.parseaddr(
        str(email.message_from_bytes(raw).get("From", "")))[1])
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


# --- reports for what was received, sent when asked (never on a timer) ---
#
#     ip netns exec mhlab0-rx python -m lab.receiver send-reports \
#         --store .lab/received --dns 198.51.100.1 --ca-file .lab/pebble-root.pem
#
# For each sending domain with a DMARC record naming rua=mailto: addresses: one aggregate
# report (RFC 7489 appendix C, zipped, as Google sends them) of every stored message whose
# From: is in that domain. For each domain with a TLS-RPT record (_smtp._tls): one TLS report
# (RFC 8460, gzipped JSON) of the receiver's own STARTTLS session to the domain's MX, whose
# certificate is verified against --ca-file: the session that then delivers the reports.

REPORTER_DOMAIN = "example.net"
REPORTER_ADDRESS = f"dmarc-reports@{REPORTER_DOMAIN}"
REPORTER_HOSTNAME = "mx.example.net"


def txt_tags(name: str, prefix: str) -> dict[str, str] | None:
    """The tags of the TXT record at ``name`` that starts with ``prefix`` (None: none)."""
    try:
        answers = dns.resolver.resolve(name, "TXT")
    except dns.exception.DNSException:
        return None
    for answer in answers:
        text = b"".join(answer.strings).decode(errors="replace")
        if text.startswith(prefix):
            tags = {}
            for item in text.split(";"):
                key, _, value = item.strip().partition("=")
                if key:
                    tags[key.strip().lower()] = value.strip()
            return tags
    return None


def mailto_addresses(rua: str) -> list[str]:
    """The mailto: addresses of a rua tag (size limits "!10m" dropped)."""
    return [uri.strip()[len("mailto:"):].split("!", 1)[0] for uri in rua.split(",")
            if uri.strip().lower().startswith("mailto:")]


def _aligned(domain: str, from_domain: str) -> bool:
    """Relaxed alignment, simplified to "one is the other or a subdomain of it"."""
    domain, from_domain = domain.lower(), from_domain.lower()
    return bool(domain) and (domain == from_domain or from_domain.endswith("." + domain)
                             or domain.endswith("." + from_domain))


def dmarc_rows(messages: list[ReceivedMessage]) -> list[dict]:
    """Aggregate rows: messages with the same source, identifiers and verdicts counted once."""
    rows: dict[tuple, dict] = {}
    for item in messages:
        meta = item.meta
        from_domain = meta.get("from_domain", "")
        mail_from_domain = _domain(meta.get("mail_from") or "") or meta.get("helo", "")
        passing = [s for s in meta.get("dkim_signatures", []) if s["result"] == "pass"]
        dkim_aligned = any(_aligned(s["d"], from_domain) for s in passing)
        spf_result = meta["verdicts"]["spf"]
        spf_aligned = spf_result == "pass" and _aligned(mail_from_domain, from_domain)
        dkim = tuple((s["d"], s["s"], s["result"]) for s in meta.get("dkim_signatures", []))
        key = (meta["peer"], from_domain, dkim_aligned, spf_aligned, dkim, mail_from_domain,
               spf_result)
        if key not in rows:
            rows[key] = {"source_ip": meta["peer"], "count": 0, "header_from": from_domain,
                         "dkim_aligned": dkim_aligned, "spf_aligned": spf_aligned,
                         "dkim": dkim, "spf_domain": mail_from_domain, "spf": spf_result}
        rows[key]["count"] += 1
    return list(rows.values())


def dmarc_report_xml(domain: str, policy: dict, rows: list[dict], begin: int, end: int,
                     report_id: str) -> bytes:
    """An aggregate report (RFC 7489 appendix C) of ``rows`` for ``domain``."""
    from xml.etree.ElementTree import Element, SubElement, tostring

    def add(parent, tag, text=None):
        element = SubElement(parent, tag)
        if text is not None:
            element.text = str(text)
        return element

    feedback = Element("feedback")
    metadata = add(feedback, "report_metadata")
    add(metadata, "org_name", REPORTER_DOMAIN)
    add(metadata, "email", REPORTER_ADDRESS)
    add(metadata, "report_id", report_id)
    dates = add(metadata, "date_range")
    add(dates, "begin", begin)
    add(dates, "end", end)
    published = add(feedback, "policy_published")
    add(published, "domain", domain)
    add(published, "adkim", policy.get("adkim", "r"))
    add(published, "aspf", policy.get("aspf", "r"))
    add(published, "p", policy.get("p", "none"))
    add(published, "sp", policy.get("sp", policy.get("p", "none")))
    add(published, "pct", policy.get("pct", "100"))
    for row in rows:
        record = add(feedback, "record")
        data = add(record, "row")
        add(data, "source_ip", row["source_ip"])
        add(data, "count", row["count"])
        evaluated = add(data, "policy_evaluated")
        passed = row["dkim_aligned"] or row["spf_aligned"]
        add(evaluated, "disposition", "none" if passed else policy.get("p", "none"))
        add(evaluated, "dkim", "pass" if row["dkim_aligned"] else "fail")
        add(evaluated, "spf", "pass" if row["spf_aligned"] else "fail")
        identifiers = add(record, "identifiers")
        add(identifiers, "header_from", row["header_from"])
        results = add(record, "auth_results")
        for d, selector, result in row["dkim"]:
            dkim = add(results, "dkim")
            add(dkim, "domain", d)
            add(dkim, "selector", selector)
            add(dkim, "result", result)
        spf = add(results, "spf")
        add(spf, "domain", row["spf_domain"])
        add(spf, "result", row["spf"])
    return b'<?xml version="1.0" encoding="UTF-8" ?>\n' + tostring(feedback)


def tlsrpt_json(domain: str, mx: str, successful: int, failures: dict[str, int], begin: int,
                end: int, report_id: str) -> bytes:
    """A TLS report (RFC 8460 section 4) for ``domain``: no MTA-STS or DANE policy read, the
    sessions to its MX ``mx``."""
    def rfc3339(seconds):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))

    report = {
        "organization-name": REPORTER_DOMAIN,
        "date-range": {"start-datetime": rfc3339(begin), "end-datetime": rfc3339(end)},
        "contact-info": REPORTER_ADDRESS,
        "report-id": report_id,
        "policies": [{
            "policy": {"policy-type": "no-policy-found", "policy-domain": domain,
                       "mx-host": [mx]},
            "summary": {"total-successful-session-count": successful,
                        "total-failure-session-count": sum(failures.values())},
            "failure-details": [{"result-type": kind, "receiving-mx-hostname": mx,
                                 "failed-session-count": count}
                                for kind, count in failures.items()],
        }],
    }
    return json.dumps(report, indent=1).encode()


def tls_failure_type(error: Exception) -> str:
    """RFC 8460 4.3 result type of a failed STARTTLS."""
    text = str(error).lower()
    if "hostname mismatch" in text or "doesn't match" in text:
        return "certificate-host-mismatch"
    if "expired" in text:
        return "certificate-expired"
    if "self-signed" in text or "unable to get local issuer" in text:
        return "certificate-not-trusted"
    return "validation-failure"


def mx_of(domain: str) -> tuple[str, str]:
    """(name, address) of the domain's first MX."""
    answers = sorted(dns.resolver.resolve(domain, "MX"), key=lambda r: r.preference)
    name = answers[0].exchange.to_text().rstrip(".")
    return name, dns.resolver.resolve(name, "A")[0].address


def try_starttls(address: str, name: str, context: ssl.SSLContext, port: int) -> str | None:
    """One SMTP session with verified STARTTLS; None when it worked, else its failure type."""
    import smtplib

    try:
        with smtplib.SMTP(address, port, local_hostname=REPORTER_HOSTNAME, timeout=30) as client:
            client._host = name  # verify the certificate for the MX name
            client.ehlo()
            if not client.has_extn("starttls"):
                return "starttls-not-supported"
            client.starttls(context=context)
            client.ehlo()
    except ssl.SSLError as error:
        return tls_failure_type(error)
    return None


def report_message(to: list[str], domain: str, report_id: str, payload: bytes, filename: str,
                   tls: bool) -> email.message.EmailMessage:
    message = email.message.EmailMessage()
    message["From"] = REPORTER_ADDRESS
    message["To"] = ", ".join(to)
    message["Subject"] = (f"Report Domain: {domain} Submitter: {REPORTER_DOMAIN} "
                          f"Report-ID: <{report_id}>")
    message["Date"] = email.utils.formatdate()
    message["Message-ID"] = email.utils.make_msgid(domain=REPORTER_DOMAIN)
    if tls:
        message["TLS-Report-Domain"] = domain
        message["TLS-Report-Submitter"] = REPORTER_DOMAIN
    message.set_content(f"{'TLS' if tls else 'DMARC aggregate'} report for {domain} from the "
                        "mailhost lab receiver.\n")
    maintype, subtype = ("application", "tlsrpt+gzip") if tls else ("application", "zip")
    message.add_attachment(payload, maintype=maintype, subtype=subtype, filename=filename)
    return message


def send_reports(store: str | Path, ca_file: str | None = None, since: float = 0,
                 port: int = 25) -> list[dict]:
    """Send the DMARC and TLS reports of every message stored since ``since`` (Unix time) to
    the rua addresses the sending domains publish; returns what was sent (to, kind, domain)."""
    import gzip
    import io
    import smtplib
    import zipfile

    messages = [m for m in list_messages(store) if m.meta["received_at"] >= since]
    by_domain: dict[str, list[ReceivedMessage]] = {}
    for item in messages:
        if item.meta.get("from_domain"):
            by_domain.setdefault(item.meta["from_domain"], []).append(item)
    begin = int(min((m.meta["received_at"] for m in messages), default=time.time()))
    end = int(time.time())
    context = ssl.create_default_context(cafile=ca_file)
    unverified = ssl.create_default_context()  # the reports still go when TLS-RPT reports
    unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE  # a failure
    sent = []
    for domain, items in sorted(by_domain.items()):
        outgoing = []
        policy = txt_tags(f"_dmarc.{domain}", "v=DMARC1")
        if policy and mailto_addresses(policy.get("rua", "")):
            report_id = uuid.uuid4().hex
            xml = dmarc_report_xml(domain, policy, dmarc_rows(items), begin, end, report_id)
            archive = io.BytesIO()
            name = f"{REPORTER_DOMAIN}!{domain}!{begin}!{end}"
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
                zipped.writestr(f"{name}.xml", xml)
            outgoing.append(("dmarc", mailto_addresses(policy["rua"]), report_id,
                             archive.getvalue(), f"{name}.zip"))
        tlsrpt = txt_tags(f"_smtp._tls.{domain}", "v=TLSRPTv1")
        wants_tls_report = bool(tlsrpt and mailto_addresses(tlsrpt.get("rua", "")))
        if not outgoing and not wants_tls_report:
            continue  # the domain asks for no report (e.g. a forwarded message's sender)
        mx_name, mx_address = mx_of(domain)
        failure = try_starttls(mx_address, mx_name, context, port)
        if wants_tls_report:
            report_id = uuid.uuid4().hex
            document = tlsrpt_json(domain, mx_name, 0 if failure else 1,
                                   {failure: 1} if failure else {}, begin, end, report_id)
            outgoing.append(("tls", mailto_addresses(tlsrpt["rua"]), report_id,
                             gzip.compress(document),
                             f"{REPORTER_DOMAIN}!{domain}!{begin}!{end}!{report_id}.json.gz"))
        for kind, to, report_id, payload, filename in outgoing:
            message = report_message(to, domain, report_id, payload, filename, kind == "tls")
            with smtplib.SMTP(mx_address, port, local_hostname=REPORTER_HOSTNAME,
                              timeout=30) as client:
                client._host = mx_name
                client.ehlo()
                if client.has_extn("starttls"):
                    client.starttls(context=context if failure is None else unverified)
                    client.ehlo()
                client.send_message(message, from_addr=REPORTER_ADDRESS, to_addrs=to)
            sent.append({"kind": kind, "domain": domain, "to": to, "report_id": report_id})
            print(f"receiver: {kind} report for {domain} sent to {to}", flush=True)
    return sent


def send_reports_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="lab.receiver send-reports",
                                     description=send_reports.__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="the receiver's message folder")
    parser.add_argument("--dns", required=True, help="the only DNS server to ask")
    parser.add_argument("--dns-port", type=int, default=53)
    parser.add_argument("--ca-file", help="CAs a mail host's certificate must lead to")
    parser.add_argument("--since", type=float, default=0, help="only messages since (Unix time)")
    parser.add_argument("--port", type=int, default=25)
    args = parser.parse_args(argv)
    use_lab_dns(args.dns, args.dns_port)
    print(json.dumps(send_reports(args.store, args.ca_file, args.since, args.port)))


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
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["send-reports"]:
        return send_reports_main(argv[1:])
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
