"""One transaction per use case, on a pooled connection.

The unit of work rolls back on exit unless `commit()` was called, and hands out
the events it collected (and the notifications its statements wrote) only after
a successful commit, so nothing is ever published about a change that did not
happen.

Its statements, BEGIN and COMMIT run on the connection's asyncpg connection
(db/driver.py: why, and what stays SQLAlchemy's). SQLAlchemy's own transaction
on the connection is begun and ended alongside: it sends nothing (its adapter
never saw a statement), and it fires the `begin` and `commit` events the tests
and the benchmark count and keeps the connection's state what SQLAlchemy expects
when it goes back to the pool.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.engine import RootTransaction
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.driver import DriverResult, Statements
from db.events import Event, latest_per_subject
from db.sql.notifications import Notice


class UnitOfWork:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._statements: Statements | None = None
        self._transaction: RootTransaction | None = None
        self._events: list[Event] = []
        self._notices: list[Notice] = []
        self._committed = False

    async def __aenter__(self) -> UnitOfWork:
        connection = await self._engine.connect()
        try:
            self._statements = Statements.of(connection)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self._transaction = connection.sync_connection.begin()
        self._events.clear()
        self._notices.clear()
        self._committed = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection, self._connection = self._connection, None
        statements, self._statements = self._statements, None
        if connection is None or statements is None:
            return
        try:
            if not self._committed:
                await statements.rollback()
        except Exception:
            if exc is None:
                raise
            # the use case's own error says more; the connection is dropped below
        finally:
            transaction, self._transaction = self._transaction, None
            if transaction is not None and transaction.is_active:
                transaction.rollback()  # SQLAlchemy's: sends nothing, fires `rollback`
            if not statements.clean():
                await connection.invalidate()
            await connection.close()

    @property
    def statements(self) -> Statements:
        if self._statements is None:
            raise RuntimeError("the unit of work is not open")
        return self._statements

    async def execute(self, statement: Executable, params: Any = None) -> DriverResult:
        return await self.statements.execute(statement, params, begin=True)

    def record(self, *events: Event) -> None:
        self._events.extend(events)

    def outbox(self, *notices: Notice) -> None:
        """Notifications this transaction wrote, to be sent once it commits."""
        self._notices.extend(notices)

    async def commit(self) -> None:
        await self.statements.commit()
        if self._transaction is not None:
            self._transaction.commit()  # SQLAlchemy's: sends nothing, fires `commit`
        self._committed = True

    def collect_events(self) -> tuple[Event, ...]:
        if not self._committed:
            raise RuntimeError("events are handed out only after commit")
        return latest_per_subject(self._events)

    def collect_notices(self) -> tuple[Notice, ...]:
        if not self._committed:
            raise RuntimeError("notifications are handed out only after commit")
        return tuple(self._notices)
