"""Facts about the mail host that pyinfra does not ship."""

from __future__ import annotations

import base64
import re

from pyinfra import host
from pyinfra.api import FactBase, QuoteString, StringCommand
from pyinfra.context import ctx_state
from pyinfra.facts.deb import DebPackages

DEPTH = 3  # how far below a root read_paths looks
IPV6_SYSCTLS = ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6")


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

    @staticmethod
    def default():
        return {}

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


class PathStates(FactBase):
    """Every path under some roots (the roots themselves included, ``depth`` levels down), in
    one command: ``{path: {"type": "f" (file) | "d" | "l" | ..., "user", "group",
    "mode": int (octal digits as written, 644), "sha256": a file's hash or None,
    "target": a link's target or None}}``. A missing root adds nothing. Each file named in
    ``contents`` that is under a root and exists also gets its ``"lines"``."""

    @staticmethod
    def default():
        return {}  # no output: none of the roots exists

    def command(self, roots, depth=3, contents=()):
        quoted = [QuoteString(root) for root in roots]
        command = [
            "find", *quoted, "-maxdepth", str(int(depth)),
            "-printf '%y|%u|%g|%m|%l|%p\\n' 2>/dev/null; echo '--';",
            "find", *quoted, "-maxdepth", str(int(depth)),
            "\\( -type f -o -type l \\) -exec sha256sum {} + 2>/dev/null;",
        ]
        if contents:  # a line per file: its bytes in base64, then its path
            command += ["echo '--';", "for f in", *[QuoteString(path) for path in contents],
                        "; do test -f \"$f\" && printf '%s|%s\\n' \"$(base64 -w0 \"$f\")\" \"$f\";",
                        "done;"]
        return StringCommand(*command, "true")

    def process(self, output):
        states, section = {}, "types"
        for line in output:
            if line == "--":
                section = "hashes" if section == "types" else "contents"
            elif section == "hashes":
                digest, _, path = line.partition("  ")
                if path in states:
                    states[path]["sha256"] = digest
            elif section == "contents":
                encoded, _, path = line.partition("|")
                if path in states:
                    states[path]["lines"] = base64.b64decode(encoded).decode().splitlines()
            elif line.count("|") >= 5:
                kind, user, group, mode, target, path = line.split("|", 5)
                states[path] = {"type": kind, "user": user, "group": group, "mode": int(mode),
                                "sha256": None, "target": target or None}
        return states


class Accounts(FactBase):
    """Users and groups from the account databases (getent), in one command:
    ``{"users": {name: {"uid", "gid", "home", "shell"}}, "groups": {name: {"gid", "members"}}}``;
    a missing one is left out."""

    @staticmethod
    def default():
        return {"users": {}, "groups": {}}  # no output: none of them exists

    def command(self, users, groups):
        return StringCommand("getent passwd", *[QuoteString(u) for u in users], "; getent group",
                             *[QuoteString(g) for g in groups], "; true")

    def process(self, output):
        found = {"users": {}, "groups": {}}
        for line in output:
            fields = line.strip().split(":")
            if len(fields) == 7:
                found["users"][fields[0]] = {"uid": int(fields[2]), "gid": int(fields[3]),
                                             "home": fields[5], "shell": fields[6]}
            elif len(fields) == 4:
                found["groups"][fields[0]] = {"gid": int(fields[2]),
                                              "members": [m for m in fields[3].split(",") if m]}
        return found


class BaseState(FactBase):
    """What the host's base needs, in one command: the hostname, the lines of /etc/hosts,
    the IPv6 sysctls (facts.IPV6_SYSCTLS; a key the kernel lacks is left out), whether the
    host uses netplan (/etc/netplan exists) and the interface of the IPv4 default route:
    ``{"hostname": str, "hosts": [line, ...], "sysctls": {key: int}, "netplan": bool,
    "default_interface": str | None}``."""

    SECTIONS = ("hostname", "hosts", "sysctls", "netplan", "default_interface")

    @staticmethod
    def default():
        return {"hostname": "", "hosts": [], "sysctls": {}, "netplan": False,
                "default_interface": None}

    def command(self):
        return StringCommand(
            "echo '== hostname'; hostname; echo '== hosts'; cat /etc/hosts 2>/dev/null;",
            "echo '== sysctls'; sysctl", *IPV6_SYSCTLS, "2>/dev/null;",
            "echo '== netplan'; test -d /etc/netplan && echo yes;",
            "echo '== default_interface';",
            "ip -o -4 route show default 2>/dev/null | awk '{print $5; exit}'; true")

    def process(self, output):
        sections = {name: [] for name in self.SECTIONS}
        current = None
        for line in output:
            line = line.rstrip("\n")
            if line.startswith("== ") and line[3:] in sections:
                current = line[3:]
            elif current is not None:
                sections[current].append(line)
        sysctls = {}
        for line in sections["sysctls"]:
            key, _, value = line.partition("=")
            if value.strip().isdigit():
                sysctls[key.strip()] = int(value)
        interface = "".join(sections["default_interface"]).strip()
        return {"hostname": "".join(sections["hostname"]).strip(),
                "hosts": sections["hosts"], "sysctls": sysctls,
                "netplan": sections["netplan"] == ["yes"],
                "default_interface": interface or None}


