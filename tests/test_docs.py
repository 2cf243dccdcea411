"""The documentation stays true: docs/settings.md has one row per setting of the model (same
default, every allowed value and range), README.md stays a door of at most 300 lines, and every
relative link in README.md and docs/*.md reaches an existing file and heading, and every path of
the repository they name in code (`mailhost/keys/dane.py`) exists: a module moved is a page to
update. Each check is a function that returns what is wrong, shown failing on a planted page."""

import json
import re
import typing
from pathlib import Path

from test_layers import LAYERS

from mailhost.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_PAGE = ROOT / "docs" / "settings.md"
BEGIN, END = "<!-- settings-reference: begin -->", "<!-- settings-reference: end -->"
README_MAX_LINES = 300
REPOSITORY_PATH = re.compile(r"(?:mailhost|templates|tests|lab|scripts|inventory|group_data)/\S*")
# paths the pages name as examples of what you write, not as files of the repository
EXAMPLE_PATHS = {"inventory/mine.py", "mailhost/host/webmail.py"}


def reference_rows(page: str) -> dict[str, list[str]]:
    """The reference table's rows, by setting: {name: [type cell, default cell, what cell]}."""
    table = page.split(BEGIN, 1)[1].split(END, 1)[0]
    rows = {}
    for line in table.splitlines():
        match = re.match(r"\|\s*`([a-z0-9_]+)`\s*\|(.*)\|\s*$", line)
        if match:
            rows[match[1]] = [cell.strip() for cell in re.split(r"(?<!\\)\|", match[2])]
    return rows


def shown(value) -> str:
    """A default as the table writes it: Python's spelling, strings in double quotes."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(shown(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{shown(k)}: {shown(v)}" for k, v in value.items()) + "}"
    return repr(value)


def literal_values(annotation) -> list:
    """The allowed values of a Literal setting (also inside Optional), else []."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [value for arg in typing.get_args(annotation) for value in literal_values(arg)]


def reference_problems(page: str, fields=None) -> list[str]:
    """Everything on which the reference table and the model disagree, one line each."""
    fields = Settings.model_fields if fields is None else fields
    rows = reference_rows(page)
    problems = [f"{name}: a setting of the model, missing from the table"
                for name in fields if name not in rows]
    problems += [f"{name}: in the table, not a setting of the model"
                 for name in rows if name not in fields]
    for name, field in fields.items():
        if name not in rows:
            continue
        kind, default = rows[name][0], rows[name][1]
        wanted = "required" if field.is_required() else f"`{shown(field.default)}`"
        if default != wanted:
            problems.append(f"{name}: the table's default is {default}, the model's {wanted}")
        for value in literal_values(field.annotation):
            if f'"{value}"' not in kind:
                problems.append(f'{name}: the allowed value "{value}" is not in the table')
        low = [m.ge for m in field.metadata if hasattr(m, "ge")]
        high = [m.le for m in field.metadata if hasattr(m, "le")]
        if low and high and not re.search(rf"from {low[0]}\b.*\bto {high[0]}\b", kind):
            problems.append(f"{name}: the range {low[0]} to {high[0]} is not in the table")
    return problems


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: str) -> set[str]:
    found, seen = set(), {}
    for line in page.splitlines():
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            base = slug(match[1])
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(path: Path) -> list[str]:
    """The relative links of a Markdown file that reach no file, or no heading in it."""
    text = re.sub(r"`[^`\n]*`", "", path.read_text())
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto:...
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(f"{path.name}: {target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            broken.append(f"{path.name}: {target}: no such heading")
    return broken


def missing_paths(path: Path) -> list[str]:
    """The repository paths a Markdown file names in code spans (`scripts/lab up`: its first
    word) that do not exist."""
    missing = []
    for span in re.findall(r"`([^`\n]+)`", path.read_text()):
        words = span.split()
        match = REPOSITORY_PATH.fullmatch(words[0].rstrip(":,;")) if words else None
        if match and match[0] not in EXAMPLE_PATHS and not (ROOT / match[0]).exists():
            missing.append(f"{path.name}: {match[0]}")
    return missing


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_a_planted_table_shows_what_is_missing_extra_or_wrong():
    fields = {name: Settings.model_fields[name] for name in ("mta", "dns_ttl", "dkim_selector")}
    page = f"""{BEGIN}
| setting | type | default | what |
|---|---|---|---|
| `mta` | `"postfix"` | `"postfix"` | the MTA |
| `dns_ttl` | seconds from 60 to 3600 | `3600` | the TTL |
| `no_such_setting` | True or False | `False` | nothing |
{END}"""
    assert reference_problems(page, fields) == [
        "dkim_selector: a setting of the model, missing from the table",
        "no_such_setting: in the table, not a setting of the model",
        'mta: the allowed value "chasquid" is not in the table',
        "dns_ttl: the range 60 to 86400 is not in the table",
    ]
    wrong_default = page.replace("| `3600` |", "| `300` |")
    assert "dns_ttl: the table's default is `300`, the model's `3600`" in \
        reference_problems(wrong_default, fields)


def test_every_setting_of_the_model_is_in_the_reference_table_and_nothing_else():
    assert len(Settings.model_fields) > 50
    assert reference_problems(SETTINGS_PAGE.read_text()) == []


def test_the_readme_is_a_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_a_planted_page_shows_its_broken_links(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading: here\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n[ok](other.md#a-code-heading-here) [ok](#page) "
                    "[web](https://example.com/x) `[not a link](nowhere.md)`\n"
                    "[gone](missing.md) [no heading](other.md#nothing) [here](#nothing)\n")
    assert broken_links(page) == ["page.md: missing.md: no such file",
                                  "page.md: other.md#nothing: no such heading",
                                  "page.md: #nothing: no such heading"]


def test_every_relative_link_of_the_readme_and_the_docs_resolves():
    files = markdown_files()
    assert len(files) > 5
    assert [problem for path in files for problem in broken_links(path)] == []


def test_a_planted_page_shows_the_paths_it_names_that_do_not_exist(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("`mailhost/paths.py`, `scripts/lab up --fresh`, `templates/`, "
                    "`mailhost/dane.py`, `/etc/mailhost/tls`, `secrets/dkim/`, "
                    "`scripts/nothing here`\n")
    assert missing_paths(page) == ["page.md: mailhost/dane.py", "page.md: scripts/nothing"]


def test_every_path_the_readme_and_the_docs_name_exists():
    assert [problem for path in markdown_files() for problem in missing_paths(path)] == []


def layout_layers(page: str) -> list[str]:
    """The layers docs/layout.md names, bottom to top: the first cell of its table's rows."""
    section = page.split("## mailhost/, bottom to top", 1)[1]
    return [row.split("|")[1].strip() for row in section.splitlines()
            if row.startswith("| ") and not row.startswith("| layer ")]


def test_the_layout_page_names_the_layers_the_import_test_enforces():
    page = (ROOT / "docs" / "layout.md").read_text()
    assert layout_layers(page) == [name for name, _ in LAYERS]
