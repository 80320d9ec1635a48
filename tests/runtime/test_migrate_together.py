"""Replicas started at the same moment on a database that does not exist yet:
one creates it, one migrates it, and all of them come up (an advisory lock
serializes the migrations; a CREATE DATABASE lost to another replica is fine)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
from pathlib import Path

import asyncpg
import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bot.ops import migrate
from bot.runtime.run import Replica
from db.engine import DatabaseSettings, build_engine
from tests.runtime.conftest import eventually
from tests.runtime.test_polling_and_startup import PollingTelegram, polling_config

ROOT = Path(__file__).resolve().parents[2]
REPLICAS = 5


async def drop(settings: DatabaseSettings) -> None:
    url = settings.sqlalchemy_url
    server = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, database="postgres"
    )
    try:
        await server.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await server.close()


@pytest.fixture
async def absent_database(pg_settings: DatabaseSettings):
    settings = pg_settings.with_database(f"escrow_together_{os.getpid()}_{secrets.token_hex(3)}")
    yield settings
    await drop(settings)


async def test_five_replicas_migrating_at_once_on_a_missing_database_all_come_up(
    absent_database,
):
    env = {**os.environ, "ESCROW__DATABASE__URL": absent_database.url}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "migrate",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(REPLICAS)
    ]
    finished = await asyncio.gather(*(process.communicate() for process in processes))
    outputs = [out.decode() for out, _ in finished]
    shown = "\n---\n".join(outputs)
    assert [p.returncode for p in processes] == [0] * REPLICAS, shown
    head = migrate.head_revision()
    # one created the database and one migrated it; the others found it done
    assert sum("(created)" in out for out in outputs) == 1, shown
    assert sum(f"schema revision empty -> {head}" in out for out in outputs) == 1, shown
    assert sum(f"schema revision {head} -> {head}" in out for out in outputs) == 4, shown
    engine = build_engine(absent_database)
    try:
        async with engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    finally:
        await engine.dispose()
    assert versions == [(head,)]


async def test_a_replica_waits_for_another_ones_migration_beyond_the_statement_timeout(
    absent_database, caplog
):
    """The wait (and each migration step) is not cut by the app's statement_timeout."""
    await migrate.ensure_database(absent_database)
    url = absent_database.sqlalchemy_url
    other = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, database=url.database
    )
    engine = build_engine(msgspec.structs.replace(absent_database, statement_timeout_ms=100))
    try:
        await other.execute("SELECT pg_advisory_lock($1)", migrate.MIGRATIONS_LOCK)
        with caplog.at_level(logging.INFO, logger="bot.ops.migrate"):
            migrating = asyncio.create_task(migrate.run(engine))
            for _ in range(500):  # until it waits for the lock
                waiting = await other.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = $1)",
                    url.database,
                )
                if waiting:
                    break
                await asyncio.sleep(0.01)
            assert waiting == 1
            await asyncio.sleep(0.3)  # three statement timeouts
            assert not migrating.done()  # still waiting, not cancelled
            await other.execute("SELECT pg_advisory_unlock($1)", migrate.MIGRATIONS_LOCK)
            assert await asyncio.wait_for(migrating, 30) is None  # it found an empty database
        assert "another replica is migrating the database; waiting for it" in caplog.text
        assert await migrate.current_revision(engine) == migrate.head_revision()
    finally:
        await other.close()
        await engine.dispose()


async def test_a_migration_step_may_take_longer_than_the_statement_timeout(
    absent_database, monkeypatch
):
    """Like an index build on a million rows (here: a step sleeping 300 ms)."""
    await migrate.ensure_database(absent_database)
    engine = build_engine(msgspec.structs.replace(absent_database, statement_timeout_ms=100))

    def slow_step(config, revision):
        config.attributes["connection"].execute(text("SELECT pg_sleep(0.3)"))

    monkeypatch.setattr(migrate.command, "upgrade", slow_step)
    try:
        await migrate.run(engine)  # no QueryCanceledError
    finally:
        await engine.dispose()


async def test_five_replicas_starting_at_once_on_a_missing_database_all_serve(
    replica_config, absent_database
):
    """The `run` start-up path: wait for Postgres (creating the database), migrate, serve."""
    config = msgspec.structs.replace(polling_config(replica_config), database=absent_database)
    replicas = [Replica(config, session=PollingTelegram()) for _ in range(REPLICAS)]
    runs = [asyncio.create_task(replica.run()) for replica in replicas]
    try:
        await eventually(
            lambda: all(r.ready.is_set() for r in replicas) or any(run.done() for run in runs),
            seconds=60,
        )
        crashed = [run for run in runs if run.done()]
        assert not crashed, [run.exception() or run.result() for run in crashed]
        assert all(replica.ready.is_set() for replica in replicas)
    finally:
        for replica in replicas:
            replica.stop()
        codes = await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 60)
    assert codes == [0] * REPLICAS


async def test_a_migration_stuck_behind_a_long_transaction_fails_instead_of_waiting_for_ever(
    absent_database, monkeypatch
):
    """Its wait for a table lock is bounded by migration_lock_timeout_ms, so it
    does not hold every query on that table behind it."""
    await migrate.ensure_database(absent_database)
    url = absent_database.sqlalchemy_url
    engine = build_engine(absent_database)
    other = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, database=url.database
    )

    def altering_step(config, revision):
        config.attributes["connection"].execute(text("ALTER TABLE held ADD COLUMN note text"))

    monkeypatch.setattr(migrate.command, "upgrade", altering_step)
    try:
        await other.execute("CREATE TABLE held (id int)")
        transaction = other.transaction()
        await transaction.start()
        await other.execute("SELECT * FROM held")  # an open transaction reading the table
        with pytest.raises(DBAPIError) as failed:
            await asyncio.wait_for(migrate.run(engine, lock_timeout_ms=200), 10)
        assert isinstance(failed.value.orig.__cause__, asyncpg.LockNotAvailableError)
        await transaction.rollback()
    finally:
        await other.close()
        await engine.dispose()
