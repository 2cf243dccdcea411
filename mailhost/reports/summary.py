"""The reports summarized per domain: each sending source and its pass rates, TLS sessions,
and whether raising ``dmarc_policy`` one step is safe (the ladder); the table printed."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from mailhost.reports.parse import DmarcReport, DmarcRow, TlsReport, Unparsed
from mailhost.zones.notices import LADDER

LADDER_DAYS = 14  # the ladder looks at this many days of reports, whatever --days says
THIS_HOST, UNKNOWN = "this host", "unknown"


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
