"""Checks run on the host through pyinfra (facts and commands, read-only): every unit of the
MTA's components active and enabled, certbot's renewal timer, outbound port 25, the mail
queue, no package hold or half-done package operation left behind."""

from __future__ import annotations

from pyinfra.api import QuoteString, StringCommand

from mailhost import paths
from mailhost.checks import CheckResult, guarded, result
from mailhost.facts import SystemdUnitStates
from mailhost.paths import CERTBOT_TIMER
from mailhost.settings import Settings

STUCK_SECONDS = 3600


def checks(settings: Settings, host, mta) -> list[CheckResult]:
    all_units = [*mta.units, CERTBOT_TIMER]
    states = guarded_states(host, all_units)
    found = [unit_check(unit, states) for unit in all_units]
    found.append(outbound_check(settings, host))
    if settings.relay_host:
        found.append(relay_check(settings, host))
    found.append(queue_check(mta.queue, host))
    found.append(packages_settled_check(host))
    return found


def guarded_states(host, units: list[str]) -> dict | Exception:
    """Every unit's state in one command, or the error that kept it from being read."""
    try:
        return host.get_fact(SystemdUnitStates, units=units)
    except Exception as error:  # noqa: BLE001 - each unit's check reports it
        return error


def run(host, *parts) -> str:
    """A read-only command's stdout; a failed command raises."""
    ok, output = host.run_shell_command(StringCommand(*parts))
    if not ok:
        raise RuntimeError(f"`{StringCommand(*parts).get_masked_value()}` failed: "
                           f"{output.stderr.strip()[:200]}")
    return output.stdout


def unit_check(unit: str, states: dict | Exception) -> CheckResult:
    name = f"host: {unit} active and enabled"
    advice = (f"start it and look at why it stopped: `systemctl enable --now {unit}`, "
              f"`journalctl -u {unit}`; the deploy starts and enables it")

    def check():
        if isinstance(states, Exception):
            raise states
        state = states.get(unit) or {}
        found = ("active" if state.get("active") else "not active") + ", " + (
            "enabled" if state.get("enabled") else "not enabled")
        return result(name, state.get("active") and state.get("enabled"),
                      "active, enabled", found, advice)
    return guarded(name, "active, enabled", advice, check)


def outbound_check(settings: Settings, host) -> CheckResult:
    """Outbound port 25 open; with relay_host a closed one is expected and only reported."""
    target = settings.check_outbound_smtp
    name = f"host: outbound SMTP to {target}"
    expected = "a TCP connection from the host"
    advice = ("the host cannot open connections to port 25 elsewhere, so it cannot deliver "
              "mail. Many VPS providers block outbound port 25 by default: ask yours to unblock "
              "it (or relay through a smarthost); check that no firewall on the host drops it")
    if settings.relay_host:
        advice = (f"port 25 looks blocked (as many VPS providers do); mail leaves through "
                  f"relay_host {settings.relay_host} instead (the relay check says whether "
                  "the host reaches it)")
    server, _, port = target.rpartition(":")
    required = not settings.relay_host

    def check():
        connected, found = connects(host, server, port)
        return result(name, connected, expected, found, advice)
    return guarded(name, expected, advice, check, required=required)


def relay_check(settings: Settings, host) -> CheckResult:
    """The host reaches relay_host's port (587 or 465)."""
    server, _, port = settings.relay_host.rpartition(":")
    name = f"host: relay {settings.relay_host} reachable"
    expected = "a TCP connection from the host"
    advice = ("the host cannot reach its relay, so outbound mail waits in the queue: check the "
              "relay's name and port, and that no firewall (the host's or the provider's) "
              "drops the connection")
    def check():
        connected, found = connects(host, server.strip("[]"), port)
        return result(name, connected, expected, found, advice)
    return guarded(name, expected, advice, check)


def connects(host, server: str, port: str) -> tuple[bool, str]:
    """Whether the host opens a TCP connection to server:port within 10 s, and what it saw."""
    script = f"exec 3<>/dev/tcp/{server}/{port} && echo connected"
    output = run(host, "timeout 10 bash -c", QuoteString(script), "2>&1 || true")
    connected = "connected" in output
    return connected, ("connected" if connected else
                       (output.strip()[:200] or "no connection in 10 s"))


def queue_ages(queue, host) -> list[int]:
    """How long (seconds) each queued message has waited (queue: the MTA's QueueReader)."""
    return queue.ages(run(host, queue.command))


def queue_check(queue, host) -> CheckResult:
    name = "host: mail queue not stuck"
    expected = f"no message waiting more than {STUCK_SECONDS // 60} minutes"
    advice = (f"mail is not leaving: read why in the queue ({queue.where}) "
              "and the mail log; often outbound port 25 is blocked or a receiver refuses the host")

    def check():
        ages = queue_ages(queue, host)
        stuck = [age for age in ages if age > STUCK_SECONDS]
        found = f"{len(ages)} queued" + (
            f", {len(stuck)} waiting for more than {STUCK_SECONDS // 60} min (oldest "
            f"{max(stuck) // 60} min)" if stuck else "")
        return result(name, not stuck, expected, found, advice)
    return guarded(name, expected, advice, check, required=False)


POLICY_RC_D = "/usr/sbin/policy-rc.d"


def packages_settled_check(host) -> CheckResult:
    """Nothing a deploy sets for the length of a run outlives it: no ``policy-rc.d`` (the hold
    while it installs, so services start only once configured), no restarts-owed marker
    (there while changed files wait for their services' restart), nothing ``dpkg --audit``
    reports (an apt run that was interrupted)."""
    name = "host: no package hold or half-done install"
    expected = (f"no {POLICY_RC_D}; no {paths.RESTARTS_OWED}; dpkg --audit reports nothing")
    advice = (f"while {POLICY_RC_D} exists, package upgrades (security updates) may not restart "
              "services; a restarts-owed marker means services may still run an old "
              "configuration; a half-done install leaves packages unconfigured: run the deploy "
              "again (it finishes the install with `dpkg --configure -a`, restarts what was "
              "owed and removes both)")

    def check():
        output = run(host, f"test -e {POLICY_RC_D} && echo {POLICY_RC_D} present; "
                     f"test -e {paths.RESTARTS_OWED} && echo {paths.RESTARTS_OWED} present; "
                     "dpkg --audit 2>&1 | head -3; true").strip()
        return result(name, not output, expected, output[:200] or "none", advice)
    return guarded(name, expected, advice, check)
