"""The layout's rules, read from the code itself (see docs/architecture.md).

- `db/` imports nothing of ours; `cache/` never imports `bot`;
  `bot/services/` imports neither aiogram nor the Telegram face, the runtime,
  the operations, the double or the benchmark; `bot/telegram/` imports none
  of the runtime, the operations, the double or the benchmark.
- aiogram is imported only by the Telegram face, the runtime, the double and
  the benchmark.
- SQL is written only under `db/` (and in migrations).
- Services raise refusals with codes and data, never with sentences, and build
  no sentence a user could read.
- No product module passes ~300 lines, but the ones listed with a reason.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "cache", "db")
AIOGRAM_PLACES = ("bot/telegram/", "bot/runtime/", "bot/sim/", "bot/bench/")
LONGEST = 300
# Longer than LONGEST on purpose, with the reason.
LONG_ON_PURPOSE: dict[str, str] = {
    "db/models.py": (
        "the schema: every table, constraint and index in one declarative module, the one"
        " the migrations are compared with and whose index names the registry quotes"
    ),
}


def product_modules() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved, including
    imports inside functions (a late import is still an import)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def offending(prefix: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in product_modules():
        if not rel(path).startswith(prefix):
            continue
        bad = sorted(name for name in imports(path) if under(name, *forbidden))
        if bad:
            found[rel(path)] = bad
    return found


def test_the_layout_is_read_from_real_modules() -> None:
    # The rules below mean something only if the scan sees the tree.
    names = {module_name(path) for path in product_modules()}
    assert {"bot.services.deals", "bot.telegram.handlers", "cache.store", "db.models"} <= names
    assert "aiogram" in {i.split(".")[0] for i in imports(ROOT / "bot/telegram/keyboards.py")}


def test_db_imports_nothing_of_ours() -> None:
    assert offending("db/", ("bot", "cache")) == {}


def test_cache_never_imports_bot() -> None:
    assert offending("cache/", ("bot",)) == {}


def test_services_import_neither_aiogram_nor_the_telegram_face() -> None:
    forbidden = (
        "aiogram",
        "bot.telegram",
        "bot.runtime",
        "bot.ops",
        "bot.sim",
        "bot.bench",
        "bot.runtime.app",
    )
    assert offending("bot/services/", forbidden) == {}


def test_the_telegram_face_does_not_reach_into_the_process() -> None:
    # The runtime wires the Telegram face, never the other way round: handlers
    # get what they need (the notice sender, the services) injected.
    forbidden = ("bot.runtime", "bot.ops", "bot.sim", "bot.bench")
    assert offending("bot/telegram/", forbidden) == {}


def test_aiogram_is_imported_only_at_the_edges() -> None:
    found = {
        rel(path)
        for path in product_modules()
        if not rel(path).startswith(AIOGRAM_PLACES)
        and any(under(name, "aiogram") for name in imports(path))
    }
    assert found == set()


SQL_WORDS = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|ON\s+CONFLICT|"
    r"FOR\s+UPDATE|RETURNING)\b",
    re.DOTALL,
)
SQL_BUILDERS = {"select", "insert", "update", "delete", "text", "union_all", "literal_column"}


def docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_sql_is_written_only_under_db() -> None:
    found: dict[str, list[str]] = {}
    for path in product_modules():
        if rel(path).startswith("db/"):
            continue
        tree = ast.parse(path.read_text())
        skip = docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in skip
                and SQL_WORDS.search(node.value)
            ):
                found.setdefault(rel(path), []).append(node.value[:60])
            if isinstance(node, ast.ImportFrom) and under(node.module or "", "sqlalchemy"):
                builders = {a.name for a in node.names} & SQL_BUILDERS
                if builders:
                    found.setdefault(rel(path), []).append(f"imports {sorted(builders)}")
    assert found == {}


# A sentence: a capital, at least three words, an end mark ("No such deal.").
SENTENCE = re.compile(r"^[\W\d]*[A-Z][\w']*( +[^\s]+){2,}[.!?…:]$", re.DOTALL)
OPERATOR_ERRORS = {
    "ValueError",
    "TypeError",
    "RuntimeError",
    "AssertionError",
    "KeyError",
    "NotImplementedError",
}
OPERATOR_OUTPUT = {"debug", "info", "warning", "error", "exception", "critical", "log", "print"}


def literal_text(node: ast.AST) -> str | None:
    """A string literal's text, an f-string's with "X" for each placeholder."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values)
    return None


def refusals() -> set[str]:
    """The names of the refusal classes (`EscrowError` and its subclasses)."""
    from bot.services import errors

    return {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.EscrowError)
    }


def test_services_refuse_with_codes_not_sentences() -> None:
    classes = refusals()
    found = []
    for path in (ROOT / "bot/services").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in classes
                and any(
                    (text := literal_text(a)) is not None and SENTENCE.match(text.strip())
                    for a in node.args
                )
            ):
                found.append(f"{rel(path)}:{node.lineno}")
    assert found == []


def sentence_literals(path: Path) -> list[str]:
    """String literals in `path` that read like a sentence, outside docstrings,
    log calls and operator-facing exceptions."""
    tree = ast.parse(path.read_text())
    skip = docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in OPERATOR_ERRORS or name in OPERATOR_OUTPUT:
                skip.update(id(n) for n in ast.walk(node))
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
    found = []
    for node in ast.walk(tree):
        text = literal_text(node) if id(node) not in skip else None
        if text is not None and SENTENCE.match(text.strip()):
            found.append(text.strip()[:60])
    return found


@pytest.mark.parametrize("package", ["bot/services", "bot/payments", "cache", "db"])
def test_no_sentence_a_user_reads_outside_the_telegram_face(package: str) -> None:
    found = {
        rel(path): hits
        for path in sorted((ROOT / package).rglob("*.py"))
        if (hits := sentence_literals(path))
    }
    assert found == {}


def test_no_module_is_too_long_but_on_purpose() -> None:
    long = {
        rel(path): n
        for path in product_modules()
        if (n := len(path.read_text().splitlines())) > LONGEST
    }
    assert set(long) == set(LONG_ON_PURPOSE), long
