"""Facts about the mail host that pyinfra does not ship."""

from __future__ import annotations

from pyinfra.api import FactBase, QuoteString, StringCommand


class DkimPublicKey(FactBase):
    """
    The DER public half, base64, of a private key file on the host; None when it is missing.
    Only the public half ever leaves the host through this fact.
    """

    def command(self, path):
        quoted = QuoteString(path)
        return StringCommand(
            "! test -f", quoted, "|| openssl pkey -in", quoted, "-pubout -outform DER | base64 -w0"
        )

    def requires_command(self, path):
        return "openssl"

    def process(self, output):
        text = "".join(output).strip()
        return text or None


class SystemdUnitState(FactBase):
    """Whether a systemd unit of any type (a timer too) is active and enabled."""

    def command(self, unit):
        quoted = QuoteString(unit)
        return StringCommand("echo $(systemctl is-active", quoted, ") $(systemctl is-enabled",
                             quoted, "2>/dev/null)")

    def process(self, output):
        fields = "".join(output).split()
        return {"active": fields[:1] == ["active"], "enabled": fields[1:2] == ["enabled"]}
