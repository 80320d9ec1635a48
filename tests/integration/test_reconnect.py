"""Postgres closing the pool's connections (restarted, failed over, an admin's
pg_terminate_backend): the next snapshot read and the next transaction run on
fresh connections instead of failing the update that meets a dead one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.services import ServiceContext
from cache.loader import PostgresSnapshotLoader
from db import Database
from db.engine import build_engine
from tests.conftest import RecordedEvents, Services


@pytest.fixture
async def own_engine(pg_settings, database: Database) -> AsyncIterator[AsyncEngine]:
    """A pool of its own (two connections), so only its connections are killed."""
    engine = build_engine(msgspec.structs.replace(pg_settings, pool_size=2, max_overflow=0))
    yield engine
    await engine.dispose()


async def kill_pool(engine: AsyncEngine, killer: AsyncEngine) -> int:
    """Open both pooled connections, return them idle, and terminate them."""
    async with engine.connect() as a, engine.connect() as b:
        pids = [await a.scalar(text("SELECT pg_backend_pid()"))]
        pids.append(await b.scalar(text("SELECT pg_backend_pid()")))
    async with killer.connect() as conn:
        killed = await conn.scalar(
            text(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
                " FROM unnest(CAST(:p AS int[])) pid"
            ),
            {"p": pids},
        )
    return int(killed or 0)


async def test_a_snapshot_read_on_a_dead_connection_is_read_again(
    own_engine: AsyncEngine, database: Database, services: Services
) -> None:
    alice = await services.user("alice_pg", funds={"USDT": 5_00})
    assert await kill_pool(own_engine, database.engine) == 2
    snapshot = await PostgresSnapshotLoader(own_engine)(alice.telegram_id)
    assert snapshot is not None and snapshot.wallet("USDT").available == 5_00  # type: ignore[union-attr]


async def test_a_transaction_that_meets_a_dead_connection_runs_again_once(
    own_engine: AsyncEngine, database: Database, services: Services, config, escrow_settings
) -> None:
    alice = await services.user("alice_tx")
    own = Services(
        ServiceContext(
            db=Database(own_engine),
            settings=escrow_settings,
            currencies=config.currency_table(),
            events=RecordedEvents(),
        )
    )
    assert await kill_pool(own_engine, database.engine) == 2
    await own.wallets.credit_deposit(alice, "USDT", 7_00, reference="after-kill")
    async with database.engine.connect() as conn:
        available = await conn.scalar(
            text("SELECT available FROM wallets WHERE user_id = :u AND currency = 'USDT'"),
            {"u": alice.id},
        )
        credits = await conn.scalar(
            text("SELECT count(*) FROM ledger_entries WHERE idempotency_key LIKE '%after-kill%'")
        )
    assert available == 7_00
    assert credits and credits > 0


async def test_a_read_after_postgres_closed_the_idle_connections_uses_fresh_ones(
    own_engine: AsyncEngine, database: Database
) -> None:
    assert await kill_pool(own_engine, database.engine) == 2
    await asyncio.sleep(0.2)  # the termination reaches the driver (as it does before any later use)
    reader = Database(own_engine).reader
    for _ in range(3):  # each of the pool's two dead connections, and more
        async with reader.connect() as conn:
            assert await conn.scalar(text("SELECT 1")) == 1
