"""One transaction per use case, on a Core connection.

The unit of work rolls back on exit unless `commit()` was called, and hands out
the events it collected (and the notifications its statements wrote) only after
a successful commit, so nothing is ever published about a change that did not
happen.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.events import Event, latest_per_subject
from db.sql.notifications import Notice


class UnitOfWork:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._events: list[Event] = []
        self._notices: list[Notice] = []
        self._committed = False

    async def __aenter__(self) -> UnitOfWork:
        self._connection = await self._engine.connect()
        await self._connection.begin()
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
        if connection is None:
            return
        try:
            if not self._committed:
                await connection.rollback()
        finally:
            await connection.close()

    @property
    def connection(self) -> AsyncConnection:
        if self._connection is None:
            raise RuntimeError("the unit of work is not open")
        return self._connection

    async def execute(self, statement: Executable, params: Any = None) -> CursorResult[Any]:
        return await self.connection.execute(statement, params)

    def record(self, *events: Event) -> None:
        self._events.extend(events)

    def outbox(self, *notices: Notice) -> None:
        """Notifications this transaction wrote, to be sent once it commits."""
        self._notices.extend(notices)

    async def commit(self) -> None:
        await self.connection.commit()
        self._committed = True

    def collect_events(self) -> tuple[Event, ...]:
        if not self._committed:
            raise RuntimeError("events are handed out only after commit")
        return latest_per_subject(self._events)

    def collect_notices(self) -> tuple[Notice, ...]:
        if not self._committed:
            raise RuntimeError("notifications are handed out only after commit")
        return tuple(self._notices)
