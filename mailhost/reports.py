"""DMARC aggregate reports (RFC 7489 appendix C) and TLS-RPT reports (RFC 8460), read for you.

``scripts/reports INVENTORY [--json] [--days N] [--min-messages N]`` logs in over IMAPS (993,
the host's certificate verified) as each mail user that a ``dmarc_rua`` or ``tlsrpt_rua``
address of a mail domain reaches (the address itself, or an alias of it), with that user's
password from the secrets file, reads the report messages of the last N days (INBOX and
Junk, read-only), parses them and prints per domain: the period, each sending source (IP, PTR,
whether it is this host, an ``spf_include`` or unknown), message counts, SPF/DKIM/alignment
pass rates, TLS sessions and failures by type, and whether raising ``dmarc_policy`` to the
next step is safe. Reports that fail to parse are listed, never dropped.

Parsing is our own, on the standard library (zipfile, gzip, xml.etree, json): the two formats
are small and fixed by their RFCs, and parsedmarc (11.x) brings about a dozen packages (lxml,
httpx, mailsuite, maxminddb, publicsuffixlist...) and reverse-DNS lookups of its own for the
same result.

The summary is also written to ``<secrets_dir>/reports-summary.json`` on the controller, where
the deploy reads it to warn when ``dmarc_policy`` is raised while a legitimate source (this
host, an ``spf_include``) still sends unaligned mail.
"""

from __future__ import annotations

import argparse
import datetime
import email
import email.policy
import gzip
import io
import ipaddress
import json
import sys
import xml.etree.ElementTree as ElementTree
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mailhost.dns.notices import LADDER, summary_path
from mailhost.settings import Settings

LADDER_DAYS = 14  # the ladder looks at this many days of reports, whatever --days says
REPORT_TYPES = {"application/zip", "application/gzip", "application/x-gzip", "text/xml",
                "application/xml", "application/tlsrpt+json", "application/tlsrpt+gzip",
                "application/json", "application/x-zip-compressed"}
REPORT_SUFFIXES = (".zip", ".gz", ".xml", ".json")
THIS_HOST, UNKNOWN = "this host", "unknown"


class ReportError(ValueError):
    """A report that cannot be read; the message says why."""


# --- parsed reports ---


@dataclass(frozen=True)
class DmarcRow:
    """One <record>: a source and its verdicts for ``count`` messages."""

    source_ip: str
    count: int
    header_from: str
    dkim_aligned: bool  # policy_evaluated dkim = pass
    spf_aligned: bool  # policy_evaluated spf = pass
    dkim_pass: bool  # any auth_results dkim = pass
    spf_pass: bool  # auth_results spf = pass


@dataclass(frozen=True)
class Report:
    """What every report says about itself: who sent it, its id, the period it covers."""

    org: str
    report_id: str
    begin: datetime.datetime
    end: datetime.datetime


@dataclass(frozen=True)
class DmarcReport(Report):
    domain: str
    policy: str  # policy_published p
    rows: tuple[DmarcRow, ...]


@dataclass(frozen=True)
class TlsPolicyResult:
    policy_domain: str
    policy_type: str
    successful: int
    failed: int
    failures: dict[str, int]  # result-type -> failed-session-count


@dataclass(frozen=True)
class TlsReport(Report):
    policies: tuple[TlsPolicyResult, ...]


@dataclass(frozen=True)
class Unparsed:
    """A message that looked like a report but could not be read."""

    mailbox: str
    subject: str
    error: str


def _text(element, path: str, required: bool = True) -> str:
    found = element.find(path)
    if found is None or found.text is None:
        if required:
            raise ReportError(f"DMARC report: no <{path}>")
        return ""
    return found.text.strip()


def _time(seconds: str, what: str) -> datetime.datetime:
    try:
        return datetime.datetime.fromtimestamp(int(seconds), datetime.UTC)
    except (ValueError, OverflowError, OSError):
        raise ReportError(f"{what}: {seconds!r} is not a Unix time") from None


