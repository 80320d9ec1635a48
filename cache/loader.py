"""The cache's one read of Postgres: a user and their wallets in one statement."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from cache.snapshots import UserSnapshot, snapshot_from_rows
from db.driver import DriverReads, Statements
from db.sql.users import DATABASE_IDENTITY, SNAPSHOT_BY_TELEGRAM_ID
from db.standby import StandbyReads, Work

SnapshotLoader = Callable[[int], Awaitable[UserSnapshot | None]]


class PostgresSnapshotLoader:
    """Loads a snapshot with exactly one network round trip to Postgres.

    AUTOCOMMIT: the SELECT is its own transaction, so no BEGIN/ROLLBACK pair
    wraps it (with asyncpg those would be two more round trips). One statement
    reads one consistent snapshot, so the version always matches the data.

    With a `standby` (db/standby.py) the load may be served by the hot
    standby, unless the user (or a write about them) just committed and the
    standby has not replayed it yet; a snapshot is shown, never decided on.
    """

    def __init__(self, engine: AsyncEngine, standby: StandbyReads | None = None) -> None:
        self._engine = DriverReads(engine.execution_options(isolation_level="AUTOCOMMIT"))
        self._standby = standby

    async def identity(self) -> str:
        """Which database this is: cached entries belong to one."""
        async with self._engine.connect() as connection:
            return str(await connection.scalar(DATABASE_IDENTITY))

    async def __call__(self, telegram_id: int) -> UserSnapshot | None:
        read = functools.partial(_rows, params={"telegram_id": telegram_id})
        if self._standby is None:
            rows = await self._on_primary(read)
        else:
            # a user the standby has not got yet (made by a commit no update of
            # theirs marked) is looked for on the primary, never read as unknown
            rows = await self._standby.read(read, telegram_id, self._on_primary, retry_empty=True)
        return snapshot_from_rows(rows)

    async def _on_primary(self, read: Work[list[Row[Any]]]) -> list[Row[Any]]:
        try:
            async with self._engine.connect() as connection:
                return await read(connection)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            # Postgres had closed the pooled connection (restarted, failed over,
            # terminated); SQLAlchemy has discarded the pool's older ones: read
            # again on a fresh one, so the update doesn't fail for it.
            async with self._engine.connect() as connection:
                return await read(connection)


async def _rows(connection: Statements, params: dict[str, int]) -> list[Row[Any]]:
    return list((await connection.execute(SNAPSHOT_BY_TELEGRAM_ID, params)).all())
