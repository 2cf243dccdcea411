"""MTA-STS (RFC 8461), from the controller, for each mail domain when ``mta_sts_mode`` is not
"off": the ``_mta-sts`` TXT record is one well-formed ``v=STSv1; id=...`` whose id is the one
the deploy derives from the policy, and the policy is fetched over HTTPS from every address of
``mta-sts.DOMAIN`` (IPv4 and IPv6), the certificate verified for that name, then parsed: version
STSv1, the configured mode and max_age, ``mx:`` patterns covering every MX of the domain."""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import time

from mailhost.checks import CheckResult, guarded, result
from mailhost.checks.smtp import TIMEOUT, verified_context
from mailhost.dns import mta_sts
from mailhost.lookup import CheckResolver
from mailhost.settings import Settings

HTTPS_PORT = 443
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 3.3: senders may refuse larger policies
TXT_FORM = re.compile(r"v=STSv1;\s*id=([A-Za-z0-9]{1,32})\s*;?\s*$")
REDEPLOY = ("run the deploy (pyinfra INVENTORY deploy.py): it publishes the record and serves "
            "the policy")
SERVER_ADVICE = ("nginx on the mail host serves the policy (/etc/nginx/nginx.conf, "
                 "/etc/nginx/mta-sts/): check `systemctl status nginx`, that 443 is open, and "
                 "that the certificate names mta-sts.DOMAIN (certbot certificates); then "
                 + REDEPLOY)


def checks(settings: Settings, resolver: CheckResolver,
           mx: dict[str, tuple[str, ...]] | None = None) -> list[CheckResult]:
    """Every MTA-STS check of the host's mail domains ([] with mta_sts_mode "off"); ``mx``:
    each domain's MX hosts in the inventory (settings.fleet.FleetView.mx)."""
    found = []
    for domain, text in mta_sts.policy_of(settings, mx).items():
        found.append(txt_check(resolver, domain, mta_sts.policy_id(text)))
        for family, rtype in (("IPv4", "A"), ("IPv6", "AAAA")):
            if rtype == "AAAA" and not settings.ipv6:
                continue
            found.append(policy_check(settings, resolver, domain, family, rtype))
    return found


def txt_check(resolver: CheckResolver, domain: str, policy_id: str) -> CheckResult:
    name = f"mta-sts: _mta-sts.{domain} TXT"
    expected = f"one record v=STSv1; id={policy_id} (the id of the policy served)"

    def check():
        records = [t for t in resolver.texts(mta_sts.record_name(domain))
                   if t.startswith("v=STSv1")]
        found = " | ".join(records) or "no v=STSv1 record"
        matched = TXT_FORM.match(records[0]) if len(records) == 1 else None
        return result(name, matched is not None and matched.group(1) == policy_id, expected,
                      found, f"senders read the policy's id here (RFC 8461 3.1): {REDEPLOY}")
    return guarded(name, expected, REDEPLOY, check)


def https_request(settings: Settings, name: str, address: str, path: str, method: str = "GET",
                  body: bytes | None = None, headers: dict | None = None,
                  limit: int = MAX_POLICY_BYTES) -> tuple[int, str, str]:
    """METHOD PATH on one address, TLS verified for NAME (the checks' CA file when set):
    (HTTP status, Content-Type, body, at most LIMIT bytes read and one more)."""
    context = verified_context(settings)
    connection = http.client.HTTPSConnection(name, HTTPS_PORT, timeout=TIMEOUT, context=context)
    raw = socket.create_connection((address, HTTPS_PORT), timeout=TIMEOUT)
    connection.sock = context.wrap_socket(raw, server_hostname=name)
    try:
        connection.request(method, path, body=body,
                           headers={"Connection": "close", **(headers or {})})
        response = connection.getresponse()
        data = response.read(limit + 1)
        return response.status, response.getheader("Content-Type", ""), data.decode()
    finally:
        connection.close()