def parse_dmarc_xml(data: bytes) -> DmarcReport:
    """An aggregate report's XML (RFC 7489 appendix C); ReportError when it is not one."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        raise ReportError(f"DMARC report: not XML ({error})") from None
    if root.tag.rpartition("}")[2] != "feedback":
        raise ReportError(f"DMARC report: root element <{root.tag}>, expected <feedback>")
    for element in root.iter():  # the 2.0 drafts add a namespace: read the local names
        element.tag = element.tag.rpartition("}")[2]
    rows = []
    for record in root.findall("record"):
        try:
            count = int(_text(record, "row/count"))
        except ValueError:
            raise ReportError("DMARC report: <count> is not a number") from None
        source = _text(record, "row/source_ip")
        try:
            ipaddress.ip_address(source)
        except ValueError:
            raise ReportError(f"DMARC report: source_ip {source!r} is not an address") from None
        rows.append(DmarcRow(
            source_ip=source, count=count,
            header_from=_text(record, "identifiers/header_from").lower(),
            dkim_aligned=_text(record, "row/policy_evaluated/dkim") == "pass",
            spf_aligned=_text(record, "row/policy_evaluated/spf") == "pass",
            dkim_pass=any(_text(d, "result", False) == "pass"
                          for d in record.findall("auth_results/dkim")),
            spf_pass=any(_text(s, "result", False) == "pass"
                         for s in record.findall("auth_results/spf")),
        ))
    return DmarcReport(
        org=_text(root, "report_metadata/org_name"),
        report_id=_text(root, "report_metadata/report_id"),
        domain=_text(root, "policy_published/domain").lower(),
        begin=_time(_text(root, "report_metadata/date_range/begin"), "DMARC report begin"),
        end=_time(_text(root, "report_metadata/date_range/end"), "DMARC report end"),
        policy=_text(root, "policy_published/p"),
        rows=tuple(rows),
    )


def _iso(value, what: str) -> datetime.datetime:
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(f"TLS report: {what} {value!r} is not an RFC 3339 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def parse_tlsrpt_json(data: bytes) -> TlsReport:
    """A TLS-RPT report's JSON (RFC 8460 section 4); ReportError when it is not one."""
    try:
        report = json.loads(data)
        dates = report["date-range"]
        policies = []
        for entry in report["policies"]:
            policy, summary = entry["policy"], entry["summary"]
            failures: dict[str, int] = {}
            for detail in entry.get("failure-details", []):
                kind = detail["result-type"]
                failures[kind] = failures.get(kind, 0) + int(detail["failed-session-count"])
            policies.append(TlsPolicyResult(
                policy_domain=str(policy["policy-domain"]).lower().rstrip("."),
                policy_type=str(policy["policy-type"]),
                successful=int(summary["total-successful-session-count"]),
                failed=int(summary["total-failure-session-count"]),
                failures=failures))
        return TlsReport(org=str(report["organization-name"]), report_id=str(report["report-id"]),
                         begin=_iso(dates["start-datetime"], "start-datetime"),
                         end=_iso(dates["end-datetime"], "end-datetime"),
                         policies=tuple(policies))
    except ValueError as error:
        if isinstance(error, ReportError):
            raise
        raise ReportError(f"TLS report: not JSON or a bad number ({error})") from None
    except (KeyError, TypeError) as error:
        raise ReportError(f"TLS report: missing or malformed field {error}") from None


def unpack(data: bytes) -> bytes:
    """The document inside a zip (its first file), a gzip, or as it is."""
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = [n for n in archive.namelist() if not n.endswith("/")]
                if not names:
                    raise ReportError("zip archive with no file")
                return archive.read(names[0])
        except zipfile.BadZipFile as error:
            raise ReportError(f"damaged zip archive ({error})") from None
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise ReportError(f"damaged gzip data ({error})") from None
    return data


def parse_document(data: bytes) -> DmarcReport | TlsReport:
    """A report from an attachment's bytes, compressed or not: XML is DMARC, JSON is TLS-RPT."""
    document = unpack(data).lstrip()
    if document.startswith(b"{"):
        return parse_tlsrpt_json(document)
    if document.startswith(b"<"):
        return parse_dmarc_xml(document)
    raise ReportError("neither a DMARC report (XML) nor a TLS report (JSON)")


def report_parts(message: email.message.EmailMessage) -> list:
    """The parts of a message that carry a report (by content type or file name)."""
    found = []
    for part in message.walk():
        if part.is_multipart():
            continue
        name = (part.get_filename() or "").lower()
        if part.get_content_type() in REPORT_TYPES or name.endswith(REPORT_SUFFIXES):
            found.append(part)
    return found


