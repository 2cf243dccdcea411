"""The notices a zone's plan prints beside its changes: what this tool saw and left alone.

A domain that left the settings (its records stay), MTA-STS records that "off" leaves behind,
and a DMARC policy raised over unaligned mail that the cached report summary shows (written by
scripts/reports, mailhost.reports).
"""

from __future__ import annotations

import json
from pathlib import Path

from mailhost.dns import mta_sts
from mailhost.dns.records import RecordSet, zone_of
from mailhost.keys.dkim import domains_with_keys
from mailhost.settings import Settings

LADDER = ("none", "quarantine", "reject")  # the DMARC policies, weakest first
SUMMARY_FILE = "reports-summary.json"  # scripts/reports' summary, in secrets_dir


def mta_sts_left_notices(off: tuple[tuple[str, tuple[str, ...]], ...],
                         found: list[RecordSet]) -> list[str]:
    """A line for each domain with MTA-STS "off" whose ``_mta-sts`` TXT still announces a
    policy served from its host (mta-sts.DOMAIN at the host's address): records set up by this
    tool, which "off" leaves as they are (not owned any more). RFC 8461 8.3: a policy is
    withdrawn safely by publishing mode "none" for its max_age before the records go."""
    by_key = {r.key: r for r in found}
    lines = []
    for domain, addresses in off:
        txt = by_key.get((mta_sts.record_name(domain), "TXT"))
        policy_host = mta_sts.policy_host(domain)
        pointed = {v for rtype in ("A", "AAAA")
                   for v in getattr(by_key.get((policy_host, rtype)), "values", ())}
        if txt is None or not any("v=STSv1" in v for v in txt.values) \
                or not pointed & set(addresses):
            continue
        lines.append(
            f"mta_sts_mode is off for {domain}, but {mta_sts.record_name(domain)} TXT and "
            f"{policy_host} still announce the policy its host served: left as they are; "
            "senders keep a cached policy up to its max_age (RFC 8461 8.3: the safe way off is "
            'mta_sts_mode "none" for mta_sts_max_age first), then delete both by hand')
    return lines


def left_domain_notices(hosts: dict[str, Settings]) -> dict[str, list[str]]:
    """By zone: a line for each domain that has a DKIM key on the controller (it was a mail
    domain) but is neither a mail domain nor a parked domain of any host any more. Its records
    are not ours to guess about: they are left as they are, and the plan says so."""
    listed = {d for s in hosts.values() for d in [*s.mail_domains, *s.parked_domains]}
    zones = {z for s in hosts.values() for z in s.zones}
    notices: dict[str, list[str]] = {}
    for settings in hosts.values():
        for domain in domains_with_keys(settings):
            zone = zone_of(domain, zones)
            if domain in listed or zone is None:
                continue
            notices.setdefault(zone, []).append(
                f"{domain} left mail_domains (its DKIM key is still in "
                f"{settings.secrets_dir}/dkim/{domain}): its MX, SPF, DKIM and DMARC records "
                f"are left as they are and still send its mail to {settings.mail_hostname}; "
                "add it to parked_domains to publish that it takes no mail, or delete those "
                "records and the key directory by hand")
            listed.add(domain)
    return notices


def summary_path(settings: Settings) -> Path:
    return Path(settings.secrets_dir) / SUMMARY_FILE


def raised_policy_notices(settings: Settings) -> dict[str, str]:
    """By domain: a warning when ``dmarc_policy`` is above the policy the cached reports saw
    published while they show unaligned legitimate sources (none without a cache)."""
    try:
        cached = json.loads(summary_path(settings).read_text())
    except (OSError, ValueError):
        return {}
    notices = {}
    for domain in settings.mail_domains:
        entry = cached.get("domains", {}).get(domain)
        if not entry:
            continue
        published = entry["dmarc"]["published_policy"]
        if published not in LADDER or LADDER.index(settings.dmarc_policy) <= LADDER.index(
                published):
            continue
        unaligned = entry["ladder"]["unaligned_legitimate"]
        if not unaligned:
            continue
        names = ", ".join(f"{s['ip']} ({s['kind']}, {s['rates']['dmarc_pass']:.0%} aligned)"
                          for s in unaligned)
        notices[domain] = (
            f"dmarc_policy of {domain} raised from {published} to {settings.dmarc_policy} "
            f"while the DMARC reports (scripts/reports, {cached['generated'][:10]}) show "
            f"unaligned mail from legitimate sources: {names}; their mail would be "
            f"{'rejected' if settings.dmarc_policy == 'reject' else 'quarantined'}: fix their "
            f"SPF/DKIM first, or keep p={published}")
    return notices
