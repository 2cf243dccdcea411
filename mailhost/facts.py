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