def parse_message(raw: bytes, mailbox: str) -> tuple[list[DmarcReport | TlsReport],
                                                     list[Unparsed]]:
    """The reports of one message; a message with no report part is not a report (nothing),
    a report part that cannot be read is an Unparsed."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    subject = str(message.get("Subject", ""))
    reports, unparsed = [], []
    for part in report_parts(message):
        try:
            reports.append(parse_document(part.get_payload(decode=True) or b""))
        except ReportError as error:
            unparsed.append(Unparsed(mailbox, subject, str(error)))
    return reports, unparsed


# --- sources and the summary ---


@dataclass
class Source:
    """One sending address in a domain's reports."""

    ip: str
    kind: str  # THIS_HOST, "spf_include NAME" or UNKNOWN
    ptr: str = ""
    messages: int = 0
    spf_pass: int = 0
    dkim_pass: int = 0
    spf_aligned: int = 0
    dkim_aligned: int = 0
    dmarc_pass: int = 0  # aligned by SPF or DKIM

    @property
    def legitimate(self) -> bool:
        return self.kind != UNKNOWN

    def add(self, row: DmarcRow) -> None:
        self.messages += row.count
        self.spf_pass += row.count * row.spf_pass
        self.dkim_pass += row.count * row.dkim_pass
        self.spf_aligned += row.count * row.spf_aligned
        self.dkim_aligned += row.count * row.dkim_aligned
        self.dmarc_pass += row.count * (row.spf_aligned or row.dkim_aligned)

    def rates(self) -> dict[str, float]:
        return {name: round(getattr(self, name) / self.messages, 3) if self.messages else 0.0
                for name in ("spf_pass", "dkim_pass", "spf_aligned", "dkim_aligned",
                             "dmarc_pass")}

    def as_dict(self) -> dict:
        return {"ip": self.ip, "ptr": self.ptr, "kind": self.kind, "messages": self.messages,
                "rates": self.rates()}


@dataclass(frozen=True)
class Origins:
    """Who an address is: this host's addresses, and each spf_include's networks."""

    host_addresses: frozenset[str]
    includes: dict[str, list[str]] = field(default_factory=dict)  # name -> networks

    def kind(self, ip: str) -> str:
        address = ipaddress.ip_address(ip)
        if any(address == ipaddress.ip_address(a) for a in self.host_addresses):
            return THIS_HOST
        for name, networks in self.includes.items():
            if any(address in ipaddress.ip_network(n, strict=False) for n in networks
                   if ipaddress.ip_network(n, strict=False).version == address.version):
                return f"spf_include {name}"
        return UNKNOWN


def ladder(policy: str, sources: list[Source], min_messages: int, reports: int) -> dict:
    """Whether raising the DMARC policy one step is safe: there are reports, and every source
    with more than ``min_messages`` messages passed DMARC (SPF or DKIM aligned) every time."""
    step = LADDER.index(policy) if policy in LADDER else 0
    following = LADDER[step + 1] if step + 1 < len(LADDER) else None
    blocking = [s for s in sources if s.messages > min_messages and s.dmarc_pass < s.messages]
    if following is None:
        safe, reason = False, "p=reject is the last step"
    elif reports == 0:
        safe, reason = False, f"no DMARC report in the last {LADDER_DAYS} days: wait for some"
    elif blocking:
        safe = False
        reason = ("unaligned sources with more than "
                  f"{min_messages} messages: " + ", ".join(
                      f"{s.ip} ({s.kind}, {s.messages - s.dmarc_pass} of {s.messages} unaligned)"
                      for s in blocking)
                  + "; fix SPF/DKIM of your own sources (this host, spf_include) first; an "
                  "unknown source is a forger or a service to add to spf_include")
    else:
        safe, reason = True, (f"every source with more than {min_messages} messages in "
                              f"{LADDER_DAYS} days passed DMARC")
    return {"policy": policy, "next": following, "safe": safe, "reason": reason,
            "min_messages": min_messages,
            "unaligned_legitimate": [s.as_dict() for s in blocking if s.legitimate]}


