"""The product's imports point one way: no cycle, and no import running back up the layers.

The graph is read from the code (ast), every import counted: at the top of a module and inside a
function alike (an import inside a function is still an arrow: it only runs later). An arrow
goes from a module to each product module it names: ``from mailhost.host import units`` names
mailhost.host.units; ``from mailhost.checks import CheckResult`` names mailhost.checks.
"""

from __future__ import annotations

import ast
from fnmatch import fnmatchcase
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top. A module may import its own layer and those below; never one above.
LAYERS = [
    ("values", ["mailhost", "mailhost.settings", "mailhost.settings.*", "mailhost.paths",
                "mailhost.secrets", "mailhost.warmup", "mailhost.dns", "mailhost.dns.*"]),
    ("lookups and keys", ["mailhost.lookup", "mailhost.keys", "mailhost.keys.*"]),
    ("zones: planned and synced", ["mailhost.zones", "mailhost.zones.*"]),
    ("facts and operations", ["mailhost.facts", "mailhost.operations",
                              "mailhost.operations.files", "mailhost.operations.restarts",
                              "mailhost.operations.secret_file", "mailhost.operations.dkim",
                              "mailhost.operations.dns"]),
    ("host", ["mailhost.host", "mailhost.host.*"]),
    # the verification that ends a deploy is the checks' operation
    ("checks and reports", ["mailhost.checks", "mailhost.checks.*", "mailhost.reports",
                            "mailhost.reports.*", "mailhost.operations.verify"]),
    ("run", ["mailhost.run"]),
    ("command lines", ["mailhost.cli", "mailhost.cli.*"]),
    ("deploy", ["deploy"]),
]


def layer_of(module: str) -> int:
    """The layer of a module: an exact name first, else the first pattern that matches."""
    for exact in (True, False):
        for index, (_, patterns) in enumerate(LAYERS):
            for pattern in patterns:
                if (module == pattern) if exact else fnmatchcase(module, pattern):
                    return index
    raise AssertionError(f"{module}: in no layer of tests/test_layers.py; add it to one")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_modules(root: Path) -> dict[str, Path]:
    paths = [root / "deploy.py", *sorted((root / "mailhost").rglob("*.py"))]
    return {module_name(path, root): path for path in paths if path.exists()}


def imports_of(path: Path, modules: set[str], package: str) -> set[str]:
    """The product modules that PATH imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            named = {f"{base}.{alias.name}" for alias in node.names}
            submodules = named & modules
            found |= submodules
            if len(submodules) < len(named):  # a name defined in the module itself
                found.add(base)
    return found & modules


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = product_modules(root)
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = imports_of(path, set(modules), package) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
                  for a, targets in graph.items() for b in targets
                  if layer_of(b) > layer_of(a))


def test_the_product_has_no_import_cycle():
    assert cycles(import_graph(ROOT)) == []


def test_no_import_runs_back_up_the_layers():
    assert upward(import_graph(ROOT)) == []


def test_every_product_module_is_in_a_layer():
    for module in import_graph(ROOT):
        layer_of(module)


def test_the_graph_sees_a_planted_cycle_and_an_upward_import(tmp_path):
    """The checks above could not pass by reading nothing: a cycle made through an import
    inside a function, and a value module importing the run, are both found."""
    package = tmp_path / "mailhost"
    (package / "dns").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "dns" / "__init__.py").write_text("")
    (package / "dns" / "records.py").write_text("from mailhost.run import MailRun\n")
    (package / "run.py").write_text("def load():\n    from mailhost.dns import records\n")
    (tmp_path / "deploy.py").write_text("from mailhost.run import load\n")
    graph = import_graph(tmp_path)
    assert graph["mailhost.run"] == {"mailhost.dns.records"}
    assert cycles(graph) == [["mailhost.dns.records", "mailhost.run"]]
    assert upward(graph) == ["mailhost.dns.records (values) -> mailhost.run (run)"]


def test_the_product_stays_in_small_rooms():
    """At most 8 modules directly in mailhost/ (the rest grouped by concern), none of the
    product's modules over 500 lines (a file that long usually holds two things)."""
    package = ROOT / "mailhost"
    loose = [p.name for p in package.glob("*.py") if p.name != "__init__.py"]
    assert len(loose) <= 8, loose
    lengths = {str(p.relative_to(ROOT)): len(p.read_text().splitlines())
               for p in package.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > 500} == {}
