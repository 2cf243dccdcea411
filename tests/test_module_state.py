"""No module-level mutable state in the product: what a run computes lives in the run's objects
(run.MailRun, keys.steps.KeySteps, pyinfra's state), never in a module's globals.

The rule, for every module of the mailhost package, at module level (also inside a top-level
``if``/``try``/``with``):
- no list, dict or set display or comprehension, and no call of a mutable constructor (list,
  dict, set, defaultdict...): a constant is a tuple, a frozenset, a string, a number or a
  MappingProxyType;
- a name bound to any other call is UPPER_CASE (a constant built once, such as an Mta profile or
  a Path), or is one of the few frozen things named in FROZEN_CALLS (a TypeVar...);
- no augmented assignment (``X += ...``) and, anywhere, no ``global`` statement.
deploy.py is not a module of the package but pyinfra's deploy script, run once per host: its
top-level names are the story's local variables.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTABLE_DISPLAYS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
MUTABLE_CALLS = frozenset({"list", "dict", "set", "bytearray", "defaultdict", "OrderedDict",
                           "Counter", "deque", "SimpleNamespace"})
FROZEN_CALLS = frozenset({"TypeVar", "NewType"})


def called_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        function = node.func
        return function.attr if isinstance(function, ast.Attribute) else getattr(
            function, "id", None)
    return None


def top_level(tree: ast.Module):
    """The module-level statements, those inside top-level if/try/with included."""
    pending = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            pending += [*node.body, *getattr(node, "orelse", []),
                        *getattr(node, "finalbody", []),
                        *[s for h in getattr(node, "handlers", []) for s in h.body]]
        else:
            yield node


def offences(source: str, where: str) -> list[str]:
    tree = ast.parse(source, where)
    found = [f"{where}:{node.lineno}: global {', '.join(node.names)}"
             for node in ast.walk(tree) if isinstance(node, ast.Global)]
    for node in top_level(tree):
        if isinstance(node, ast.AugAssign):
            found.append(f"{where}:{node.lineno}: augmented assignment at module level")
            continue
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        value, call = node.value, called_name(node.value)
        values = value.elts if isinstance(value, ast.Tuple) and len(names) > 1 else [value]
        for item in values:
            if isinstance(item, MUTABLE_DISPLAYS) or called_name(item) in MUTABLE_CALLS:
                found.append(f"{where}:{node.lineno}: {', '.join(names)}: a mutable value")
        if call is not None and call not in FROZEN_CALLS and call not in MUTABLE_CALLS and \
                not all(name.isupper() or name.startswith("__") for name in names):
            found.append(f"{where}:{node.lineno}: {', '.join(names)}: bound to {call}(): "
                         "state, unless a constant (then UPPER_CASE)")
    return found


def test_no_product_module_keeps_mutable_state():
    found = []
    for path in sorted((ROOT / "mailhost").rglob("*.py")):
        found += offences(path.read_text(), str(path.relative_to(ROOT)))
    assert found == []


def test_the_rule_sees_planted_state():
    """The check above could not pass by reading nothing."""
    planted = (
        "import collections\n"
        "_steps: dict[str, int] = {}\n"
        "SEEN = set()\n"
        "cache = collections.defaultdict(list)\n"
        "current = load()\n"
        "if True:\n    PACKAGES = ['postfix']\n"
        "def remember(x):\n    global current\n    current = x\n"
        "COUNT = 0\nCOUNT += 1\n"
        "# allowed\n"
        "UNITS = ('postfix',)\nKINDS = frozenset({'rsa'})\nPOSTFIX = served_by(1)\n"
        "T = TypeVar('T')\nReader = Callable[[str], str]\nNAME = 'x'\n"
    )
    assert sorted(int(line.split(":")[1]) for line in offences(planted, "m.py")) == [
        2, 3, 4, 5, 7, 9, 12]
