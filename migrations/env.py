"""Alembic environment: async, on the same database settings as the bot."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from db.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url():
    """The URL handed in by the caller (the bot's migrate command, the tests),
    else the one from config.toml and the environment."""
    url = config.attributes.get("database_url")
    if url is None:
        from bot.config import load_config

        url = load_config().database.sqlalchemy_url
    return url


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection, *, lock: bool = False) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        if lock:
            # The alembic command line: the lock the bot's migrate takes
            # (bot/ops/migrate.py), so it never runs beside a starting replica's.
            from bot.ops.migrate import MIGRATIONS_LOCK
            from db.sql.ops import LOCK, NO_TIMEOUTS

            connection.execute(NO_TIMEOUTS)
            connection.execute(LOCK, {"key": MIGRATIONS_LOCK})
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_async_engine(database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations, lock=True)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # called from inside a running event loop
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
