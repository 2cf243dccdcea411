"""The firewall's decisions from ``ufw status verbose``: nothing when it is as wanted, a reset
to deny-incoming with only SSH (the live connection's port) and the mail ports otherwise."""

from mailhost.host import firewall
from mailhost.host.mtas import POSTFIX

MAIL_PORTS = POSTFIX.ports

HEAD = ["Status: active", "Logging: on (low)",
        "Default: deny (incoming), allow (outgoing), disabled (routed)", "New profiles: skip",
        "", "To                         Action      From",
        "--                         ------      ----"]


def status(ports, head=HEAD, extra=()):
    lines = [f"{p}/tcp                     ALLOW IN    Anywhere" for p in ports]
    lines += [f"{p}/tcp (v6)                ALLOW IN    Anywhere (v6)" for p in ports]
    return [line.strip() for line in [*head, *lines, *extra]]


def test_wanted_state_needs_nothing():
    assert firewall.commands(status([22, 25, 465, 587]), 22, MAIL_PORTS) == []
    assert firewall.commands(status([2222, 25, 465, 587]), 2222, MAIL_PORTS) == []


def test_any_difference_resets_to_deny_incoming_with_only_our_ports():
    wanted = ["ufw --force reset >/dev/null", "ufw default deny incoming",
              "ufw default allow outgoing", "ufw allow 22/tcp", "ufw allow 25/tcp",
              "ufw allow 465/tcp", "ufw allow 587/tcp", "ufw --force enable"]
    cases = {
        "inactive": ["Status: inactive"],
        "ufw missing": [],
        "an old rule": status([22, 25, 465, 587], extra=["8080/tcp ALLOW IN Anywhere"]),
        "a rule from one address": status([22, 25, 465, 587],
                                          extra=["3306 ALLOW IN 198.51.100.1"]),
        "incoming allowed": status([22, 25, 465, 587], head=[
            "Status: active", "Default: allow (incoming), allow (outgoing), disabled (routed)",
            "To Action From", "-- ------ ----"]),
        "a mail port missing": status([22, 25, 587]),
        "IPv6 rules missing": [line for line in status([22, 25, 465, 587]) if "v6" not in line],
    }
    for case, lines in cases.items():
        assert firewall.commands(lines, 22, MAIL_PORTS) == wanted, case


def test_ssh_port_comes_from_the_live_connection():
    fact = firewall.FirewallState()
    assert fact.process(["198.51.100.1 40022 198.51.100.10 2222"])["ssh_port"] == 2222
    assert fact.process([""])["ssh_port"] is None
    needed = firewall.commands(status([22, 25, 465, 587]), 2222, MAIL_PORTS)
    assert "ufw allow 2222/tcp" in needed and "ufw allow 22/tcp" not in needed
    assert needed.index("ufw allow 2222/tcp") < needed.index("ufw --force enable")
