"""``scripts/import-mail INVENTORY ADDRESS --from imaps://HOST[:PORT] --user LOGIN [--json]``:
bring a user's mail over from their old provider into their mailbox on the host.

The host's own Dovecot does the copying: ``doveadm sync -1 -R`` with the imapc storage
(Dovecot's IMAP client) as the remote side pulls every folder, message, flag, keyword and
internal date from the old server into the user's Maildir. One-way sync, not ``backup`` and
not ``import``: ``import`` keeps no state (a second run copies everything again), ``backup -R``
makes the mailbox here a mirror of the old one (it would delete the mail that arrived here
since), while ``sync -1`` remembers what it copied (the IMAP UIDs), so a run that is
interrupted and run again copies only what is missing, and a second run copies nothing.
Nothing at the old provider changes.

The old password comes from ``MAILHOST_IMPORT_PASSWORD_<ADDRESS>`` or ``[import_passwords]``
of the secrets file, else it is asked for; it never goes on a command line: it reaches the
host in a root-only configuration file (``IMPORT_DIR``, removed when the run ends) that
``doveadm -c`` reads. TLS to the old server is verified against the host's CAs. Dovecot 2.3
and 2.4 each get their own settings (``dovecot --version`` on the host). Progress is shown
every few seconds; the end reports folders, messages and bytes (the old mailbox, what this
run brought, the mailbox here). Interrupting the command (Ctrl-C, or the command killed)
stops ``doveadm`` on the host: run it again to go on. Exit 0 done, 1 the copy failed, 2 wrong
arguments, inventory or settings.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import json
import re
import shlex
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

from pyinfra.api.exceptions import PyinfraError

from mailhost.cli import arguments, connect_host, read_inventory
from mailhost.run import per_host
from mailhost.secrets import Secret, import_password, import_password_variable
from mailhost.settings import SettingsError, domain_name, email_address, load_settings

PROG = "scripts/import-mail"
IMPORT_DIR = "/run/mailhost-import"  # root only: the imapc configuration with the password
CA_FILE = "/etc/ssl/certs/ca-certificates.crt"  # the host's CAs (Debian and Ubuntu)
POLL_SECONDS = 2


class Refused(Exception):
    """A bad argument: one line naming the field, the value and what is expected."""


@dataclass(frozen=True)
class OldServer:
    """Where the mail comes from: an IMAP server over TLS (IMAPS) and the login there."""

    host: str
    port: int
    user: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"imaps://{host}:{self.port}"


def imaps_url(text: str) -> tuple[str, int]:
    """(host, port) of imaps://HOST[:PORT]; ValueError saying what is expected."""
    expected = ("expected imaps://HOST[:PORT], the old provider's IMAP server with TLS from "
                "the start (port 993 if not given)")
    try:
        parts = urlsplit(text.strip())
        port = parts.port or 993
    except ValueError:
        raise ValueError(expected) from None
    if parts.scheme.lower() != "imaps" or not parts.hostname:
        raise ValueError(expected)
    if parts.username or parts.password or parts.query:
        raise ValueError("expected no user or password in the URL: --user names the login, "
                         "the password comes from the secrets file or a prompt")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError(expected + "; nothing after the port")
    try:
        host = str(ipaddress.ip_address(parts.hostname))
    except ValueError:
        try:
            host = domain_name(parts.hostname)
        except ValueError as error:
            raise ValueError(f"{expected} ({error})") from None
    return host, port


def parse_arguments(argv) -> argparse.Namespace:
    parser = arguments(PROG, __doc__)
    parser.add_argument("address", help="the mailbox on the host, e.g. alice@example.com")
    parser.add_argument("--from", dest="source", required=True, metavar="URL",
                        help="the old provider's IMAP server: imaps://HOST[:PORT]")
    parser.add_argument("--user", required=True, help="the login there, e.g. alice@old.example")
    parser.add_argument("--json", action="store_true", help="the counts at the end as JSON")
    return parser.parse_args(argv)


