"""Statements run on a pooled connection's own asyncpg connection.

Why: a write spent most of its client CPU in SQLAlchemy's asyncpg adapter (an
execution context, a cursor and greenlet hops per statement, BEGIN and COMMIT
through the adapter), not in asyncpg. CPU per use case on the tests' database
with uvloop, `time.process_time()` over 5 rounds of 600 (the lowest round,
then the median of three such runs: the machine is shared), through
SQLAlchemy then on the driver:

    credit a deposit (BEGIN, 1 statement, COMMIT)    449 µs -> 318 µs
    create a deal                                    850 µs -> 468 µs
    accept a deal                                    739 µs -> 463 µs
    fund a deal                                     1019 µs -> 604 µs
    a deal card (one autocommitted read)             268 µs -> 202 µs

(asyncpg alone: 57 µs for BEGIN, one statement and COMMIT.) One statement
costs about 6 µs more here than a bare prepared statement's 20 µs; what stays
is the pool's checkout and return (about 45 µs, greenlet hops included), the
use case's own work and asyncpg's.

What stays SQLAlchemy's: the pool (checkout and its `_skip_closed` event, the
invalidation of a dead connection and of the pool's older ones, the reset on
return); each statement's SQL, compiled once with the engine's dialect exactly
as `AsyncConnection.execute` would send it; the results (`Row`s in an
`IteratorResult`, so `.one()`, `.scalar_one()`, `._mapping`, `row.name` read
as before; JSON is decoded by the codec SQLAlchemy set on the connection, as
before); the `before_cursor_execute` event of every statement and the
`begin`, `commit` and `rollback` events of its own transaction, begun and
ended alongside (what the tests, the metrics and the benchmark count); and
the errors: a failed statement raises
what SQLAlchemy would (`IntegrityError`, `DBAPIError` with the same `orig`,
`connection_invalidated` for a connection Postgres closed), built and handled
by SQLAlchemy's own connection.

A statement whose values or rows SQLAlchemy would convert (typed binds or
columns with processors, expanding IN lists, Core INSERT/UPDATE/DELETE) is
refused when first compiled (`NotOnDriver`): tests/unit/test_driver.py
compiles every statement the product runs.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn

from asyncpg import Connection as DriverConnection
from asyncpg.exceptions import InvalidCachedStatementError, OutdatedSchemaCacheError
from sqlalchemy import Executable
from sqlalchemy.engine import Dialect, IteratorResult
from sqlalchemy.engine.result import SimpleResultMetaData
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import util as sql_util
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import greenlet_spawn

# The rows counted in a command's status, as SQLAlchemy's adapter reads it.
_ROWCOUNT = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")


def _log(sync: Any, sql: str, arguments: Any) -> None:
    sync._log_info(sql)
    if sync.engine.hide_parameters:
        sync._log_info("[driver] [SQL parameters hidden due to hide_parameters=True]")
    else:
        sync._log_info("[driver] %r", sql_util._repr_params(arguments, batches=10))


class NotOnDriver(TypeError):
    """A statement SQLAlchemy would convert values or rows of."""


class Compiled:
    """A statement's SQL in asyncpg's `$n` form and its parameters' order."""

    __slots__ = ("compiled", "names", "sql")

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if not isinstance(compiled, SQLCompiler) or not compiled.positional:
            raise NotOnDriver(f"not a positional SQL statement: {statement}")
        if compiled.isinsert or compiled.isupdate or compiled.isdelete:
            # their SQL depends on the keys of each call's parameters
            raise NotOnDriver(f"Core DML runs through SQLAlchemy: {compiled.string[:80]}")
        if compiled.post_compile_params or compiled.literal_execute_params:
            raise NotOnDriver(f"expanding parameters: {compiled.string[:80]}")
        for bind in compiled.binds.values():
            if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
                raise NotOnDriver(f"{bind.key} is converted: {compiled.string[:80]}")
        for column in getattr(statement, "selected_columns", ()):
            try:
                processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
            except Exception:
                processor = True
            if processor is not None:
                raise NotOnDriver(f"{column} is converted: {compiled.string[:80]}")
        self.compiled = compiled
        self.sql = compiled.string
        self.names = tuple(compiled.positiontup or ())

    def arguments(self, params: dict[str, Any] | None) -> tuple[Any, ...]:
        # construct_params fills the statement's own literals and refuses a
        # missing value, as an execution through SQLAlchemy would
        values = self.compiled.construct_params(params)
        return tuple([values[name] for name in self.names])


def compiled(statement: Executable, dialect: Dialect) -> Compiled:
    """`statement` compiled for `dialect`, once. Kept on the dialect (a module
    dict keyed by it would be kept alive by the compiled forms, which refer to
    it), so it goes with its engine."""
    known: dict[Executable, Compiled] | None = getattr(dialect, "_driver_compiled", None)
    if known is None:
        known = {}
        dialect._driver_compiled = known  # type: ignore[attr-defined]
    found = known.get(statement)
    if found is None:
        found = known[statement] = Compiled(statement, dialect)
    return found


class DriverResult(IteratorResult[Any]):
    """A statement's rows, with the count of rows its command reported."""

    def __init__(self, metadata: SimpleResultMetaData, rows: list[Any], status: str | None) -> None:
        super().__init__(metadata, iter(rows))
        self._status = status

    @property
    def rowcount(self) -> int:
        found = _ROWCOUNT.match(self._status or "")
        return int(found.group(1)) if found else -1


