"""The firewall (ufw): incoming denied except SSH, SMTP 25 and submission 587 and 465; 80 only
while HTTP-01 needs it (certbot's hooks open and close it).

The SSH port is read from the live connection ($SSH_CONNECTION), so a host on port 2222 is
never locked out by a rule for 22. A firewall in any other state (inactive, incoming allowed,
rules of its own) is reset to exactly this: rules that are not ours do not survive a deploy.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.operations import server

MAIL_PORTS = [25, 465, 587]
DEFAULTS = "Default: deny (incoming), allow (outgoing)"


class SshServerPort(FactBase):
    """The port this SSH connection came in on (None when not connected over SSH)."""

    def command(self):
        return "echo ${SSH_CONNECTION:-}"

    def process(self, output):
        fields = "".join(output).split()
        return int(fields[3]) if len(fields) == 4 and fields[3].isdigit() else None


class UfwStatus(FactBase):
    """``ufw status verbose`` lines; empty when ufw is missing."""

    def command(self):
        return "ufw status verbose 2>/dev/null || true"

    def process(self, output):
        return [line.strip() for line in output]


def rules_of(status: list[str]) -> set[tuple[str, ...]]:
    """The rules in ``ufw status verbose`` output, each as its words."""
    lines = [line for line in status if line]
    start = next((i + 1 for i, line in enumerate(lines) if line.startswith("--")), len(lines))
    return {tuple(line.split()) for line in lines[start:]}


def wanted_rules(ssh_port: int) -> set[tuple[str, ...]]:
    rules = set()
    for port in [ssh_port, *MAIL_PORTS]:
        rules.add((f"{port}/tcp", "ALLOW", "IN", "Anywhere"))
        rules.add((f"{port}/tcp", "(v6)", "ALLOW", "IN", "Anywhere", "(v6)"))
    return rules


def is_wanted(status: list[str], ssh_port: int) -> bool:
    """Whether ufw is active, denies incoming by default and allows exactly our ports."""
    return ("Status: active" in status
            and any(line.startswith(DEFAULTS) for line in status)
            and rules_of(status) == wanted_rules(ssh_port))


def commands(status: list[str], ssh_port: int) -> list[str]:
    """What brings ufw to the wanted state: nothing when it is there, else a reset.

    ``ufw --force reset`` leaves ufw disabled (the SSH session is untouched); the SSH rule is
    in place before ``enable``, which keeps established connections."""
    if is_wanted(status, ssh_port):
        return []
    return ["ufw --force reset >/dev/null", "ufw default deny incoming",
            "ufw default allow outgoing",
            *[f"ufw allow {port}/tcp" for port in [ssh_port, *MAIL_PORTS]],
            "ufw --force enable"]


def configure(ssh_port_fallback: int = 22) -> None:
    """Deny incoming but SSH (the port of this connection) and the mail ports; idempotent."""
    ssh_port = host.get_fact(SshServerPort) or int(host.data.get("ssh_port") or ssh_port_fallback)
    needed = commands(host.get_fact(UfwStatus) or [], ssh_port)
    if needed:
        server.shell(name=f"Firewall: deny incoming but SSH ({ssh_port}) and mail ports",
                     commands=needed)
