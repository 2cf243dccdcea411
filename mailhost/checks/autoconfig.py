"""The mail clients' autoconfiguration (``mail_client_autoconfig``), from the controller, for
each mail domain: Mozilla's file fetched with GET from every address of ``autoconfig.DOMAIN``
and Outlook's Autodiscover answer fetched with POST from every address of
``autodiscover.DOMAIN`` (IPv4 and IPv6), the certificate verified for that name; each parsed and
its servers compared with what the settings say the host serves (mailhost.dns.autoconfig)."""

from __future__ import annotations

from mailhost.checks import CheckResult, guarded, result
from mailhost.checks.mta_sts import https_request
from mailhost.dns import autoconfig
from mailhost.lookup import CheckResolver
from mailhost.settings import Settings

MAX_BYTES = 64 * 1024
ADVICE = ("nginx on the mail host serves both files (/etc/nginx/nginx.conf, written by the "
          "deploy): check `systemctl status nginx`, that 443 is open, that the certificate "
          "names autoconfig.DOMAIN and autodiscover.DOMAIN (certbot certificates), and their "
          "A/AAAA records; then run the deploy again")
# what Outlook sends (the address is only echoed by servers that personalize the answer)
REQUEST = ('<?xml version="1.0" encoding="utf-8"?>\n'
           '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/'
           'requestschema/2006">\n  <Request>\n    <EMailAddress>{address}</EMailAddress>\n'
           '    <AcceptableResponseSchema>' + autoconfig.OUTLOOK_RESPONSE +
           '</AcceptableResponseSchema>\n  </Request>\n</Autodiscover>\n')
# (what, its name, method, path, parser)
FILES = (("autoconfig", autoconfig.autoconfig_host, "GET", autoconfig.AUTOCONFIG_PATH,
          autoconfig.parse_mozilla),
         ("autodiscover", autoconfig.autodiscover_host, "POST", autoconfig.AUTODISCOVER_PATH,
          autoconfig.parse_autodiscover))


def checks(settings: Settings, resolver: CheckResolver) -> list[CheckResult]:
    """Every check of the clients' files ([] without mail_client_autoconfig)."""
    if not settings.mail_client_autoconfig:
        return []
    return [file_check(settings, resolver, domain, what, family, rtype)
            for domain in settings.mail_domains
            for what in FILES
            for family, rtype in (("IPv4", "A"), ("IPv6", "AAAA"))
            if rtype == "A" or settings.ipv6]


def judge(parse, status: int, text: str, wanted) -> str:
    """What is wrong with one answer ("": it names exactly the servers wanted, in order)."""
    if status != 200:
        return f"HTTP {status}"
    try:
        servers = parse(text)
    except ValueError as error:
        return str(error)
    return "" if tuple(servers) == tuple(wanted) else (describe(servers) or "no servers")


def describe(servers) -> str:
    return ", ".join(f"{s.kind} {s.hostname}:{s.port} {s.socket}" for s in servers)


def file_check(settings: Settings, resolver: CheckResolver, domain: str, what, family: str,
               rtype: str) -> CheckResult:
    label, host_of, method, path, parse = what
    name_ = host_of(domain)
    wanted = autoconfig.servers(settings)
    name = f"{label}: {domain} over {family}"
    expected = f"{method} https://{name_}{path}: {describe(wanted)}"

    def check():
        addresses = [r.address for r in resolver.values(name_, rtype)]
        if not addresses:
            return result(name, False, expected, f"{name_} has no {rtype} record", ADVICE)
        problems, found = [], []
        body = REQUEST.format(address=f"postmaster@{domain}").encode() if method == "POST" \
            else None
        for address in addresses:
            status, content_type, text = https_request(
                settings, name_, address, path, method, body,
                {"Content-Type": "text/xml"} if body else None, MAX_BYTES)
            problem = judge(parse, status, text, wanted)
            if problem:
                problems.append(f"{address}: {problem}")
            else:
                found.append(f"{address}: {describe(wanted)}")
        return result(name, not problems, expected, "; ".join(problems or found), ADVICE)
    return guarded(name, expected, ADVICE, check)
