"""The firewall (ufw): incoming denied except SSH and the MTA's ports (SMTP 25, submission 587
and 465, IMAP, ManageSieve 4190, and 443 for the MTA-STS policy when nginx serves it); 80 only
while HTTP-01 needs it (certbot's hooks open and close it).

The SSH port is read from the live connection ($SSH_CONNECTION), so a host on port 2222 is
never locked out by a rule for 22. A firewall in any other state (inactive, incoming allowed,
rules of its own) is reset to exactly this: rules that are not ours do not survive a deploy.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.operations import server

DEFAULTS = "Default: deny (incoming), allow (outgoing)"


class FirewallState(FactBase):
    """In one command: the port this SSH connection came in on (None when not connected over
    SSH) and the ``ufw status verbose`` lines (none when ufw is missing):
    ``{"ssh_port": int | None, "rules": [line, ...]}``."""

    @staticmethod
    def default():
        return {"ssh_port": None, "rules": []}

    def command(self):
        return "echo ${SSH_CONNECTION:-}; ufw status verbose 2>/dev/null || true"

    def process(self, output):
        lines = list(output) or [""]
        fields = lines[0].split()
        port = int(fields[3]) if len(fields) == 4 and fields[3].isdigit() else None
        return {"ssh_port": port,
                "rules": [line.strip() for line in lines[1:] if line.strip()]}


def rules_of(status: list[str]) -> set[tuple[str, ...]]:
    """The rules in ``ufw status verbose`` output, each as its words."""
    lines = [line for line in status if line]
    start = next((i + 1 for i, line in enumerate(lines) if line.startswith("--")), len(lines))
    return {tuple(line.split()) for line in lines[start:]}


def wanted_rules(ports: list[int]) -> set[tuple[str, ...]]:
    rules = set()
    for port in ports:
        rules.add((f"{port}/tcp", "ALLOW", "IN", "Anywhere"))
        rules.add((f"{port}/tcp", "(v6)", "ALLOW", "IN", "Anywhere", "(v6)"))
    return rules


def is_wanted(status: list[str], ports: list[int]) -> bool:
    """Whether ufw is active, denies incoming by default and allows exactly these ports."""
    return ("Status: active" in status
            and any(line.startswith(DEFAULTS) for line in status)
            and rules_of(status) == wanted_rules(ports))


def commands(status: list[str], ssh_port: int, mail_ports) -> list[str]:
    """What brings ufw to the wanted state: nothing when it is there, else a reset.

    ``ufw --force reset`` leaves ufw disabled (the SSH session is untouched); the SSH rule is
    in place before ``enable``, which keeps established connections."""
    ports = [ssh_port, *mail_ports]
    if is_wanted(status, ports):
        return []
    return ["ufw --force reset >/dev/null", "ufw default deny incoming",
            "ufw default allow outgoing", *[f"ufw allow {port}/tcp" for port in ports],
            "ufw --force enable"]


def configure(mail_ports, ssh_port_fallback: int = 22) -> None:
    """Deny incoming but SSH (the port of this connection) and the MTA profile's ports;
    idempotent.

    + mail_ports: the ports the MTA listens on (``Mta.ports``)
    + ssh_port_fallback: the SSH port when the connection does not say (not over SSH)
    """
    state = host.get_fact(FirewallState)
    ssh_port = state["ssh_port"] or int(host.data.get("ssh_port") or ssh_port_fallback)
    needed = commands(state["rules"], ssh_port, mail_ports)
    if needed:
        server.shell(name=f"Firewall: deny incoming but SSH ({ssh_port}) and mail ports",
                     commands=needed)