def fetch_policy(settings: Settings, policy_host: str, address: str) -> tuple[int, str, str]:
    """GET the policy from one address, TLS verified for ``policy_host`` (the checks' CA file
    when set): (HTTP status, Content-Type, body)."""
    return https_request(settings, policy_host, address, mta_sts.POLICY_PATH)


# nginx's reload after certbot (the deploy hook) is graceful: for a moment a connection may
# still reach a worker holding the previous certificate (the self-signed one on a first deploy);
# seen in the lab on the check that follows the first certificate
SETTLE_TRIES, SETTLE_SECONDS = 5, 2.0


def fetch_settled(settings: Settings, policy_host: str, address: str,
                  sleep=time.sleep) -> tuple[int, str, str]:
    """fetch_policy, asked again (SETTLE_TRIES times, SETTLE_SECONDS apart) while the
    certificate does not verify; the last failure is the check's finding."""
    for _ in range(SETTLE_TRIES - 1):
        try:
            return fetch_policy(settings, policy_host, address)
        except ssl.SSLCertVerificationError:
            sleep(SETTLE_SECONDS)
    return fetch_policy(settings, policy_host, address)


def judge_policy(settings: Settings, body: str, mx_hosts: list[str]) -> list[str]:
    """What is wrong with a fetched policy, per RFC 8461 3.2 and the settings ([]: nothing)."""
    try:
        fields = mta_sts.parse_policy(body)
    except ValueError as error:
        return [str(error)]
    problems = []
    single = {key: values[0] for key, values in fields.items() if len(values) == 1}
    if single.get("version") != "STSv1":
        problems.append(f"version {fields.get('version')} is not STSv1")
    if single.get("mode") != settings.mta_sts_mode:
        problems.append(f"mode {fields.get('mode')} is not {settings.mta_sts_mode} (configured)")
    if single.get("max_age") != str(settings.mta_sts_max_age):
        problems.append(f"max_age {fields.get('max_age')} is not {settings.mta_sts_max_age}")
    patterns = fields.get("mx", [])
    uncovered = [mx for mx in mx_hosts if not any(mta_sts.mx_matches(p, mx) for p in patterns)]
    if not mx_hosts:
        problems.append("the domain has no MX to cover")
    if uncovered:
        problems.append(f"no mx: pattern covers the MX {', '.join(uncovered)}")
    return problems


def policy_check(settings: Settings, resolver: CheckResolver, domain: str, family: str,
                 rtype: str) -> CheckResult:
    policy_host = mta_sts.policy_host(domain)
    name = f"mta-sts: policy of {domain} over {family}"
    expected = (f"https://{policy_host}{mta_sts.POLICY_PATH} (certificate valid for that name): "
                f"text/plain, version STSv1, mode {settings.mta_sts_mode}, "
                f"max_age {settings.mta_sts_max_age}, mx patterns covering every MX")

    def check():
        addresses = [r.address for r in resolver.values(policy_host, rtype)]
        if not addresses:
            return result(name, False, expected, f"{policy_host} has no {rtype} record",
                          REDEPLOY)
        mx_hosts = sorted(r.exchange.to_text().rstrip(".").lower()
                          for r in resolver.values(domain, "MX"))
        found_parts, problems = [], []
        for address in addresses:
            status, content_type, body = fetch_settled(settings, policy_host, address)
            if status != 200:
                problems.append(f"{address}: HTTP {status}")
                continue
            if content_type.split(";")[0].strip().lower() != "text/plain":
                problems.append(f"{address}: Content-Type {content_type or 'missing'}")
            problems += [f"{address}: {p}" for p in judge_policy(settings, body, mx_hosts)]
            found_parts.append(f"{address}: " + ", ".join(
                line for line in body.replace("\r\n", "\n").split("\n") if line))
        found = "; ".join(problems) if problems else "; ".join(found_parts)
        return result(name, not problems, expected, found, SERVER_ADVICE)
    return guarded(name, expected, SERVER_ADVICE, check)
