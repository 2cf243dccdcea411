"""The lab is its own package: the product (mailhost/, deploy.py, inventory/prod.py) never
imports it, and nothing of it is left inside the product package."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = [ROOT / "deploy.py", ROOT / "group_data" / "all.py", ROOT / "inventory" / "prod.py",
           *sorted((ROOT / "mailhost").rglob("*.py"))]


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in PATH names (absolute ones)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_no_product_module_imports_the_lab():
    offenders = {str(path.relative_to(ROOT)): sorted(
                     name for name in imported_modules(path)
                     if name == "lab" or name.startswith("lab."))
                 for path in PRODUCT}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_lab_is_not_inside_the_product_package():
    assert not (ROOT / "mailhost" / "lab").exists()
    assert (ROOT / "lab" / "__main__.py").is_file()
    assert (ROOT / "lab" / "cloudflare" / "emulator.py").is_file()


def test_the_finder_sees_an_import_of_the_lab(tmp_path):
    """The check above could not pass by reading nothing."""
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom lab.common import HOST4\nimport lab.vps as vps\n")
    assert {"lab.common", "lab.vps"} <= imported_modules(sample)
