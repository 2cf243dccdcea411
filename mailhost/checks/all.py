"""Every check of one mail host, run side by side: what the deploy's verification
(operations/verify) and ``scripts/check`` run."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from mailhost.checks import (
    FAILED,
    CheckResult,
    autoconfig,
    backup,
    backup_mx,
    blocklists,
    dane,
    dns,
    imap,
    inbound,
    mta_sts,
    rdns,
    sieve,
    smtp,
    webmail,
)
from mailhost.checks import host as host_checks
from mailhost.lookup import zone_resolver
from mailhost.secrets import Secrets
from mailhost.settings import Settings
from mailhost.settings.fleet import ALONE, FleetView


def run_checks(settings: Settings, secrets: Secrets, mta, host=None,
               fleet: FleetView = ALONE) -> list[CheckResult]:
    """Every check of one mail host, whose MTA profile is ``mta`` (mailhost.host.Mta: its
    units, queue, TLS advice). ``host`` (a connected pyinfra Host) runs the host-side ones;
    without it they are left out and the DKIM record is compared with the local key.
    ``fleet``: the host's part of the inventory (its domains' MX hosts, what it holds)."""
    try:
        resolver = zone_resolver(settings)
    except Exception as error:  # noqa: BLE001
        return [CheckResult("dns: authoritative servers", FAILED, "the zones' nameservers",
                            f"{type(error).__name__}: {error}",
                            "set check_nameservers, or check the zones' NS records")]
    groups = [lambda: dns.checks(settings, resolver, host),
              lambda: rdns.checks(settings, resolver),
              lambda: mta_sts.checks(settings, resolver, fleet.mx),
              lambda: autoconfig.checks(settings, resolver),
              lambda: webmail.checks(settings, resolver),
              lambda: dane.checks(settings, resolver),
              *[lambda address=address: smtp.checks_of_address(settings, secrets, address, mta)
                + imap.checks_of_address(settings, secrets, address)
                + sieve.checks_of_address(settings, secrets, address)
                + backup_mx.checks(settings, fleet, address)
                for address in smtp.addresses(settings)],
              lambda: blocklists.checks(settings, resolver),
              lambda: [inbound.spoof_check(settings, smtp.addresses(settings)[0])]]
    # the checks wait on the network, not the CPU: the groups run side by side, and the
    # host's own checks (through pyinfra's connection) meanwhile here
    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        running = [pool.submit(group) for group in groups]
        on_host = ([*host_checks.checks(settings, host, mta), inbound.rspamd_check(host),
                    *backup.checks(settings, host), *webmail.host_checks(settings, host)]
                   if host is not None else [])
        (dns_results, rdns_results, mta_sts_results, autoconfig_results, webmail_results,
         dane_results,
         *smtp_results,
         blocklist_results, spoof_results) = [future.result() for future in running]
    return [*dns_results, *rdns_results, *mta_sts_results, *autoconfig_results,
            *webmail_results, *dane_results,
            *[r for group in smtp_results for r in group],
            *spoof_results, *on_host, *blocklist_results]
