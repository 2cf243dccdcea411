"""Facts about the mail host that pyinfra does not ship."""

from __future__ import annotations

import re

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


class SystemdUnitStates(FactBase):
    """Whether each systemd unit of any type (a socket, a timer too) is active and enabled:
    ``{unit: {"active": bool, "enabled": bool}}``, all units in one command."""

    def command(self, units):
        quoted = [QuoteString(unit) for unit in units]
        return StringCommand("for u in", *quoted, '; do echo "$u" $(systemctl is-active "$u")',
                             '$(systemctl is-enabled "$u" 2>/dev/null); done')

    def process(self, output):
        states = {}
        for line in output:
            if not line.strip():
                continue
            unit, *fields = line.split()
            states[unit] = {"active": fields[:1] == ["active"],
                            "enabled": fields[1:2] == ["enabled"]}
        return states


class DebianPackageVersion(FactBase):
    """(major, minor) of a package: the installed version, else the one apt would install;
    None when neither is known."""

    def command(self, package):
        quoted = QuoteString(package)
        return StringCommand(
            "v=$(dpkg-query -W -f='${db:Status-Status} ${Version}' ", quoted,
            " 2>/dev/null | awk '$1 == \"installed\" {print $2}');",
            '[ -n "$v" ] || v=$(apt-cache policy', quoted,
            "2>/dev/null | awk '/Candidate:/ {print $2}'); echo \"$v\"",
        )

    def process(self, output):
        return parse_debian_version("".join(output).strip())


def parse_debian_version(text: str) -> tuple[int, int] | None:
    """'1:1.14.0-1+b2' -> (1, 14); '(none)' or '' -> None."""
    upstream = text.split(":", 1)[-1].split("-", 1)[0]
    numbers = re.findall(r"\d+", upstream)
    if not re.match(r"^\d", upstream) or not numbers:
        return None
    return int(numbers[0]), int(numbers[1]) if len(numbers) > 1 else 0
