"""The firewall (ufw): SSH and the MTA's ports (SMTP 25, submission 587 and 465); 80 only while
HTTP-01 needs it.

The SSH port is read from the live connection ($SSH_CONNECTION), so a host on port 2222 is
never locked out by a rule for 22.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.operations import server


class FirewallState(FactBase):
    """In one command: the port this SSH connection came in on (None when not connected over
    SSH) and the ``ufw status`` lines (none when ufw is inactive or missing):
    ``{"ssh_port": int | None, "rules": [line, ...]}``."""

    @staticmethod
    def default():
        return {"ssh_port": None, "rules": []}

    def command(self):
        return "echo ${SSH_CONNECTION:-}; ufw status 2>/dev/null || true"

    def process(self, output):
        lines = list(output) or [""]
        fields = lines[0].split()
        return {"ssh_port": int(fields[3]) if len(fields) == 4 else None,
                "rules": [line.strip() for line in lines[1:] if line.strip()]}


def configure(mail_ports, ssh_port_fallback: int = 22) -> None:
    """Allow SSH and the mail ports (the MTA profile's), deny the rest, enable ufw;
    idempotent."""
    state = host.get_fact(FirewallState)
    ssh_port = state["ssh_port"] or int(host.data.get("ssh_port") or ssh_port_fallback)
    status = state["rules"]
    active = any(line.startswith("Status: active") for line in status)
    allowed = {line.split()[0] for line in status if "ALLOW" in line}
    commands = []
    for port in [ssh_port, *mail_ports]:
        if f"{port}/tcp" not in allowed:
            commands.append(f"ufw allow {port}/tcp")
    if not active:
        commands += ["ufw default deny incoming", "ufw default allow outgoing",
                     "ufw --force enable"]
    if commands:
        server.shell(name=f"Firewall: allow SSH ({ssh_port}) and mail ports, deny the rest",
                     commands=commands)
