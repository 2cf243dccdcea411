"""The reports parsed: DMARC aggregate (RFC 7489 appendix C, XML) and TLS-RPT (RFC 8460,
JSON), as files (zip, gzip or plain) attached to the report messages."""

from __future__ import annotations

import datetime
import email
import email.policy
import gzip
import io
import ipaddress
import json
import xml.etree.ElementTree as ElementTree
import zipfile
import zlib
from dataclasses import dataclass

REPORT_TYPES = frozenset({"application/zip", "application/gzip", "application/x-gzip",
                          "text/xml", "application/xml", "application/tlsrpt+json",
                          "application/tlsrpt+gzip", "application/json",
                          "application/x-zip-compressed"})
REPORT_SUFFIXES = (".zip", ".gz", ".xml", ".json")


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
