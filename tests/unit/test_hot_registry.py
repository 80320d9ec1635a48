"""The hot-statement registry lists exactly what the product runs.

Every statement of db/sql that a product module (under bot/ or cache/)
imports is on the registry or exempt with a reason; everything on the
registry is imported by a product module (not only by tests); db/sql defines
no statement nothing runs. The index report stays true: every index is used
by a registered statement, enforces uniqueness, or is listed as unused.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

from sqlalchemy import Executable

import db.sql
from db.models import Base
from db.sql.hot import EXEMPT, HOT_QUERIES, OFF_THE_HOT_PATH, UNUSED_INDEXES

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("bot", "cache")


def sql_modules() -> list[ModuleType]:
    return [
        importlib.import_module(f"db.sql.{info.name}")
        for info in pkgutil.iter_modules(db.sql.__path__)
        if info.name != "hot" and info.name not in OFF_THE_HOT_PATH
    ]


def defined_statements() -> dict[int, str]:
    """Every statement object db/sql defines, by identity: its module.NAME."""
    statements: dict[int, str] = {}
    for module in sql_modules():
        for name, value in vars(module).items():
            if isinstance(value, Executable) and not name.startswith("_"):
                statements.setdefault(id(value), f"{module.__name__}.{name}")
    return statements


def product_imports() -> dict[int, set[str]]:
    """The db.sql statements product modules import: id -> importing files."""
    found: dict[int, set[str]] = {}
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not (isinstance(node, ast.ImportFrom) and node.module):
                    continue
                if not node.module.startswith("db.sql."):
                    continue
                if node.module.removeprefix("db.sql.") in OFF_THE_HOT_PATH:
                    continue
                module = importlib.import_module(node.module)
                for alias in node.names:
                    value = getattr(module, alias.name)
                    if isinstance(value, Executable):
                        found.setdefault(id(value), set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_registered_statement_is_run_by_the_product():
    imported = product_imports()
    statements = defined_statements()
    for query in HOT_QUERIES:
        assert id(query.statement) in statements, f"{query.name}: not a statement of db/sql"
        assert id(query.statement) in imported, f"{query.name}: no product module runs it"
    for statement, reason in EXEMPT:
        assert reason and id(statement) in imported, statements.get(id(statement))


def test_every_statement_the_product_runs_is_registered_or_exempt():
    registered = {id(query.statement) for query in HOT_QUERIES}
    exempt = {id(statement) for statement, _ in EXEMPT}
    assert not registered & exempt
    statements = defined_statements()
    missing = [
        f"{statements[key]} (in {', '.join(sorted(files))})"
        for key, files in product_imports().items()
        if key in statements and key not in registered | exempt
    ]
    assert not missing, "run by the product but not on the registry: " + "; ".join(missing)


def test_db_sql_defines_no_statement_nothing_runs():
    imported = product_imports()
    unused = [name for key, name in defined_statements().items() if key not in imported]
    assert not unused, unused


def test_what_is_off_the_hot_path_is_a_module_of_db_sql_with_a_reason():
    modules = {info.name for info in pkgutil.iter_modules(db.sql.__path__)}
    assert set(OFF_THE_HOT_PATH) <= modules
    assert all(OFF_THE_HOT_PATH.values())


def test_registry_names_are_unique():
    names = [query.name for query in HOT_QUERIES]
    assert len(names) == len(set(names))


def test_every_index_is_used_enforces_uniqueness_or_is_reported_unused():
    indexes = {
        index.name: index for table in Base.metadata.tables.values() for index in table.indexes
    }
    named = {name for query in HOT_QUERIES for name in (*query.indexes, *query.generic_indexes)}
    unaccounted = [
        name
        for name, index in indexes.items()
        if name not in named and not index.unique and name not in UNUSED_INDEXES
    ]
    assert not unaccounted, f"used by no registered statement: {unaccounted}"
    assert set(UNUSED_INDEXES) <= set(indexes)
    assert not set(UNUSED_INDEXES) & named, "listed unused, yet a registered statement uses it"