def summarize(reports: list[DmarcReport | TlsReport], unparsed: list[Unparsed], domains:
              list[str], origins: Origins, now: datetime.datetime, days: int,
              min_messages: int, ptr: Callable[[str], str] = lambda ip: "",
              policies: dict[str, str] | None = None) -> dict:
    """Everything the command prints, per domain, as plain data (what --json shows).

    + domains: the mail domains to report on (reports for other domains are left out)
    + policies: each domain's dmarc_policy now (the ladder starts there; default: the
      policy the reports saw published)
    """
    since = now - datetime.timedelta(days=days)
    ladder_since = now - datetime.timedelta(days=LADDER_DAYS)
    unique = {(type(r).__name__, r.org, r.report_id): r for r in reports}  # one per copy
    result = {"generated": now.isoformat(timespec="seconds"), "days": days, "domains": {},
              "unparsed": [asdict(u) for u in unparsed]}
    for domain in domains:
        dmarc = sorted((r for r in unique.values() if isinstance(r, DmarcReport)
                        and r.domain == domain and r.end >= since), key=lambda r: r.begin)
        tls = [r for r in unique.values() if isinstance(r, TlsReport) and r.end >= since
               and any(p.policy_domain == domain for p in r.policies)]
        sources = _sources(dmarc, origins, ptr)
        recent = [r for r in dmarc if r.end >= ladder_since]
        published = dmarc[-1].policy if dmarc else ""
        policy = (policies or {}).get(domain) or published or "none"
        tls_entry = {"reports": len(tls), "successful_sessions": 0, "failed_sessions": 0,
                     "failures": {}}
        for report in tls:
            for entry in (p for p in report.policies if p.policy_domain == domain):
                tls_entry["successful_sessions"] += entry.successful
                tls_entry["failed_sessions"] += entry.failed
                for kind, count in entry.failures.items():
                    tls_entry["failures"][kind] = tls_entry["failures"].get(kind, 0) + count
        periods = [*dmarc, *tls]
        result["domains"][domain] = {
            "period": {"begin": min(r.begin for r in periods).isoformat(),
                       "end": max(r.end for r in periods).isoformat()} if periods else None,
            "dmarc": {"reports": len(dmarc), "published_policy": published,
                      "organizations": sorted({r.org for r in dmarc}),
                      "messages": sum(s.messages for s in sources),
                      "sources": [s.as_dict() for s in sources]},
            "tls": tls_entry,
            "ladder": ladder(policy, _sources(recent, origins, lambda ip: ""), min_messages,
                             len(recent)),
        }
    return result


def _sources(reports: list[DmarcReport], origins: Origins, ptr) -> list[Source]:
    by_ip: dict[str, Source] = {}
    for report in reports:
        for row in report.rows:
            source = by_ip.get(row.source_ip)
            if source is None:
                source = by_ip[row.source_ip] = Source(row.source_ip, origins.kind(row.source_ip))
            source.add(row)
    for source in by_ip.values():
        source.ptr = ptr(source.ip)
    return sorted(by_ip.values(), key=lambda s: (-s.messages, s.ip))


def render_table(summary: dict) -> str:
    """The summary for people: a block per domain."""
    lines = []
    for domain, entry in summary["domains"].items():
        period = entry["period"]
        span = f"{period['begin'][:10]} to {period['end'][:10]}" if period else "no reports"
        dmarc, tls, step = entry["dmarc"], entry["tls"], entry["ladder"]
        published = dmarc["published_policy"] or "-"
        organizations = ", ".join(dmarc["organizations"]) or "-"
        lines.append(f"{domain}: {span} (last {summary['days']} days), {dmarc['reports']} "
                     f"DMARC reports ({organizations}), {dmarc['messages']} messages, "
                     f"published p={published}")
        who = max([20, *(len(source["kind"]) for source in dmarc["sources"])])
        if dmarc["sources"]:
            lines.append(f"  {'source':<28} {'PTR':<24} {'who':<{who}} {'msgs':>6} "
                         f"{'spf':>5} {'dkim':>5} {'spf-al':>6} {'dkim-al':>7} {'dmarc':>6}")
        for source in dmarc["sources"]:
            rates = source["rates"]
            lines.append(
                f"  {source['ip']:<28} {source['ptr'] or '-':<24} {source['kind']:<{who}} "
                f"{source['messages']:>6} " + " ".join(
                    f"{rates[k]:>{w}.0%}" for k, w in [("spf_pass", 5), ("dkim_pass", 5),
                                                      ("spf_aligned", 6), ("dkim_aligned", 7),
                                                      ("dmarc_pass", 6)]))
        failures = ", ".join(f"{k} {v}" for k, v in sorted(tls["failures"].items())) or "none"
        lines.append(f"  TLS: {tls['reports']} reports, {tls['successful_sessions']} sessions "
                     f"succeeded, {tls['failed_sessions']} failed (by type: {failures})")
        verdict = "safe" if step["safe"] else "not yet"
        target = f"p={step['next']}" if step["next"] else "a next step"
        lines.append(f"  DMARC ladder p={step['policy']} -> {target}: {verdict}: "
                     f"{step['reason']}")
    for item in summary["unparsed"]:
        lines.append(f"! unparsed report in {item['mailbox']} ({item['subject']!r}): "
                     f"{item['error']}")
    for problem in summary.get("problems", []):
        lines.append(f"! {problem}")
    return "\n".join(lines)


