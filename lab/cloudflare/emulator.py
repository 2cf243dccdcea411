"""A stateful local emulator of the Cloudflare API v4 (zones and DNS records), stdlib only.

It serves the unmodified official ``cloudflare`` SDK pointed at it with
``Cloudflare(api_token=TOKEN, base_url=emulator.base_url)``. Three parts:
``state`` (zones, records, validation, tokens, faults, counters),
``http`` (the HTTP routes) and ``mirror`` (the write-through to a real
DNS server by RFC 2136). Tests seed and inspect state through the Python API (``add_record``,
``records``), inject faults and read counters; the same is reachable over HTTP under
``/__emulator/`` (no auth, loopback only).

Run it alone::

    python -m lab.cloudflare.emulator --listen 127.0.0.1:8787 \\
        --zone example.test --token TOKEN [--state FILE]
"""

from __future__ import annotations

import argparse
import os
import time

from lab.cloudflare.http import serve
from lab.cloudflare.mirror import Rfc2136Mirror
from lab.cloudflare.state import API_PREFIX, ApiError, CloudflareState, Fault
from lab.common import StartStop

__all__ = ["ApiError", "CloudflareEmulator", "Fault", "Rfc2136Mirror"]


class CloudflareEmulator(StartStop, CloudflareState):
    """The emulator: its state (CloudflareState) served over HTTP in a thread."""

    _server = None

    def start(self) -> CloudflareEmulator:
        self._server = serve(self, self.host, self.port)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to give the SDK as ``base_url``."""
        return self.url + API_PREFIX


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8787", help="HOST:PORT")
    parser.add_argument("--zone", action="append", default=[], help="zone to serve (repeat)")
    parser.add_argument("--token", default=os.environ.get("CLOUDFLARE_EMULATOR_TOKEN"),
                        help="API token to accept (or env CLOUDFLARE_EMULATOR_TOKEN)")
    parser.add_argument("--state", help="JSON file that keeps the state across restarts")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token (or CLOUDFLARE_EMULATOR_TOKEN) is required")
    host, _, port = args.listen.rpartition(":")
    emulator = CloudflareEmulator(
        args.token, zones=args.zone or ["example.test"], host=host or "127.0.0.1",
        port=int(port), state_file=args.state,
    )
    emulator.start()
    print(f"cloudflare emulator on {emulator.base_url} zones: "
          + ", ".join(z["name"] for z in emulator.zones.values()), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        emulator.stop()


if __name__ == "__main__":
    main()