class QueuedMessages(FactBase):
    """How many message files each named spool holds, whether its MTA runs or not (a stopped
    Postfix cannot answer ``postqueue``): ``spools`` is ``{name: (directory, ...)}``, the fact
    ``{name: int}`` (0 where the directories do not exist)."""

    @staticmethod
    def default():
        return {}

    def command(self, spools):
        parts = [StringCommand("echo", QuoteString(name),
                               "$(find", *[QuoteString(d) for d in directories],
                               "-type f 2>/dev/null | wc -l);")
                 for name, directories in sorted(spools.items())]
        return StringCommand(*parts, "true")

    def process(self, output):
        counts = {}
        for line in output:
            name, _, count = line.strip().rpartition(" ")
            if name and count.isdigit():
                counts[name] = int(count)
        return counts


class PackageState(FactBase):
    """The installed packages (as pyinfra's deb.DebPackages reads ``dpkg -l``: name ->
    [version]) and what ``dpkg --audit`` reports (packages an interrupted install left
    unpacked or half-configured), in one command: ``{"packages": {...}, "audit": [line, ...]}``.
    """

    @staticmethod
    def default():
        return {"packages": {}, "audit": []}

    def command(self):
        return "dpkg -l; echo '== audit'; dpkg --audit 2>&1 | head -5"

    def process(self, output):
        lines = list(output)
        cut = lines.index("== audit") if "== audit" in lines else len(lines)
        return {"packages": DebPackages().process(lines[:cut]),
                "audit": [line for line in lines[cut + 1:] if line.strip()]}


def read_paths(roots: list[str], contents: list[str] = ()) -> None:
    """Read every path under ``roots`` in one command (PathStates): a file or directory there
    that is already as wanted then costs no operation and no further round trip. The files
    in ``contents`` (under a root) are read too: see ``known_lines``."""
    states = host.get_fact(PathStates, roots=roots, depth=DEPTH, contents=list(contents))
    _paths_read()[host.name] = (tuple(roots), states)


def _paths_read() -> dict[str, tuple[tuple[str, ...], dict]]:
    """Host name -> (roots read, their PathStates): what is known without another round trip,
    kept on pyinfra's state (the run's), as host/restarts keeps the restarts owed."""
    run = ctx_state.get()
    if run is None:
        return {}
    if getattr(run, "mailhost_paths_read", None) is None:
        run.mailhost_paths_read = {}
    return run.mailhost_paths_read


def known_state(path: str) -> tuple[bool, dict | None]:
    """(whether read_paths covered the path, its state: None when it does not exist)."""
    roots, states = _paths_read().get(host.name, ((), {}))
    for root in roots:
        root = root.rstrip("/")
        if path == root or (path.startswith(root + "/")
                            and path[len(root):].count("/") <= DEPTH):
            return True, states.get(path)
    return False, None


def known_lines(path: str) -> tuple[bool, list[str] | None]:
    """(whether read_paths read the file's lines: it was named in ``contents``, or found
    missing; its lines, None when it does not exist)."""
    known, state = known_state(path)
    if known and state is not None:
        return "lines" in state, state.get("lines")
    return known, None


def in_place(path: str, kind: str, mode: str | None = None, user: str | None = None,
             group: str | None = None, sha256: str | None = None) -> bool:
    """Whether read_paths saw PATH as wanted (a file "f" or directory "d"; mode, owner and
    content where given). False when it was not read: the caller's operation decides."""
    known, state = known_state(path)
    return known and state is not None and state["type"] == kind and all(
        wanted is None or state[field] == wanted for field, wanted in [
            ("mode", None if mode is None else int(mode)), ("user", user), ("group", group),
            ("sha256", sha256)])