# --- fetching over IMAP ---


def report_mailboxes(settings: Settings) -> tuple[dict[str, list[str]], list[str]]:
    """The mail users to read (user -> the report addresses that reach it), and a line for
    each report address of a mail domain that reaches no mail user of this host."""
    users: dict[str, list[str]] = {}
    problems = []
    uris = [("dmarc_rua", u) for u in settings.dmarc_rua] + [
        ("tlsrpt_rua", u) for u in settings.tlsrpt_rua if u.startswith("mailto:")]
    for field_name, uri in uris:
        address = uri.removeprefix("mailto:").split("!", 1)[0].lower()
        if address.rpartition("@")[2] not in settings.mail_domains:
            continue  # reports go elsewhere: not ours to read
        reached = _local_users(settings, address, set())
        if not reached:
            problems.append(f"{field_name}: {address} is neither a mail user nor an alias of "
                            f"one on {settings.mail_hostname}: its reports are refused; add "
                            "it to mail_users or mail_aliases")
        for user in reached:
            users.setdefault(user, [])
            if address not in users[user]:
                users[user].append(address)
    return users, problems


def _local_users(settings: Settings, address: str, seen: set[str]) -> list[str]:
    if address in seen:
        return []
    seen.add(address)
    if address in [u.lower() for u in settings.mail_users]:
        return [address]
    found = []
    for alias, targets in settings.mail_aliases.items():
        if alias.lower() == address:
            for target in targets:
                found += [u for u in _local_users(settings, target.lower(), seen)
                          if u not in found]
    return found


def fetch_messages(settings: Settings, user: str, password: str, since: datetime.date,
                   address: str) -> list[tuple[str, bytes]]:
    """(mailbox, raw message) of every message since ``since`` in INBOX and Junk of ``user``,
    read-only (nothing is marked seen)."""
    from mailhost.checks.imap import open_imaps
    from mailhost.checks.smtp import verified_context

    found = []
    client = open_imaps(settings, address, verified_context(settings))
    try:
        client.login(user, password)
        for folder in ("INBOX", "Junk"):
            status, _ = client.select(folder, readonly=True)
            if status != "OK":
                continue
            _, data = client.search(None, "SINCE", since.strftime("%d-%b-%Y"))
            for number in data[0].split():
                _, parts = client.fetch(number, "(BODY.PEEK[])")
                raw = next((p[1] for p in parts if isinstance(p, tuple)), None)
                if raw:
                    found.append((f"{user}/{folder}", raw))
    finally:
        try:
            client.logout()
        except OSError:
            pass
    return found


def spf_networks(name: str, resolver, depth: int = 0) -> list[str]:
    """The ip4:/ip6: networks of an SPF record and of its includes (at most 10 deep)."""
    import dns.exception

    if depth > 10:
        return []
    try:
        answers = resolver.resolve(name, "TXT")
    except dns.exception.DNSException:
        return []
    networks = []
    for answer in answers:
        text = b"".join(answer.strings).decode(errors="replace")
        if not text.lower().startswith("v=spf1"):
            continue
        for term in text.split()[1:]:
            term = term.lstrip("+")
            kind, _, value = term.partition(":")
            if kind.lower() in ("ip4", "ip6") and value:
                networks.append(value)
            elif kind.lower() == "include" and value:
                networks += spf_networks(value, resolver, depth + 1)
    return networks


def resolver_for(settings: Settings):
    import dns.resolver

    if settings.check_resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [settings.check_resolver]
    else:
        resolver = dns.resolver.Resolver()
    resolver.lifetime = 5
    return resolver


