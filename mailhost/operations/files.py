"""Files on the host: a text, a rendered template, a directory, each written only when it is not
in place already (facts.read_paths read it); a changed file owes the restarts first
(operations/restarts)."""

from __future__ import annotations

import hashlib
from io import StringIO
from pathlib import Path

from pyinfra.api.util import get_template
from pyinfra.operations import files

from mailhost import paths
from mailhost.facts import in_place
from mailhost.operations import restarts

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"


def template(name: str) -> str:
    """The path of a template under templates/."""
    return str(TEMPLATES / name)


def render(src: str, settings, **data) -> str:
    """templates/SRC rendered as pyinfra renders it, with the settings as ``s`` and the host
    paths as ``p``."""
    return get_template(template(src)).render(s=settings, p=paths, **data)


def put_text(dest: str, content: str, mode: str = "644", name: str | None = None) -> bool:
    """DEST on the host holds CONTENT with MODE; whether it changes (the restarts-owed marker
    goes first: a run stopped after the write still restarts what reads it next time)."""
    if in_place(dest, "f", mode, sha256=hashlib.sha256(content.encode()).hexdigest()):
        return False
    restarts.owe()
    return files.put(name=name or dest, src=StringIO(content), dest=dest,
                     mode=mode).will_change


def write_template(src: str, dest: str, settings, mode: str = "644", **data) -> bool:
    """Render templates/SRC to DEST on the host (see ``render``); whether it changes."""
    return put_text(dest, render(src, settings, **data), mode)


def directory(path: str, user: str | None = None, group: str | None = None,
              mode: str | None = None, name: str | None = None) -> None:
    """A directory with that owner and mode (files.directory, unless already in place)."""
    if not in_place(path, "d", mode, user, group):
        files.directory(name=name or path, path=path, user=user, group=group, mode=mode)
