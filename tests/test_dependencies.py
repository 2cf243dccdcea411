"""One dependency list: pyproject.toml is the source, the requirements files pin the same."""

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pins(lines) -> dict[str, str]:
    """name -> version of each ``name==version`` (comments and blank lines skipped)."""
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line)
            assert match, f"not pinned as name==version: {line!r}"
            found[match.group(1).lower()] = match.group(2)
    return found


def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_requirements_pin_what_pyproject_declares():
    declared = project()
    wanted = pins(declared["dependencies"])
    for extra in ("lab", "test"):
        wanted |= pins(declared["optional-dependencies"][extra])
    assert pins((ROOT / "requirements.txt").read_text().splitlines()) == wanted


def test_bench_requirements_pin_the_bench_extra():
    wanted = pins(project()["optional-dependencies"]["bench"])
    assert pins((ROOT / "requirements-bench.txt").read_text().splitlines()) == wanted


def test_every_third_party_import_is_declared():
    """A package imported by mailhost/ is a dependency (import name -> distribution)."""
    distributions = {"dns": "dnspython", "spf": "pyspf", "dkim": "dkimpy", "nacl": "pynacl",
                         "passlib": "libpass",
                     "pyinfra_cli": "pyinfra", "yaml": None, "lexicon": "dns-lexicon"}
    declared = set(pins(project()["dependencies"]))
    for extra in project()["optional-dependencies"].values():
        declared |= set(pins(extra))
    imported = set()
    for path in (ROOT / "mailhost").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported
                   if name not in sys.stdlib_module_names and name not in ("mailhost",)}
    missing = {name for name in third_party
               if distributions.get(name, name.replace("_", "-")) not in declared | {None}}
    assert not missing, f"imported by mailhost/ but not in pyproject.toml: {sorted(missing)}"