def ptr_of(resolver) -> Callable[[str], str]:
    import dns.exception
    import dns.reversename

    def look_up(ip: str) -> str:
        try:
            answer = resolver.resolve(dns.reversename.from_address(ip), "PTR")
            return answer[0].target.to_text().rstrip(".")
        except dns.exception.DNSException:
            return ""
    return look_up


def report_host(settings: Settings, secrets, days: int, min_messages: int,
                now: datetime.datetime) -> dict:
    """Fetch, parse and summarize the reports of one host's mail domains."""
    users, problems = report_mailboxes(settings)
    address = settings.ipv4 or settings.ipv6 or settings.mail_hostname
    reports, unparsed = [], []
    since = (now - datetime.timedelta(days=max(days, LADDER_DAYS))).date()
    for user in users:
        password = secrets.passwords.get(user)
        if password is None:
            problems.append(f"no password for {user} in the secrets file: its reports were "
                            "not read")
            continue
        try:
            messages = fetch_messages(settings, user, password.reveal(), since, str(address))
        except Exception as error:  # imaplib.IMAP4.error and TLS errors: one line
            problems.append(f"IMAP as {user} at {address}: {type(error).__name__}: "
                            f"{str(error)[:200]}")
            continue
        for mailbox, raw in messages:
            found, failed = parse_message(raw, mailbox)
            reports += found
            unparsed += failed
    resolver = resolver_for(settings)
    origins = Origins(frozenset(str(a) for a in (settings.ipv4, settings.ipv6) if a),
                      {name: spf_networks(name, resolver) for name in settings.spf_include})
    summary = summarize(reports, unparsed, list(settings.mail_domains), origins, now,
                        max(days, LADDER_DAYS), min_messages, ptr_of(resolver),
                        {d: settings.dmarc_policy for d in settings.mail_domains})
    if days < LADDER_DAYS:  # the table shows --days; the ladder was computed on 14
        shown = summarize(reports, unparsed, list(settings.mail_domains), origins, now, days,
                          min_messages, ptr_of(resolver),
                          {d: settings.dmarc_policy for d in settings.mail_domains})
        for domain, entry in shown["domains"].items():
            entry["ladder"] = summary["domains"][domain]["ladder"]
        summary = shown
    summary["problems"] = problems
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/reports", description=__doc__.splitlines()[0])
    parser.add_argument("inventory", help="a pyinfra inventory, e.g. inventory/prod.py")
    parser.add_argument("--json", action="store_true", help="one JSON object, by host")
    parser.add_argument("--days", type=int, default=LADDER_DAYS,
                        help=f"reports of the last N days (default {LADDER_DAYS})")
    parser.add_argument("--min-messages", type=int, default=5,
                        help="the ladder ignores sources with at most N messages (default 5)")
    args = parser.parse_args(argv)
    if args.days < 1:
        print(f"scripts/reports: --days {args.days}: expected a whole number of days, 1 or "
              "more", file=sys.stderr)
        return 2
    if args.min_messages < 0:
        print(f"scripts/reports: --min-messages {args.min_messages}: expected 0 or more",
              file=sys.stderr)
        return 2

    from pyinfra.api import Config, State
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.context import ctx_config, ctx_inventory, ctx_state
    from pyinfra_cli.inventory import make_inventory

    from mailhost.run import MailRun

    try:  # the inventory loaded as pyinfra loads it (group_data/ included), nothing connected
        if not Path(args.inventory).exists():
            raise PyinfraError(f"no inventory file {args.inventory}")
        state = State()
        state.cwd = str(Path.cwd())
        ctx_state.set(state)
        ctx_config.set(Config())
        inventory = make_inventory(args.inventory, cwd=state.cwd)
        ctx_inventory.set(inventory)
        run = MailRun.load(inventory)
    except PyinfraError as error:
        print(f"scripts/reports: {error}", file=sys.stderr)
        return 2
    now = datetime.datetime.now(datetime.UTC)
    results = {}
    for name, settings in run.settings.items():
        if not settings.mail_manage_host:
            continue
        results[name] = report_host(settings, run.secrets[name], args.days, args.min_messages,
                                    now)
        path = summary_path(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results[name], indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, summary in results.items():
            print(f"{name}:")
            print(render_table(summary))
    failed = any(r["problems"] for r in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
