"""Each fact about the host has one definition: the DKIM record name format in
mailhost/keys/dkim.py, the mailbox root, the TLS directory and the vmail id in mailhost/paths.py
(templates get them as ``p``)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "deploy.py", *sorted((ROOT / "mailhost").rglob("*.py")),
           *sorted((ROOT / "templates").rglob("*")), *sorted((ROOT / "scripts").glob("*"))]


def files_with(pattern: str) -> set[str]:
    found = set()
    for path in SOURCES:
        if path.is_file() and re.search(pattern, path.read_text(errors="replace")):
            found.add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize(("pattern", "home"), [
    (r"_domainkey\.", "mailhost/keys/dkim.py"),
    (r"/var/mail/vhosts", "mailhost/paths.py"),
    (r"/etc/mailhost/tls", "mailhost/paths.py"),
    (r"(?<![\d.:])5000(?![\d])", "mailhost/paths.py"),
])
def test_defined_in_one_module(pattern, home):
    assert files_with(pattern) == {home}


def test_the_mta_is_not_tested_by_name_in_templates():
    """What differs per MTA is on its profile (mailhost.host.mtas), not in a template."""
    assert files_with(r"s\.mta\b") & {str(p.relative_to(ROOT)) for p in SOURCES
                                      if "templates" in p.parts} == set()
