"""mailhost.settings is a package low in the layers: its modules stay small, and what it imports
of mailhost (the record and SPF helpers) never imports the settings back."""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import mailhost.settings

PACKAGE = Path(mailhost.settings.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_what_the_settings_import_imports_no_settings():
    code = ("import sys, mailhost.settings; "
            "print(*sorted(m for m in sys.modules if m.startswith('mailhost')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    below = [m for m in loaded if m != "mailhost" and not m.startswith("mailhost.settings")]
    assert below, "mailhost.settings imports the record and SPF helpers"
    for module in below:
        path = Path(importlib.util.find_spec(module).origin)
        assert not {m for m in imported_modules(path) if m.startswith("mailhost.settings")}, \
            f"{module} imports mailhost.settings, which imports it"


def test_no_settings_module_over_500_lines():
    lengths = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert {name for name, n in lengths.items() if n > 500} == set(), lengths


def test_the_package_exports_what_the_tree_imports():
    for name in mailhost.settings.__all__:
        assert getattr(mailhost.settings, name) is not None
