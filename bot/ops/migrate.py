"""Running the alembic migrations from the bot and the tests."""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg
import msgspec
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import DatabaseSettings, build_engine
from db.sql.ops import (
    DATABASE_EXISTS,
    LOCK,
    LOCK_TIMEOUT,
    NO_TIMEOUTS,
    SESSION_LOCK,
    TRY_LOCK,
)

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"

# pg_advisory_lock keys: fixed numbers, the same in every release ("escrow" 1, 2).
MIGRATIONS_LOCK = 0x6573_6372_6F77_0001
CREATE_DATABASE_LOCK = 0x6573_6372_6F77_0002


def alembic_config() -> AlembicConfig:
    config = AlembicConfig(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["configure_logging"] = False
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def ensure_database(settings: DatabaseSettings) -> bool:
    """Create the configured database if the server does not have it yet; True
    if this call created it. Replicas starting together check and create one at
    a time (an advisory lock in the maintenance database, held until this
    connection closes)."""
    url = settings.sqlalchemy_url
    name = url.database
    server = await asyncpg.connect(
        host=url.host or url.query.get("host"),  # ?host=/socket/dir
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database="postgres",
        timeout=settings.connect_timeout_seconds,
    )
    try:
        await server.execute(SESSION_LOCK, CREATE_DATABASE_LOCK)
        exists = await server.fetchval(DATABASE_EXISTS, name)
        if exists:
            return False
        try:
            await server.execute(f'CREATE DATABASE "{name}"')
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            # Created meanwhile by someone not taking the lock (an older release):
            # it exists, which is all this wanted.
            return False
        log.info("created database %s", name)
        return True
    finally:
        await server.close()


async def run(
    engine: AsyncEngine,
    revision: str = "head",
    *,
    downgrade: bool = False,
    lock_timeout_ms: int = 0,
) -> str | None:
    """Upgrade (or downgrade) the database behind `engine` to `revision`; the
    revision it was at before, read under the lock (so of replicas migrating
    together, exactly one sees the old one).

    One transaction holding an advisory lock: replicas starting together migrate
    one after another, and the later ones find the work done. Neither the wait
    nor a step (an index build on a big table) is cut by the app's
    statement_timeout; `lock_timeout_ms` bounds each wait for a table lock, so a
    migration stuck behind a long transaction fails instead of holding every
    query on that table behind it. (A migration using `autocommit_block()` would
    end the transaction and the lock with it: it must lock again.)"""
    config = alembic_config()

    def migrate(connection: Connection) -> str | None:
        connection.execute(NO_TIMEOUTS)
        if not connection.scalar(TRY_LOCK, {"key": MIGRATIONS_LOCK}):
            log.info("another replica is migrating the database; waiting for it")
            connection.execute(LOCK, {"key": MIGRATIONS_LOCK})
        connection.execute(LOCK_TIMEOUT, {"ms": str(lock_timeout_ms)})
        before = MigrationContext.configure(connection).get_current_revision()
        config.attributes["connection"] = connection
        if downgrade:
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)
        return before

    async with engine.begin() as connection:
        return await connection.run_sync(migrate)


async def upgrade(settings: DatabaseSettings) -> tuple[str | None, str | None]:
    """Bring the configured database to the head revision on a connection of
    its own; the revisions before and after."""
    engine = build_engine(msgspec.structs.replace(settings, pool_size=1, max_overflow=0))
    try:
        before = await run(engine, lock_timeout_ms=settings.migration_lock_timeout_ms)
        after = await current_revision(engine)
    finally:
        await engine.dispose()
    return before, after
