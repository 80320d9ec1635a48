"""The README and docs/ say only what the checkout holds: every file they name
in backticks exists, every test named as `path::test` is defined in that file,
every relative link resolves, and the README's layout drawing names every
package under bot/, cache/ and db/ and nothing that is not there."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted([README, *(ROOT / "docs").glob("*.md")])

# What a path written in a doc may start with: the checkout's own top level.
ROOTS = ("bot", "cache", "db", "tests", "migrations", "docs", ".ci")
ROOT_FILES = ("config.toml", "pyproject.toml", "Makefile", "README.md")

FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
_DIRS = "|".join(re.escape(r) for r in ROOTS)
_FILES = "|".join(re.escape(f) for f in ROOT_FILES)
_TEST = r"(?:::[\w\[\]\-]+){0,2}"  # `::test_x`, `::Class::test_x`, `::test_x[param]`
PATH = re.compile(rf"^(?:(?:{_DIRS})/[\w./*\-]*|{_FILES}){_TEST}$")


def prose(doc: Path) -> str:
    """The text outside fenced blocks (drawings and shell sessions are not prose)."""
    return FENCE.sub("", doc.read_text(encoding="utf-8"))


def cited(doc: Path) -> list[str]:
    """Every word of every backticked span that reads as a path of this checkout.

    `bot/runtime/run.py`, `db/sql/`, `tests/e2e/test_wizard.py::test_x` and the
    path inside `alembic -c migrations/alembic.ini upgrade head` are; a URL, a
    config key (`[runtime] lease_seconds`), a Redis key (`<prefix>:job:x`) or a
    module's dotted name are not."""
    found = []
    for span in SPAN.findall(prose(doc)):
        for word in span.split():
            word = word.rstrip(".,;)")
            if PATH.match(word):
                found.append(word)
    return found


def exists(path: str) -> bool:
    if "*" in path:
        return any(ROOT.glob(path))
    return (ROOT / path).exists()


@cache
def defined_names(path: str) -> frozenset[str]:
    """Module-level functions and classes, and `Class::method` for methods."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names.update(
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
    return frozenset(names)


def doc_id(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_path_a_doc_cites_exists(doc: Path) -> None:
    missing = sorted(
        {word.split("::")[0] for word in cited(doc) if not exists(word.split("::")[0])}
    )
    assert not missing, f"{doc_id(doc)} cites paths not in the checkout: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_test_a_doc_names_is_defined_in_its_file(doc: Path) -> None:
    missing = []
    for word in cited(doc):
        path, _, name = word.partition("::")
        if not name or not exists(path):
            continue  # a missing file is the test above's
        if re.sub(r"\[.*\]$", "", name) not in defined_names(path):
            missing.append(word)
    assert not missing, f"{doc_id(doc)} names tests that are not defined: {missing}"


def anchors(doc: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    headings = re.findall(r"^#+ (.+)$", prose(doc), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for target in LINK.findall(prose(doc)):
        if re.match(r"^[a-z]+:", target):
            continue  # a URL
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        if not linked.exists() or (linked.suffix == ".md" and anchor not in {"", *anchors(linked)}):
            broken.append(target)
    assert not broken, f"{doc_id(doc)} links to what is not in the checkout: {broken}"


def test_the_docs_cite_something() -> None:
    """The checks above must not pass by finding nothing."""
    words = cited(README)
    assert any("::" in word for word in words)
    assert any(word.startswith("bot/") for word in words)
    assert len(DOCS) > 1


# The layout drawing: a fenced block under "## Layout" in the README, drawn as
# a tree. On each line, what comes before the first run of two spaces is one
# entry (`telegram/`, `app.py`) or several (`run · startup · jobs`); the rest is
# a description. An entry's depth is its column / 3 (`├─ `, `│  ` are three
# characters wide); a directory entry is the parent of the deeper lines below.
TREE_CHARS = "│├└─ "


def drawing() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Layout\n(.*?)^## ", text, re.DOTALL | re.MULTILINE)
    assert section, "README.md has no '## Layout' section"
    block = re.search(r"^```\n(.*?)^```", section.group(1), re.DOTALL | re.MULTILINE)
    assert block, "the Layout section has no drawing"
    return block.group(1).splitlines()


def drawn_entries() -> list[str]:
    """Every entry of the drawing as a path from the checkout's root."""
    parents: list[str] = []
    entries = []
    for line in drawing():
        start = len(line) - len(line.lstrip(TREE_CHARS))
        if start == len(line):
            continue
        assert start % 3 == 0, f"misaligned layout line: {line!r}"
        depth = start // 3
        names = re.split(r" {2,}", line[start:], maxsplit=1)[0].split(" · ")
        parents = parents[:depth]
        assert len(parents) == depth, f"layout line without a parent: {line!r}"
        prefix = "".join(parents)
        entries.extend(prefix + name for name in names)
        if len(names) == 1 and names[0].endswith("/"):
            parents.append(names[0])
    return entries


def entry_exists(entry: str) -> bool:
    """`x/` a directory, `x.py` or `config.toml` a file, a bare `x` a module or a package."""
    if entry.endswith("/") or "." in entry.rsplit("/", 1)[-1]:
        return (ROOT / entry).exists()
    return (ROOT / f"{entry}.py").is_file() or (ROOT / entry / "__init__.py").is_file()


def test_every_name_in_the_layout_drawing_exists() -> None:
    missing = [entry for entry in drawn_entries() if not entry_exists(entry)]
    assert not missing, f"the README's layout drawing names what is not there: {missing}"


def test_every_package_appears_in_the_layout_drawing() -> None:
    drawn = {entry.rstrip("/") for entry in drawn_entries()}
    packages = sorted(
        str(init.parent.relative_to(ROOT))
        for top in ("bot", "cache", "db")
        for init in (ROOT / top).rglob("__init__.py")
    )
    assert packages, "no packages found"
    missing = [p for p in packages if p not in drawn]
    assert not missing, f"packages missing from the README's layout drawing: {missing}"
