"""The webmail (``webmail = "roundcube"``): its login page fetched from every address of
``MAIL_HOSTNAME`` (IPv4 and IPv6), the certificate verified for that name, Roundcube's login
form in it (PHP-FPM answered through nginx); and, on the host, PHP-FPM's unit active and
enabled (the unit of the PHP version apt has: paths.php_fpm_unit)."""

from __future__ import annotations

from mailhost.checks import CheckResult, guarded, result
from mailhost.checks.mta_sts import https_request
from mailhost.facts import DebianPackageVersion, SystemdUnitStates
from mailhost.lookup import CheckResolver
from mailhost.paths import php_fpm_unit
from mailhost.settings import Settings

MAX_BYTES = 256 * 1024
LOGIN_FORM_FIELD = "rcmloginuser"  # Roundcube's login page: its user field
ADVICE = ("nginx on the mail host serves it through PHP-FPM (/etc/nginx/nginx.conf, "
          "/etc/roundcube/config.inc.php): check `systemctl status nginx php*-fpm`, "
          "/var/log/nginx/error.log and `journalctl -t roundcube`, that 443 is open and that "
          "the certificate names MAIL_HOSTNAME; then run the deploy again")


def checks(settings: Settings, resolver: CheckResolver) -> list[CheckResult]:
    """The login page over IPv4 and IPv6 ([] with webmail off)."""
    if settings.webmail != "roundcube":
        return []
    return [page_check(settings, resolver, family, rtype)
            for family, rtype in (("IPv4", "A"), ("IPv6", "AAAA"))
            if rtype == "A" or settings.ipv6]


def judge(status: int, text: str) -> str:
    """What is wrong with the answer to GET / ("": Roundcube's login form)."""
    if status != 200:
        return f"HTTP {status}"
    if f'id="{LOGIN_FORM_FIELD}"' not in text:
        return "no Roundcube login form in the page"
    return ""


def page_check(settings: Settings, resolver: CheckResolver, family: str,
               rtype: str) -> CheckResult:
    name = f"webmail: login page over {family}"
    expected = f"GET https://{settings.mail_hostname}/: Roundcube's login form"

    def check():
        addresses = [r.address for r in resolver.values(settings.mail_hostname, rtype)]
        if not addresses:
            return result(name, False, expected, f"{settings.mail_hostname} has no {rtype} "
                          "record", ADVICE)
        problems = []
        for address in addresses:
            status, _, text = https_request(settings, settings.mail_hostname, address, "/",
                                            limit=MAX_BYTES)
            problem = judge(status, text)
            if problem:
                problems.append(f"{address}: {problem}")
        found = "; ".join(problems) or f"{', '.join(addresses)}: the login form"
        return result(name, not problems, expected, found, ADVICE)
    return guarded(name, expected, ADVICE, check)


def host_checks(settings: Settings, host) -> list[CheckResult]:
    """On the host: PHP-FPM's unit active and enabled ([] with webmail off)."""
    if settings.webmail != "roundcube":
        return []
    name, expected = "webmail: PHP-FPM running", "its unit active and enabled"

    def check():
        unit = php_fpm_unit(host.get_fact(DebianPackageVersion, package="php-fpm"))
        state = host.get_fact(SystemdUnitStates, units=[unit]).get(unit) or {}
        found = ("active" if state.get("active") else "not active") + ", " + (
            "enabled" if state.get("enabled") else "not enabled")
        return result(name, state.get("active") and state.get("enabled"), expected,
                      f"{unit}: {found}", f"`systemctl enable --now {unit}`, "
                      f"`journalctl -u {unit}`; the deploy starts and enables it")
    return [guarded(name, expected, ADVICE, check)]
