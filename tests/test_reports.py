"""DMARC aggregate and TLS-RPT reports: the messages the lab receiver writes, parsed back
(zipped, gzipped, plain, and broken ones listed), summed up per source, the DMARC ladder's
verdict, and the deploy's warning from the cached summary."""

from __future__ import annotations

import datetime
import gzip
import io
import json
import zipfile

import pytest
from sample import sample_settings

from lab.receiver import dmarc_report_xml, report_message, tlsrpt_json
from mailhost.cli.reports import main
from mailhost.reports.fetch import report_mailboxes
from mailhost.reports.parse import (
    DmarcReport,
    ReportError,
    TlsReport,
    parse_document,
    parse_message,
)
from mailhost.reports.summary import THIS_HOST, UNKNOWN, Origins, render_table, summarize
from mailhost.zones.notices import raised_policy_notices, summary_path

NOW = datetime.datetime(2026, 11, 25, 12, tzinfo=datetime.UTC)
DAY = 86400
HOST4, HOST6, NEWSLETTER, FORGER = "198.51.100.10", "2001:db8::10", "198.51.100.77", "10.9.8.7"
ORIGINS = Origins(frozenset({HOST4, HOST6}), {"spf.newsletter.example": ["198.51.100.64/26"]})


def row(ip, count, dkim=True, spf=True, header_from="example.test"):
    return {"source_ip": ip, "count": count, "header_from": header_from, "dkim_aligned": dkim,
            "spf_aligned": spf, "dkim": (("example.test", "mail", "pass" if dkim else "fail"),),
            "spf_domain": "example.test", "spf": "pass" if spf else "fail"}


def dmarc_message(rows, days_ago=1, policy="none", report_id="r1", packing="zip"):
    end = int(NOW.timestamp()) - days_ago * DAY
    xml = dmarc_report_xml("example.test", {"p": policy}, rows, end - DAY, end, report_id)
    if packing == "zip":
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr("report.xml", xml)
        payload, name = archive.getvalue(), "report.zip"
    elif packing == "gzip":
        payload, name = gzip.compress(xml), "report.xml.gz"
    else:
        payload, name = xml, "report.xml"
    message = report_message(["dmarc@example.test"], "example.test", report_id, payload, name,
                             tls=False)
    return message.as_bytes()


def tls_message(successful=3, failures=None, report_id="t1"):
    end = int(NOW.timestamp()) - DAY
    document = tlsrpt_json("example.test", "mail.example.test", successful, failures or {},
                           end - DAY, end, report_id)
    return report_message(["tlsrpt@example.test"], "example.test", report_id,
                          gzip.compress(document), "r.json.gz", tls=True).as_bytes()


def parsed(*raws):
    reports, unparsed = [], []
    for raw in raws:
        found, failed = parse_message(raw, "dmarc@example.test/INBOX")
        reports += found
        unparsed += failed
    return reports, unparsed


@pytest.mark.parametrize("packing", ["zip", "gzip", "plain"])
def test_an_aggregate_report_is_read_zipped_gzipped_or_plain(packing):
    (report,), unparsed = parsed(dmarc_message([row(HOST4, 7), row(FORGER, 2, False, False)],
                                               packing=packing))
    assert unparsed == []
    assert isinstance(report, DmarcReport)
    assert (report.org, report.domain, report.policy) == ("example.net", "example.test", "none")
    assert [(r.source_ip, r.count, r.dkim_aligned, r.spf_aligned) for r in report.rows] == [
        (HOST4, 7, True, True), (FORGER, 2, False, False)]


def test_a_tls_report_counts_sessions_and_failures_by_type():
    (report,), _ = parsed(tls_message(5, {"certificate-expired": 2, "starttls-not-supported": 1}))
    assert isinstance(report, TlsReport)
    (policy,) = report.policies
    assert (policy.policy_domain, policy.successful, policy.failed) == ("example.test", 5, 3)
    assert policy.failures == {"certificate-expired": 2, "starttls-not-supported": 1}