def checked(args: argparse.Namespace) -> tuple[str, OldServer]:
    """The local address and the old server, validated (Refused: one line)."""
    try:
        address = email_address(args.address)
    except ValueError as error:
        raise Refused(f"address = {args.address!r}: {error}") from None
    try:
        host, port = imaps_url(args.source)
    except ValueError as error:
        shown = args.source if "@" not in args.source else "***"  # may hold a password
        raise Refused(f"--from = {shown!r}: {error}") from None
    try:
        user = email_address(args.user, foreign=True)
    except ValueError as error:
        raise Refused(f"--user = {args.user!r}: {error} (the login at the old provider)") \
            from None
    return address, OldServer(host, port, user)


def host_of(hosts: dict, address: str, inventory: str) -> str:
    """The inventory host whose mailbox ``address`` is (Refused when none is)."""
    owners = [name for name, settings in hosts.items()
              if settings.mail_manage_host and address in settings.mail_users]
    if not owners:
        users = sorted({u for s in hosts.values() for u in s.mail_users})
        raise Refused(f"address = {address!r}: expected a mailbox of a host of {inventory} "
                      f"(its mail_users: {', '.join(users) or 'none'})")
    return owners[0]


def old_password(settings, address: str) -> Secret:
    """From the environment or the secrets file, else asked for on the terminal."""
    found = import_password(settings, address)
    if found is not None:
        return found
    if not sys.stdin.isatty():
        raise Refused(f"password: none for {address}: put it under [import_passwords] as "
                      f'"{address}" = "..." in {settings.secrets_file}, export '
                      f"{import_password_variable(address)}, or run in a terminal to be asked")
    typed = getpass.getpass(f"the old provider's password for {address}: ")
    if not typed or any(ord(c) < 32 or ord(c) == 127 for c in typed):
        raise Refused("password: expected text without control characters")
    return Secret(typed)


def dovecot_quoted(value: str) -> str:
    """A value in a Dovecot configuration file: double-quoted, backslash and quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def imapc_config(server: OldServer, password: Secret, version: tuple[int, int] = (2, 3)) -> str:
    """doveadm's configuration for this import: the host's own, plus imapc's (Dovecot
    ``version``: 2.4 verifies the certificate by default and fetches sizes and headers as
    2.3's imapc_features asks; its file must name its syntax first)."""
    new = version >= (2, 4)
    return (
        ("dovecot_config_version = 2.4.0\n" if new else "")
        + "# scripts/import-mail: removed when the import ends\n"
        "!include /etc/dovecot/dovecot.conf\n"
        f"imapc_host = {server.host}\n"
        f"imapc_port = {server.port}\n"
        "imapc_ssl = imaps\n"
        + ("ssl_client_require_valid_cert = yes\n" if new else "imapc_ssl_verify = yes\n")
        + f"ssl_client_ca_file = {CA_FILE}\n"
        f"imapc_user = {dovecot_quoted(server.user)}\n"
        f"imapc_password = {dovecot_quoted(password.reveal())}\n"
        + ("" if new else "imapc_features = rfc822.size fetch-headers\n")
        + "mail_prefetch_count = 20\n"
        "# dsync needs both sides to show folders with one separator: imapc's is the old\n"
        "# server's (\"/\" at most providers); the Maildir keeps its own on disk\n"
        "namespace inbox {\n"
        "  separator = /\n"
        "}\n"
    )


class Remote:
    """Commands on the host over pyinfra's SSH connection; what they are given on stdin
    (the configuration with the password) never shows in a process list."""

    def __init__(self, host):
        client = getattr(host.connector, "client", None)
        if client is None:
            raise Refused(f"host = {host.name!r}: expected a host reached over SSH")
        self.client = client

    def run(self, command: str, stdin: str = "", timeout: float = 600) -> tuple[int, str, str]:
        channel = self.client.get_transport().open_session(timeout=30)
        channel.settimeout(timeout)
        channel.exec_command(command)
        if stdin:
            channel.sendall(stdin.encode())
        channel.shutdown_write()
        out, err = bytearray(), bytearray()
        while True:
            if channel.recv_ready():
                out += channel.recv(65536)
            elif channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            elif channel.exit_status_ready() and not channel.recv_ready() \
                    and not channel.recv_stderr_ready():
                break
            else:
                time.sleep(0.05)
        code = channel.recv_exit_status()
        channel.close()
        return code, out.decode(errors="replace"), err.decode(errors="replace")

    def start(self, command: str):
        """A long command whose stdin stays open: when this process goes away, the channel
        closes and the command's watchdog stops what it started."""
        channel = self.client.get_transport().open_session(timeout=30)
        channel.exec_command(command)
        return channel


