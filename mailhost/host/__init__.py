"""The host half of a deploy: one module per component, each install -> configure -> activate."""

from pathlib import Path

from pyinfra.operations import files

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"


def template(name: str) -> str:
    """The path of a template under templates/."""
    return str(TEMPLATES / name)


def write_template(src: str, dest: str, settings, mode: str = "644", **data) -> bool:
    """Render templates/SRC to DEST on the host (the settings as ``s``); whether it changes."""
    return files.template(name=dest, src=template(src), dest=dest, mode=mode, s=settings,
                          **data).will_change