@pytest.mark.parametrize(("payload", "error"), [
    (b"PK\x03\x04 not really a zip", "damaged zip"),
    (b"\x1f\x8b\x08 cut short", "damaged gzip"),
    (b"<feedback><report_metadata></feedback>", "not XML"),
    (b"<html><body>hello</body></html>", "expected <feedback>"),
    (b"<feedback><report_metadata><org_name>x</org_name></report_metadata></feedback>",
     "no <report_metadata/report_id>"),
    (b'{"organization-name": "x"}', "missing or malformed field"),
    (b"just text", "neither a DMARC report"),
])
def test_a_broken_report_is_an_error_saying_why(payload, error):
    with pytest.raises(ReportError, match=error.replace("<", ".").replace(">", ".")):
        parse_document(payload)


def test_a_broken_report_is_listed_not_dropped_and_a_normal_message_is_no_report():
    broken = report_message(["dmarc@example.test"], "example.test", "bad", b"PK\x03\x04xx",
                            "bad.zip", tls=False).as_bytes()
    normal = b"From: bob@example.test\r\nSubject: lunch\r\n\r\nat noon?\r\n"
    reports, unparsed = parsed(dmarc_message([row(HOST4, 3)]), broken, normal)
    assert len(reports) == 1
    assert [(u.mailbox, u.error[:12]) for u in unparsed] == [
        ("dmarc@example.test/INBOX", "damaged zip ")]
    assert "Report-ID: <bad>" in unparsed[0].subject
    summary = summarize(reports, unparsed, ["example.test"], ORIGINS, NOW, 14, 5)
    assert summary["unparsed"][0]["error"].startswith("damaged zip")
    assert "! unparsed report in dmarc@example.test/INBOX" in render_table(summary)


def summary_of(*raws, days=14, min_messages=5, policy="none"):
    reports, unparsed = parsed(*raws)
    return summarize(reports, unparsed, ["example.test"], ORIGINS, NOW, days, min_messages,
                     ptr=lambda ip: "mail.example.test" if ip == HOST4 else "",
                     policies={"example.test": policy})


def test_sources_are_summed_over_reports_and_named():
    first = dmarc_message([row(HOST4, 10), row(NEWSLETTER, 4, dkim=False)], report_id="a")
    summary = summary_of(
        first,
        dmarc_message([row(HOST4, 10, dkim=False), row(FORGER, 3, False, False)], 2,
                      report_id="b"),
        first,  # the same report in two mailboxes: counted once
        tls_message(4, {"certificate-host-mismatch": 1}))
    entry = summary["domains"]["example.test"]
    assert entry["dmarc"]["reports"] == 2 and entry["dmarc"]["messages"] == 27
    sources = {s["ip"]: s for s in entry["dmarc"]["sources"]}
    assert sources[HOST4]["kind"] == THIS_HOST and sources[HOST4]["ptr"] == "mail.example.test"
    assert sources[HOST4]["rates"] == {"spf_pass": 1.0, "dkim_pass": 0.5, "spf_aligned": 1.0,
                                       "dkim_aligned": 0.5, "dmarc_pass": 1.0}
    assert sources[NEWSLETTER]["kind"] == "spf_include spf.newsletter.example"
    assert sources[FORGER]["kind"] == UNKNOWN and sources[FORGER]["rates"]["dmarc_pass"] == 0
    assert entry["tls"] == {"reports": 1, "successful_sessions": 4, "failed_sessions": 1,
                            "failures": {"certificate-host-mismatch": 1}}
    table = render_table(summary)
    assert "198.51.100.10" in table and "certificate-host-mismatch 1" in table
    json.dumps(summary)  # what --json prints


def test_the_period_leaves_out_older_reports():
    summary = summary_of(dmarc_message([row(HOST4, 3)], days_ago=1, report_id="new"),
                         dmarc_message([row(FORGER, 9)], days_ago=20, report_id="old"), days=7)
    entry = summary["domains"]["example.test"]
    assert [s["ip"] for s in entry["dmarc"]["sources"]] == [HOST4]
    assert entry["period"]["end"].startswith("2026-11-24")


@pytest.mark.parametrize(("rows", "policy", "safe", "next_step"), [
    ([row(HOST4, 50)], "none", True, "quarantine"),
    ([row(HOST4, 50)], "quarantine", True, "reject"),
    ([row(HOST4, 50)], "reject", False, None),  # the last step
    ([row(HOST4, 50), row(FORGER, 5, False, False)], "none", True, "quarantine"),  # at most N
    ([row(HOST4, 50), row(FORGER, 6, False, False)], "none", False, "quarantine"),
    ([row(HOST4, 49), row(HOST4, 1, False, False)], "none", False, "quarantine"),
    ([row(NEWSLETTER, 9, dkim=False)], "none", True, "quarantine"),  # SPF aligned is enough
    ([], "none", False, "quarantine"),  # no reports: no verdict
])
def test_the_ladder_is_safe_only_when_every_busy_source_aligned(rows, policy, safe, next_step):
    raws = [dmarc_message(rows)] if rows else []
    step = summary_of(*raws, policy=policy)["domains"]["example.test"]["ladder"]
    assert (step["safe"], step["next"]) == (safe, next_step), step["reason"]


