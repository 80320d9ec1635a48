"""The alembic migrations build exactly the schema the models describe, and unwind."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from pathlib import Path

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from bot.ops import migrate
from db.engine import build_engine
from db.models import Base
from db.sql.ops import LOCK

ROOT = Path(__file__).resolve().parents[2]

SEED_INDEXES = {
    "escrows": {"idx_escrow_buyer_status", "idx_escrow_seller_status", "idx_escrow_created_at"},
    "wallets": {"idx_wallet_user_currency"},
    "invitations": {"idx_invitation_telegram_status"},
}


@pytest.fixture
async def empty_database(pg_settings):
    url = pg_settings.sqlalchemy_url
    server = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, database="postgres"
    )
    name = f"escrow_migrations_{os.getpid()}_{secrets.token_hex(3)}"
    await server.execute(f'CREATE DATABASE "{name}"')
    engine = build_engine(pg_settings.with_database(name))
    try:
        yield engine
    finally:
        await engine.dispose()
        await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await server.close()


async def tables(engine) -> set[str]:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: set(inspect(c).get_table_names()))


async def test_upgrade_head_downgrade_base_and_back(empty_database):
    engine = empty_database
    await migrate.run(engine)
    assert await migrate.current_revision(engine) == migrate.head_revision()
    assert set(Base.metadata.tables) <= await tables(engine)

    await migrate.run(engine, "base", downgrade=True)
    assert await migrate.current_revision(engine) is None
    assert await tables(engine) == {"alembic_version"}

    await migrate.run(engine)
    assert await migrate.current_revision(engine) == migrate.head_revision()


async def test_models_and_migrations_agree(engine):
    """Autogenerate against the migrated session database finds nothing to do."""

    def diff(connection):
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_the_seeds_composite_indexes_exist(engine):
    def indexes(connection):
        inspector = inspect(connection)
        return {t: {i["name"] for i in inspector.get_indexes(t)} for t in SEED_INDEXES}

    async with engine.connect() as conn:
        present = await conn.run_sync(indexes)
    for table, names in SEED_INDEXES.items():
        assert names <= present[table], table


async def test_the_alembic_command_line_waits_for_the_migration_lock(empty_database):
    """`alembic upgrade head` by hand takes the lock a starting replica's
    migration holds, instead of migrating beside it."""
    engine = empty_database
    url = engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "ESCROW__DATABASE__URL": url}
    async with engine.connect() as holder:  # a replica migrating, as far as alembic can tell
        await holder.execute(LOCK, {"key": migrate.MIGRATIONS_LOCK})
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "alembic", "-c", "migrations/alembic.ini", "upgrade", "head",
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        with pytest.raises(TimeoutError):  # waiting for the lock, nothing done
            await asyncio.wait_for(asyncio.shield(cli.wait()), 3)
        assert await tables(engine) == set()
        await holder.rollback()  # the replica's migration ends
    output, _ = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0, output.decode()
    assert await migrate.current_revision(engine) == migrate.head_revision()
