"""The alembic migrations build exactly the schema the models describe, and unwind."""

from __future__ import annotations

import os
import secrets

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from bot.ops import migrate
from db.engine import build_engine
from db.models import Base

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