def test_the_ladder_looks_at_fourteen_days():
    old_failure = dmarc_message([row(HOST4, 9, False, False)], days_ago=15, report_id="old")
    step = summary_of(dmarc_message([row(HOST4, 9)]), old_failure)["domains"]["example.test"]
    assert step["ladder"]["safe"]


def test_the_deploy_warns_when_the_policy_is_raised_over_unaligned_own_mail(tmp_path):
    settings = sample_settings(dmarc_policy="reject", secrets_dir=str(tmp_path))
    assert raised_policy_notices(settings) == {}  # no reports fetched yet: nothing to say
    summary = summary_of(dmarc_message([row(HOST4, 40, dkim=False, spf=False),
                                        row(FORGER, 50, False, False)], policy="quarantine"),
                         policy="quarantine")
    summary_path(settings).write_text(json.dumps(summary))
    notice = raised_policy_notices(settings)["example.test"]
    assert "raised from quarantine to reject" in notice and HOST4 in notice
    assert FORGER not in notice  # a forger's mail is what reject is for
    # not raised (the published policy already), or the own mail aligned: no warning
    same = sample_settings(dmarc_policy="quarantine", secrets_dir=str(tmp_path))
    assert raised_policy_notices(same) == {}
    summary_path(settings).write_text(json.dumps(summary_of(
        dmarc_message([row(HOST4, 40), row(FORGER, 50, False, False)], policy="quarantine"),
        policy="quarantine")))
    assert raised_policy_notices(settings) == {}


def test_report_mailboxes_follow_aliases_and_name_an_address_that_reaches_nobody():
    settings = sample_settings(mail_users=["alice@example.test"],
                               mail_aliases={"dmarc@example.test": ["alice@example.test"]},
                               dmarc_rua=["mailto:dmarc@example.test",
                                          "mailto:rua@reports.example.net"])
    users, problems = report_mailboxes(settings)
    assert users == {"alice@example.test": ["dmarc@example.test"]}
    assert problems == ["tlsrpt_rua: tlsrpt@example.test is neither a mail user nor an alias of "
                        "one on mail.example.test: its reports are refused; add it to "
                        "mail_users or mail_aliases"]


@pytest.mark.parametrize(("args", "line"), [
    (["--days", "0"], "--days 0: expected a whole number of days, 1 or more"),
    (["--min-messages", "-1"], "--min-messages -1: expected 0 or more"),
])
def test_bad_options_are_one_line(args, line, capsys):
    assert main(["inventory/lab.py", *args]) == 2
    assert capsys.readouterr().err.strip() == f"scripts/reports: {line}"


def test_the_plan_shows_the_raised_policy_as_a_notice(knot_world, tmp_path):
    """The deploy's plan (here against a real Knot) carries the warning as a ! NOTICE line;
    it writes nothing and stops nothing."""
    from mailhost.keys.dkim import generate_key, public_value
    from mailhost.zones.sync import ZoneSync, records_by_zone

    settings = sample_settings(dmarc_policy="reject", dane="off",  # no TLSA notice
                               secrets_dir=str(tmp_path))
    summary_path(settings).write_text(json.dumps(summary_of(
        dmarc_message([row(HOST4, 40, dkim=False, spf=False)], policy="none"))))
    key = public_value(generate_key("rsa", 2048))
    (zone,) = records_by_zone({"mail": settings}, lambda host, path: key)
    lines = ZoneSync(zone, knot_world.provider()).plan().lines()
    notices = [line for line in lines if line.startswith("  ! NOTICE")]
    assert notices == [f"  ! NOTICE   dmarc_policy of example.test raised from none to reject "
                       f"while the DMARC reports (scripts/reports, 2026-11-25) show unaligned "
                       f"mail from legitimate sources: {HOST4} (this host, 0% aligned); their "
                       "mail would be rejected: fix their SPF/DKIM first, or keep p=none"]