def parse_status(text: str) -> dict[str, tuple[int, int]]:
    """``doveadm -f tab mailbox status -t 'messages vsize'``: {folder: (messages, bytes)}."""
    lines = text.splitlines()
    if not lines:
        return {}
    header = lines[0].split("\t")
    found = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t"), strict=False))
        if "mailbox" in row:
            found[row["mailbox"]] = (int(row.get("messages") or 0), int(row.get("vsize") or 0))
    return found


class Importer:
    """One import into ``address`` on the host ``remote``."""

    def __init__(self, remote: Remote, address: str, server: OldServer):
        self.remote, self.address, self.server = remote, address, server
        self.stopping = False  # set by SIGINT/SIGTERM: the copy stops at its next look
        self.version = (2, 3)  # the host's Dovecot (check_dovecot)
        stem = address.replace("@", "_at_")
        self.config = f"{IMPORT_DIR}/{stem}.conf"
        self.log = f"{IMPORT_DIR}/{stem}.log"

    def doveadm(self, *args: str, config: bool = False) -> str:
        words = ["doveadm", *(["-c", self.config] if config else []), *args]
        return " ".join(shlex.quote(w) for w in words)

    def status(self, old: bool = False) -> dict[str, tuple[int, int]]:
        """Each folder's messages and bytes: here, or at the old provider (``old``)."""
        storage = (["mail_driver=imapc", "mail_path="] if self.version >= (2, 4)
                   else ["mail_location=imapc:"])
        extra = [word for setting in storage for word in ("-o", setting)] if old else []
        command = self.doveadm(*extra, "-f", "tab", "mailbox", "status", "-u", self.address,
                               "messages vsize", "*", config=old)
        code, out, err = self.remote.run(command)
        if code != 0:
            where = f"the old provider {self.server.url}" if old else "the mailbox here"
            raise RuntimeError(f"could not read {where}: {err.strip() or out.strip()}")
        return parse_status(out)

    def check_dovecot(self) -> None:
        """The host's Dovecot is one whose settings this command writes (2.3 or 2.4); its
        version kept; RuntimeError if not."""
        code, out, _ = self.remote.run("dovecot --version")
        version = tuple(int(n) for n in re.findall(r"\d+", out)[:2]) if code == 0 else ()
        if version not in ((2, 3), (2, 4)):
            raise RuntimeError(f"the host's Dovecot is {out.split()[0] if out else 'missing'}: "
                               "expected 2.3 or 2.4, whose imapc settings this command writes")
        self.version = version

    def write_config(self, password: Secret) -> None:
        command = (f"umask 077 && mkdir -p {IMPORT_DIR} && chmod 700 {IMPORT_DIR} && "
                   f"cat > {shlex.quote(self.config)}")
        code, _, err = self.remote.run(command, stdin=imapc_config(self.server, password,
                                                                   self.version))
        if code != 0:
            raise RuntimeError(f"could not write {self.config} on the host: {err.strip()}")

    def remove_config(self) -> None:
        self.remote.run(f"rm -f {shlex.quote(self.config)}")

    def sync_command(self) -> str:
        """doveadm in the background; a watchdog stops it when the controller's end of the
        channel closes (this command interrupted or killed); the configuration is removed
        when doveadm ends."""
        sync = self.doveadm("sync", "-1", "-R", "-u", self.address, "imapc:", config=True)
        return (f"exec 3<&0; {sync} </dev/null >{shlex.quote(self.log)} 2>&1 & pid=$!; "
                "echo \"pid $pid\"; "
                "(cat <&3 >/dev/null 2>&1; kill $pid 2>/dev/null) & "
                f"wait $pid; code=$?; rm -f {shlex.quote(self.config)}; "
                "echo \"exit $code\"")

    def sync(self, total: int, before: int, progress) -> int:
        """Run doveadm sync, showing progress; its exit status."""
        channel = self.remote.start(self.sync_command())
        output, shown = "", None
        try:
            while not channel.exit_status_ready():
                for _ in range(POLL_SECONDS * 10):
                    if self.stopping:
                        raise KeyboardInterrupt
                    time.sleep(0.1)
                while channel.recv_ready():
                    output += channel.recv(4096).decode(errors="replace")
                here = sum(m for m, _ in self.status().values())
                if here != shown:
                    progress(here - before, total)
                    shown = here
            while channel.recv_ready():
                output += channel.recv(4096).decode(errors="replace")
        finally:
            channel.close()  # closes the watchdog's stdin: doveadm stops if still running
        for line in output.splitlines():
            if line.startswith("exit "):
                return int(line.split()[1])
        return channel.recv_exit_status() or 1

    def log_tail(self) -> str:
        _, out, _ = self.remote.run(f"tail -n 5 {shlex.quote(self.log)}")
        return out.strip()


def megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def summary(server: OldServer, address: str, old: dict, before: dict, after: dict) -> dict:
    def total(folders, index):
        return sum(v[index] for v in folders.values())

    return {
        "address": address,
        "from": server.url,
        "user": server.user,
        "old": {"folders": len(old), "messages": total(old, 0), "bytes": total(old, 1)},
        "imported": {"folders": len(set(after) - set(before)),
                     "messages": total(after, 0) - total(before, 0),
                     "bytes": total(after, 1) - total(before, 1)},
        "here": {"folders": len(after), "messages": total(after, 0), "bytes": total(after, 1)},
    }


def render(result: dict) -> str:
    old, new, here = result["old"], result["imported"], result["here"]
    return (f"{result['address']}: imported {new['messages']} messages "
            f"({megabytes(new['bytes'])}), {new['folders']} new folders, from "
            f"{result['from']} ({result['user']})\n"
            f"  the old mailbox: {old['folders']} folders, {old['messages']} messages, "
            f"{megabytes(old['bytes'])}\n"
            f"  the mailbox here: {here['folders']} folders, {here['messages']} messages, "
            f"{megabytes(here['bytes'])}")


def run_import(importer: Importer, password: Secret, as_json: bool) -> int:
    def progress(done: int, total: int) -> None:
        print(f"  {max(done, 0)}/{total} messages copied", file=sys.stderr, flush=True)

    importer.check_dovecot()
    importer.write_config(password)
    try:
        before = importer.status()
        old = importer.status(old=True)
        total = sum(m for m, _ in old.values())
        print(f"{importer.address}: copying {len(old)} folders, {total} messages "
              f"({megabytes(sum(b for _, b in old.values()))}) from {importer.server.url}",
              file=sys.stderr, flush=True)
        code = importer.sync(total, sum(m for m, _ in before.values()), progress)
        after = importer.status()
    finally:
        importer.remove_config()
    result = summary(importer.server, importer.address, old, before, after)
    print(json.dumps(result, indent=2) if as_json else render(result))
    if code != 0:
        print(f"{PROG}: doveadm sync exited {code}: {importer.log_tail()}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    args = parse_arguments(argv)
    # reading the inventory patches the process with gevent (pyinfra's command line does it
    # first); this module's own imports read nothing over the network before that
    warnings.filterwarnings("ignore", message="Monkey-patching ssl after ssl")
    try:
        address, server = checked(args)
        inventory = read_inventory(args.inventory)
        hosts = per_host(inventory, load_settings)
        name = host_of(hosts, address, args.inventory)
        password = old_password(hosts[name], address)
        importer = Importer(Remote(connect_host(inventory, name)), address, server)
    except (Refused, PyinfraError, SettingsError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2

    def stop(signum, frame):  # raising here would raise in gevent's hub, not in the copy
        importer.stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        return run_import(importer, password, args.json)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; doveadm stopped on the host. Run it again to go on: "
              "what was copied stays, nothing is copied twice", file=sys.stderr)
        return 130
    except RuntimeError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
