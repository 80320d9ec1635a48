"""The cache's one read of Postgres: a user and their wallets in one statement."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from cache.snapshots import UserSnapshot, snapshot_from_rows
from db.sql.users import DATABASE_IDENTITY, SNAPSHOT_BY_TELEGRAM_ID

SnapshotLoader = Callable[[int], Awaitable[UserSnapshot | None]]


class PostgresSnapshotLoader:
    """Loads a snapshot with exactly one network round trip to Postgres.

    AUTOCOMMIT: the SELECT is its own transaction, so no BEGIN/ROLLBACK pair
    wraps it (with asyncpg those would be two more round trips). One statement
    reads one consistent snapshot, so the version always matches the data.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def identity(self) -> str:
        """Which database this is: cached entries belong to one."""
        async with self._engine.connect() as connection:
            return str(await connection.scalar(DATABASE_IDENTITY))

    async def __call__(self, telegram_id: int) -> UserSnapshot | None:
        params = {"telegram_id": telegram_id}
        try:
            async with self._engine.connect() as connection:
                rows = (await connection.execute(SNAPSHOT_BY_TELEGRAM_ID, params)).all()
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            # Postgres had closed the pooled connection (restarted, failed over,
            # terminated); SQLAlchemy has discarded the pool's older ones: read
            # again on a fresh one, so the update doesn't fail for it.
            async with self._engine.connect() as connection:
                rows = (await connection.execute(SNAPSHOT_BY_TELEGRAM_ID, params)).all()
        return snapshot_from_rows(rows)
