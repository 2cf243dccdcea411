"""The lab's relay (smarthost) for a VPS whose outbound port 25 is blocked: relay.example.net.

An aiosmtpd server on port 587 in the receiver's namespace, on addresses of its own
(RELAY4, RELAY6). It offers STARTTLS with a lab CA certificate (the VPS trusts the lab CA:
``trust_lab_ca``), requires AUTH PLAIN or LOGIN after TLS before MAIL (530 without it,
535 for a wrong password), and hands every accepted message, unchanged, to the lab receiver's
port 25 from RELAY4: the receiver checks SPF against the relay's address (the relay's SPF
record, which the sender's SPF includes) and DKIM as the sender signed it. Nothing is queued:
the client gets the receiver's answer (or 451 if the receiver cannot be reached)::

    ip netns exec mhlab0-rx python -m lab.relay --listen 198.51.100.30 \\
        --listen 2001:db8::30 --next-hop 198.51.100.20 --source 198.51.100.30 \\
        --cert relay.pem --key relay.key --ca-file lab-ca.pem --secrets .lab/secrets.toml

The login is RELAY_USER; the password is ``relay_password`` in the lab's secrets file (the
same key the deploy reads for ``relay_host``), never on a command line.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import secrets
import signal
import smtplib
import ssl
import sys
import tomllib
from pathlib import Path

from . import certs
from .common import (
    LANE,
    PREFIX_LEN4,
    PREFIX_LEN6,
    Paths,
    Proc,
    accepts_connections,
    run,
    spawn,
    wait_for,
)

RELAY4, RELAY6 = LANE.ipv4(30), LANE.ipv6(30)
RELAY_HOSTNAME = "relay.example.net"  # A, AAAA, PTR and the SPF record senders include
RELAY_PORT = 587
RELAY_USER = "mailhost-lab"
RELAY_SPF = f"v=spf1 ip4:{RELAY4} ip6:{RELAY6} -all"


class RelayHandler:
    """aiosmtpd handler: forward each message, as received, to one next hop."""

    def __init__(self, hostname: str, next_hop: str, next_hop_port: int, source: str,
                 ca_file: str | None):
        self.hostname = hostname
        self.next_hop = next_hop
        self.next_hop_port = next_hop_port
        self.source = source
        self.ca_file = ca_file

    async def handle_DATA(self, server, session, envelope):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.forward, envelope)

    def forward(self, envelope) -> str:
        """Send the message to the next hop; return the SMTP reply for our client."""
        options = [o for o in envelope.mail_options
                   if o.upper().startswith("BODY=") or o.upper() == "SMTPUTF8"]
        try:
            with smtplib.SMTP(self.next_hop, self.next_hop_port, local_hostname=self.hostname,
                              source_address=(self.source, 0), timeout=30) as client:
                client.ehlo()
                if client.has_extn("starttls"):
                    client.starttls(context=ssl.create_default_context(cafile=self.ca_file))
                    client.ehlo()
                refused = client.sendmail(envelope.mail_from, envelope.rcpt_tos,
                                          envelope.original_content, mail_options=options)
        except smtplib.SMTPRecipientsRefused as error:
            code, text = next(iter(error.recipients.values()))
            return _reply(code, text)
        except smtplib.SMTPResponseException as error:
            return _reply(error.smtp_code, error.smtp_error)
        except (OSError, smtplib.SMTPException) as error:
            return f"451 4.4.1 relay: next hop {self.next_hop} unreachable: {error}"
        print(f"relay: from {envelope.mail_from} to {envelope.rcpt_tos} via {self.next_hop} "
              f"({len(refused)} refused)", flush=True)
        return "250 2.0.0 OK relayed"


def _reply(code: int, text: bytes | str) -> str:
    text = text.decode(errors="replace") if isinstance(text, bytes) else text
    return f"{code} relay: next hop said: {' '.join(text.split())}"


def authenticator(user: str, password: str):
    """aiosmtpd authenticator: PLAIN/LOGIN with exactly this user and password."""
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def check(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword)
              and hmac.compare_digest(auth_data.login, user.encode())
              and hmac.compare_digest(auth_data.password, password.encode()))
        return AuthResult(success=ok, handled=False)
    return check


def server_factory(handler: RelayHandler, tls_context: ssl.SSLContext, user: str,
                   password: str):
    """A protocol factory for loop.create_server: STARTTLS, then AUTH, then MAIL."""
    from aiosmtpd.smtp import SMTP

    def protocol() -> SMTP:
        return SMTP(handler, hostname=handler.hostname, ident="ESMTP mailhost lab relay",
                    tls_context=tls_context, require_starttls=True,
                    authenticator=authenticator(user, password), auth_required=True,
                    auth_require_tls=True)
    return protocol


async def serve(args: argparse.Namespace) -> None:
    password = tomllib.loads(Path(args.secrets).read_text())["relay_password"]
    tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_context.load_cert_chain(args.cert, args.key)
    handler = RelayHandler(args.hostname, args.next_hop, args.next_hop_port, args.source,
                           args.ca_file)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(server_factory(handler, tls_context, args.user, password),
                                      host=args.listen, port=args.port)
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    print(f"relay {args.hostname} listening on "
          + ", ".join(f"[{a}]:{args.port}" for a in args.listen)
          + f", forwarding to {args.next_hop}:{args.next_hop_port} from {args.source}", flush=True)
    await stopping.wait()
    server.close()
    await server.wait_closed()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", action="append", required=True, help="address (repeat)")
    parser.add_argument("--port", type=int, default=RELAY_PORT)
    parser.add_argument("--hostname", default=RELAY_HOSTNAME)
    parser.add_argument("--next-hop", required=True, help="the receiver's address")
    parser.add_argument("--next-hop-port", type=int, default=25)
    parser.add_argument("--source", required=True, help="the address to deliver from")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ca-file", help="CAs the next hop's certificate must lead to")
    parser.add_argument("--user", default=RELAY_USER)
    parser.add_argument("--secrets", required=True, help="TOML file with relay_password")
    asyncio.run(serve(parser.parse_args(sys.argv[1:] if argv is None else argv)))


# --- in the lab (scripts/lab up) ---

def ensure_password(paths: Paths) -> None:
    """relay_password in the lab's secrets file (generated once; top-level keys go first)."""
    text = paths.secrets_file.read_text()
    if "relay_password" not in text:
        paths.secrets_file.write_text(f'relay_password = "{secrets.token_urlsafe(24)}"\n' + text)


