"""The host half of a deploy: one module per component, each install -> configure -> activate."""

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"


def template(name: str) -> str:
    """The path of a template under templates/."""
    return str(TEMPLATES / name)
