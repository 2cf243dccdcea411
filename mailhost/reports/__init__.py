"""DMARC aggregate reports (RFC 7489 appendix C) and TLS-RPT reports (RFC 8460), read for you.

``scripts/reports INVENTORY [--json] [--days N] [--min-messages N]`` logs in over IMAPS (993,
the host's certificate verified) as each mail user that a ``dmarc_rua`` or ``tlsrpt_rua``
address of a mail domain reaches (the address itself, or an alias of it), with that user's
password from the secrets file, reads the report messages of the last N days (INBOX and
Junk, read-only), parses them and prints per domain: the period, each sending source (IP, PTR,
whether it is this host, an ``spf_include`` or unknown), message counts, SPF/DKIM/alignment
pass rates, TLS sessions and failures by type, and whether raising ``dmarc_policy`` to the
next step is safe. Reports that fail to parse are listed, never dropped.

Parsing is our own, on the standard library (zipfile, gzip, xml.etree, json): the two formats
are small and fixed by their RFCs, and parsedmarc (11.x) brings about a dozen packages (lxml,
httpx, mailsuite, maxminddb, publicsuffixlist...) and reverse-DNS lookups of its own for the
same result.

The summary is also written to ``<secrets_dir>/reports-summary.json`` on the controller, where
the deploy reads it to warn when ``dmarc_policy`` is raised while a legitimate source (this
host, an ``spf_include``) still sends unaligned mail.
"""