def trust_lab_ca(rootfs: Path, ca_file: Path, name: str = "mailhost-lab-ca") -> None:
    """Make a VPS root filesystem trust a lab CA (the lab CA; Pebble's issuing root), as a real
    VPS trusts the public CAs: in /usr/local/share/ca-certificates/NAME.crt (kept by
    update-ca-certificates) and in the bundle that Postfix's smtp_tls_CAfile names."""
    pem = ca_file.read_text()
    local = rootfs / f"usr/local/share/ca-certificates/{name}.crt"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(pem)
    bundle = rootfs / "etc/ssl/certs/ca-certificates.crt"
    if bundle.exists() and pem not in bundle.read_text():
        with open(bundle, "a") as file:
            file.write(pem)


def start(paths: Paths, exec_prefix: list[str], receiver: str, device: str = "eth0") -> Proc:
    """Add the relay's addresses to the namespace's ``device``, start the relay there
    (forwarding to ``receiver``:25); return its PID once it answers on both addresses."""
    run(*exec_prefix, "ip", "addr", "replace", f"{RELAY4}/{PREFIX_LEN4}", "dev", device)
    run(*exec_prefix, "ip", "-6", "addr", "replace", f"{RELAY6}/{PREFIX_LEN6}", "dev", device,
        "nodad")
    ensure_password(paths)
    cert, key = certs.ensure_leaf(paths.ca, "relay", [RELAY_HOSTNAME], [RELAY4, RELAY6],
                                  paths.ca)
    log = paths.logs / "relay.log"
    proc = spawn([*exec_prefix, sys.executable, "-m", "lab.relay",
                  "--listen", RELAY4, "--listen", RELAY6, "--next-hop", receiver,
                  "--source", RELAY4, "--cert", str(cert), "--key", str(key),
                  "--ca-file", str(paths.ca / "lab-ca.pem"),
                  "--secrets", str(paths.secrets_file)], log,
                 cwd=Path(__file__).resolve().parents[1])
    wait_for(lambda: accepts_connections(RELAY4, RELAY_PORT)
             and accepts_connections(RELAY6, RELAY_PORT), 20, "relay", proc=proc, log=log)
    return proc


if __name__ == "__main__":
    main()