class Statements:
    """The statements of one checked-out connection, run on its driver.

    Prepared statements are kept per connection, in the pool's `info` for it
    (emptied when the pool replaces the connection), as SQLAlchemy's adapter
    keeps its own."""

    __slots__ = (
        "_broken",
        "_connection",
        "_dispatch",
        "_driver",
        "_prepared",
        "_raw",
        "_sync",
        "_transaction",
    )

    def __init__(self, connection: AsyncConnection, raw: PoolProxiedConnection) -> None:
        self._connection = connection
        self._sync = connection.sync_connection
        self._dispatch = self._sync.dispatch
        self._raw = raw
        driver: DriverConnection = raw.driver_connection  # type: ignore[assignment]
        self._driver = driver
        kept = raw.info.get("driver_statements")
        if kept is None or kept[0] is not driver:
            kept = raw.info["driver_statements"] = (driver, {})
        self._prepared: dict[str, tuple[Any, SimpleResultMetaData]] = kept[1]
        self._transaction: Any = None
        self._broken = False

    @classmethod
    def of(cls, connection: AsyncConnection) -> Statements:
        """The statements of `connection`, just checked out (its pooled
        connection is at hand: no greenlet needed to reach it)."""
        return cls(connection, connection.sync_connection.connection)

    @property
    def driver(self) -> DriverConnection:
        return self._driver

    async def execute(
        self, statement: Executable, params: dict[str, Any] | None = None, *, begin: bool = False
    ) -> DriverResult:
        """`statement`'s result; with `begin`, in a transaction begun before
        the first statement (as SQLAlchemy's adapter begins one)."""
        sync = self._sync
        if not sync.in_transaction() and not sync.invalidated:
            # SQLAlchemy's autobegin, as its own execution would: sends nothing
            # (in AUTOCOMMIT, or before its adapter saw a statement), fires `begin`
            sync.begin()
        found = compiled(statement, sync.dialect)
        sql = found.sql
        arguments = found.arguments(params)
        try:
            if begin and self._transaction is None:
                transaction = self._driver.transaction()
                await transaction.start()
                self._transaction = transaction
            if self._dispatch.before_cursor_execute:
                for listener in self._dispatch.before_cursor_execute:
                    sql, arguments = listener(self._sync, None, sql, arguments, None, False)
            if sync._echo:  # the engine's log switched on: as SQLAlchemy logs a statement
                _log(sync, sql, arguments)
            prepared = self._prepared.get(sql)
            if prepared is None:
                statement_on_server = await self._driver.prepare(sql)
                keys = [attribute.name for attribute in statement_on_server.get_attributes()]
                prepared = self._prepared[sql] = (statement_on_server, SimpleResultMetaData(keys))
            rows = await prepared[0].fetch(*arguments)
        except Exception as error:
            await self._raise(error, sql, arguments)
        except BaseException:
            # cancelled mid-statement: the connection's state is unknown, and
            # SQLAlchemy would invalidate it too
            self._broken = True
            raise
        return DriverResult(prepared[1], rows, prepared[0].get_statusmsg())

    async def scalar(self, statement: Executable, params: dict[str, Any] | None = None) -> Any:
        return (await self.execute(statement, params)).scalar()

    @property
    def in_transaction(self) -> bool:
        return self._transaction is not None

    async def commit(self) -> None:
        await self._end("commit")

    async def rollback(self) -> None:
        if not self._driver.is_closed():
            await self._end("rollback")
        self._transaction = None

    async def _end(self, how: str) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is None:
            return
        try:
            await getattr(transaction, how)()
        except Exception as error:
            await self._raise(error, None, None)
        except BaseException:
            self._broken = True
            raise

    def clean(self) -> bool:
        """Whether the connection may go back to the pool as it is: no
        transaction left open on it (a cancelled statement, a failed rollback)."""
        driver = self._driver
        return not self._broken and (driver.is_closed() or not driver.is_in_transaction())

    async def _raise(self, error: Exception, sql: str | None, arguments: Any) -> NoReturn:
        """Raise what SQLAlchemy would for `error`: the adapter's DBAPI error,
        wrapped and handled (a dead connection invalidated) by SQLAlchemy's
        connection. Anything else (a timeout, an OSError) goes out as it is,
        as it does through SQLAlchemy."""
        if isinstance(error, InvalidCachedStatementError | OutdatedSchemaCacheError):
            self._prepared.clear()  # the schema changed under them: prepared again next time
        adapter = self._raw.dbapi_connection
        try:
            adapter._handle_exception(error)  # type: ignore[union-attr]
        except self._sync.dialect.loaded_dbapi.Error as adapted:
            handle = self._sync._handle_dbapi_exception
            await greenlet_spawn(handle, adapted, sql, arguments, None, None)
        raise error


class DriverReads:
    """Reads on `engine`'s pooled connections (an AUTOCOMMIT engine: no BEGIN
    and ROLLBACK round trips around one SELECT), run on their driver:
    `async with reads.connect() as conn: await conn.execute(...)`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Statements]:
        async with self.engine.connect() as connection:  # its close shielded from cancelling
            statements = Statements.of(connection)
            try:
                yield statements
            finally:
                if not statements.clean():
                    await connection.invalidate()
