"""The reports fetched: the report messages of one host's mail users over IMAPS, parsed and
summarized (report_host)."""

from __future__ import annotations

import datetime
from collections.abc import Callable

from mailhost.reports.parse import parse_message
from mailhost.reports.summary import LADDER_DAYS, Origins, summarize
from mailhost.settings import Settings


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


def recursive_resolver(settings: Settings):
    """A plain recursive resolver (check_resolver, else the system's), 5 s per lookup."""
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
    resolver = recursive_resolver(settings)
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
