"""Every statement the product runs may run on the driver (db/driver.py): none
needs SQLAlchemy to convert its values or rows, so running them past its
adapter changes nothing a service reads. One that would need it is refused
when first compiled, never run with its values unconverted."""

from __future__ import annotations

import pytest
from sqlalchemy import JSON, Enum, bindparam, column, select, text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from db.driver import NotOnDriver, compiled
from db.models import DealStatus, users
from db.sql.hot import EXEMPT, HOT_QUERIES
from db.sql.reads import OPEN_DISPUTES
from tests.unit.test_hot_registry import defined_statements, sql_modules

DIALECT = asyncpg_dialect()


def test_every_statement_of_db_sql_runs_on_the_driver() -> None:
    statements = [
        value
        for module in sql_modules()
        for value in vars(module).values()
        if id(value) in defined_statements()
    ]
    statements += [query.statement for query in HOT_QUERIES] + [s for s, _ in EXEMPT]
    assert len(statements) > 60
    for statement in statements:
        found = compiled(statement, DIALECT)
        assert found.sql == str(statement.compile(dialect=DIALECT))
        assert compiled(statement, DIALECT) is found  # compiled once


def test_values_go_in_the_order_of_their_placeholders_with_the_statements_own() -> None:
    repeated = compiled(text("SELECT :b, :a, :b"), DIALECT)
    assert repeated.sql == "SELECT $1, $2, $1"
    assert repeated.arguments({"a": 1, "b": 2}) == (2, 1)
    # the admin gate's status literal is the statement's own value
    gate = compiled(OPEN_DISPUTES, DIALECT)
    assert gate.arguments({"limit": 10, "admin_id": 7}) == ("active", 7, 10)


@pytest.mark.parametrize(
    "statement",
    [
        text("SELECT :doc").bindparams(bindparam("doc", type_=JSON)),  # serialized by SQLAlchemy
        select(column("status", Enum(DealStatus))),  # made enum members by SQLAlchemy
        select(users.c.id).where(users.c.id.in_(bindparam("ids", expanding=True))),
        users.update().values(first_name="x"),  # its SQL depends on each call's keys
    ],
    ids=["json-bind", "enum-column", "expanding-in", "core-update"],
)
def test_a_statement_sqlalchemy_would_convert_is_refused(statement) -> None:
    with pytest.raises(NotOnDriver):
        compiled(statement, DIALECT)
