"""A real browser for the lab's tests: Debian's headless Chromium, driven over the DevTools
protocol on a pipe (``--remote-debugging-pipe``: JSON messages ending in NUL on the browser's
file descriptors 3 and 4), with the standard library only.

Trust and names, as a user's browser would have them, nothing blanket:
- the lab's ACME root (Pebble's) is the only certificate added, as a CA, to a throwaway NSS
  database in the browser's own HOME (``certutil``, Debian's libnss3-tools), which Chromium
  on Linux reads for locally trusted roots; any other certificate error stays an error;
- lab names resolve to the lane's addresses by ``--host-resolver-rules`` (the controller has
  no resolver for them).
Chromium runs as root here, so it needs ``--no-sandbox`` (its sandbox refuses root).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

BROWSER = shutil.which("chromium") or "/usr/bin/chromium"


def nss_trusting(home: Path, root_ca: str) -> None:
    """HOME/.pki/nssdb: a new NSS database trusting ROOT_CA (a PEM file) to issue server
    certificates, and nothing else."""
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True, exist_ok=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True,
                   capture_output=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", "lab ACME root", "-t", "C,,",
                    "-i", root_ca], check=True, capture_output=True)


class Browser:
    """One headless Chromium and one page (tab) of it."""

    def __init__(self, home: Path, root_ca: str, names: dict[str, str],
                 size: tuple[int, int] = (1280, 900)):
        home.mkdir(parents=True, exist_ok=True)
        nss_trusting(home, root_ca)
        rules = ",".join(f"MAP {name} {address}" for name, address in names.items())
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def descriptors():  # in the child: the pipe's ends as its fds 3 and 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.process = subprocess.Popen(
            [BROWSER, "--headless=new", "--no-sandbox", "--remote-debugging-pipe",
             f"--user-data-dir={home / 'profile'}", "--no-first-run", "--disable-gpu",
             "--disable-extensions", "--disable-background-networking", "--disable-sync",
             f"--host-resolver-rules={rules}", f"--window-size={size[0]},{size[1]}",
             "about:blank"],
            env={**os.environ, "HOME": str(home)}, stdout=subprocess.DEVNULL,
            stderr=open(home / "chromium.log", "wb"), close_fds=False,  # noqa: SIM115
            preexec_fn=descriptors)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next = 0
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        self.send("Page.enable", session=True)
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=size[0],
                  height=size[1], deviceScaleFactor=1, mobile=False)

    def send(self, method: str, session: bool = False, timeout: float = 60, **params) -> dict:
        """One DevTools command (on the page's session when ``session``); its result."""
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._next:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer["result"]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError(f"{method}: no answer from Chromium in {timeout} s")
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise RuntimeError(f"{method}: Chromium closed its pipe")
            self._buffer += chunk

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (awaited when a promise)."""
        result = self.send("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def type_into(self, selector: str, text: str) -> None:
        """TEXT typed into the page's field SELECTOR (focused, then Input.insertText: as from a
        keyboard; the text is in no expression, so in no error message either)."""
        self.evaluate(f"document.querySelector({selector!r}).focus(); true")
        self.send("Input.insertText", session=True, text=text)

    def navigate(self, url: str) -> None:
        result = self.send("Page.navigate", session=True, url=url)
        if result.get("errorText"):
            raise RuntimeError(f"{url}: {result['errorText']}")

    def wait_for(self, expression: str, timeout: float = 60, every: float = 0.5,
                 meanwhile: str | None = None):
        """Until EXPRESSION is truthy in the page (its value); MEANWHILE is run between tries."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError:  # the page is being replaced (a navigation)
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true after {timeout} s: {expression}")
            if meanwhile:
                try:
                    self.evaluate(meanwhile)
                except RuntimeError:
                    pass
            time.sleep(every)

    def screenshot(self, path: Path) -> bytes:
        """The page as it looks now, as PNG, written to PATH."""
        data = base64.b64decode(self.send("Page.captureScreenshot", session=True,
                                          format="png")["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def close(self) -> None:
        """Chromium closed (Browser.close), or terminated by its PID."""
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(timeout=10)
        os.close(self._write)
        os.close(self._read)
