"""Running the alembic migrations from the bot and the tests."""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import DatabaseSettings

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


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
    """Create the configured database if the server does not have it yet."""
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
        exists = await server.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        await server.execute(f'CREATE DATABASE "{name}"')
        log.info("created database %s", name)
        return True
    finally:
        await server.close()


async def run(engine: AsyncEngine, revision: str = "head", *, downgrade: bool = False) -> None:
    """Upgrade (or downgrade) the database behind `engine` to `revision`."""
    config = alembic_config()

    def migrate(connection: Connection) -> None:
        config.attributes["connection"] = connection
        if downgrade:
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(migrate)
