"""Statements on the pooled connection's driver (db/driver.py): what was
SQLAlchemy's to do is still done as before. The same SQL and values reach
Postgres, the same rows come back, a unique violation is refused with the same
answers, a connection Postgres closed mid-transaction is replaced and the use
case runs again once, a cancelled update leaves nothing open on the pool's
connections, and a prune counts the rows it deleted."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.services.base import Service, sqlstate, violated_constraint
from bot.services.errors import EscrowError
from bot.services.ledger import Leg, post_movement
from bot.services.notifications import OutboxService
from db import Database, UnitOfWork
from db.engine import build_engine
from db.models import LedgerAccount, LedgerKind
from db.sql.deals import DEAL_BY_CODE
from db.sql.hot import EXEMPT, HOT_QUERIES, Sample
from db.sql.reads import STATS
from tests.conftest import Services
from tests.integration.helpers import balance

SAMPLE = Sample(
    user_id=1,
    telegram_id=1,
    username="nobody",
    currency="USDT",
    deal_id=1,
    deal_code="NOSUCH",
    invitee_telegram_id=2,
    admin_id=1,
)


@pytest.fixture
async def one_connection(pg_settings, database: Database) -> AsyncIterator[AsyncEngine]:
    """A pool of one connection: whatever a use case leaves on it, the next meets."""
    engine = build_engine(msgspec.structs.replace(pg_settings, pool_size=1, max_overflow=0))
    yield engine
    await engine.dispose()


def sent(engine: AsyncEngine) -> tuple[list[tuple[str, tuple[Any, ...]]], Any]:
    """What reaches the server through `engine`, as `before_cursor_execute` sees it."""
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def record(conn, cursor, statement, parameters, *args) -> None:
        seen.append((statement, tuple(parameters or ())))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    return seen, lambda: event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_every_hot_statement_reaches_postgres_as_sqlalchemy_sends_it(
    engine: AsyncEngine, database: Database
) -> None:
    seen, stop = sent(engine)
    try:
        for query in HOT_QUERIES:
            params = query.params(SAMPLE)
            # the values only shape the statement here: a failure is fine
            async with engine.connect() as conn:  # SQLAlchemy's own execution
                with contextlib.suppress(DBAPIError):
                    await conn.execute(query.statement, params)
            async with database.unit_of_work() as uow:
                with contextlib.suppress(DBAPIError):
                    await uow.execute(query.statement, params)
            (through_sqlalchemy, on_driver) = seen[-2:]
            assert on_driver == through_sqlalchemy, query.name
            assert len(seen) == 2
            seen.clear()
    finally:
        stop()
    assert len(HOT_QUERIES) + len(EXEMPT) > 60


async def test_rows_read_the_same_by_name_index_and_mapping(
    engine: AsyncEngine, database: Database, services: Services
) -> None:
    alice = await services.user("alice_rows", funds={"USDT": 50_00})
    bob = await services.user("bob_rows")
    admin = await services.admin()
    deal = (
        await services.deals.create(
            alice,
            role="buyer",
            currency="USDT",
            amount=10_00,
            description="rows",
            counterparty=bob.telegram_id,
        )
    ).value.deal
    for statement, params in [
        (DEAL_BY_CODE, {"code": deal.code}),
        (STATS, {"admin_id": admin.id}),  # JSON columns, decoded by the driver both ways
    ]:
        async with engine.connect() as conn:
            before = (await conn.execute(statement, params)).all()
        async with database.reader.connect() as conn:
            result = await conn.execute(statement, params)
            assert list(result.keys()) == list(before[0]._mapping.keys())
            rows = result.all()
        assert rows == before
        assert [dict(row._mapping) for row in rows] == [dict(row._mapping) for row in before]
    [row] = rows
    assert row.admin_ok is True and row[0] is True
    async with database.unit_of_work() as uow:
        found = (await uow.execute(DEAL_BY_CODE, {"code": deal.code})).one()
        assert (found.code, found.amount, found.status) == (deal.code, 10_00, "pending")
        assert (await uow.execute(DEAL_BY_CODE, {"code": "NOSUCH"})).one_or_none() is None
        counted = await uow.execute(text("SELECT count(*) FROM escrows WHERE id = :i"), {"i": 0})
        assert counted.scalar_one() == 0


async def test_a_unique_violation_is_refused_with_its_constraint_and_leaves_the_pool_clean(
    one_connection: AsyncEngine, services: Services
) -> None:
    alice = await services.user("alice_unique")
    own = Database(one_connection)
    insert = text(
        "INSERT INTO users (telegram_id, first_name) VALUES (:telegram_id, 'Again') RETURNING id"
    )
    with pytest.raises(IntegrityError) as refused:
        async with own.unit_of_work() as uow:
            await uow.execute(insert, {"telegram_id": alice.telegram_id})
    assert sqlstate(refused.value) == "23505"
    assert violated_constraint(refused.value) == "uq_users_telegram_id"
    assert not refused.value.connection_invalidated
    # the same connection, rolled back: the next transaction commits on it
    async with own.unit_of_work() as uow:
        await uow.execute(insert, {"telegram_id": 77_001})
        await uow.commit()
    async with own.reader.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM users WHERE telegram_id = 77001")) == 1
        assert await conn.scalar(text("SELECT 1")) == 1
        assert not conn.driver.is_in_transaction()  # as the server reported it


async def test_a_repeated_deposit_is_credited_once(services: Services) -> None:
    alice = await services.user("alice_twice")
    first = await services.wallets.credit_deposit(alice, "USDT", 5_00, reference="same")
    again = await services.wallets.credit_deposit(alice, "USDT", 5_00, reference="same")
    assert first.value.credited and not again.value.credited
    assert await balance(services.ctx.db, alice.id) == (5_00, 0)


async def test_a_connection_killed_mid_transaction_runs_the_use_case_again_once(
    one_connection: AsyncEngine, database: Database, services: Services
) -> None:
    alice = await services.user("alice_killed")
    own = Service(dataclasses.replace(services.ctx, db=Database(one_connection)))
    pids: list[int] = []
    failures: list[DBAPIError] = []

    async def work(uow: UnitOfWork) -> None:
        pids.append((await uow.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        if len(pids) == 1:
            async with database.engine.connect() as other:
                await other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pids[0]})
            await asyncio.sleep(0.2)
        try:
            await post_movement(
                uow,
                key="deposit:after-kill",
                currency="USDT",
                legs=[
                    Leg(LedgerKind.DEPOSIT, LedgerAccount.EXTERNAL, -3_00),
                    Leg(LedgerKind.DEPOSIT, LedgerAccount.AVAILABLE, 3_00, alice.id),
                ],
            )
        except DBAPIError as exc:
            failures.append(exc)
            raise

    await own.transaction(work)
    assert len(pids) == 2 and pids[0] != pids[1]
    assert [exc.connection_invalidated for exc in failures] == [True]
    async with database.reader.connect() as conn:
        keys = "SELECT count(*) FROM ledger_entries WHERE idempotency_key = 'deposit:after-kill'"
        assert await conn.scalar(text(keys)) == 2  # its two legs, once


async def test_a_cancelled_update_leaves_no_transaction_on_the_pool(
    one_connection: AsyncEngine, services: Services
) -> None:
    alice = await services.user("alice_cancelled")
    own = Database(one_connection)
    started = asyncio.Event()

    async def stuck() -> None:
        async with own.unit_of_work() as uow:
            await uow.execute(text("SELECT 1"))
            started.set()
            await uow.execute(text("SELECT pg_sleep(30)"))

    task = asyncio.create_task(stuck())
    await started.wait()
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the pool's one connection: a clean one, whatever the cancelled one was doing
    async with own.unit_of_work() as uow:
        row = (await uow.execute(text("SELECT id FROM users WHERE id = :i"), {"i": alice.id})).one()
        await uow.commit()
    assert row.id == alice.id
    async with own.reader.connect() as conn:
        assert await conn.scalar(text("SELECT 1")) == 1
        assert not conn.driver.is_in_transaction()  # as the server reported it


async def test_a_prune_counts_the_notifications_it_deleted(
    database: Database, services: Services
) -> None:
    async with database.engine.begin() as conn:
        await conn.execute(
            text("""
INSERT INTO notifications (chat_id, kind, status, created_at)
SELECT g, 'fund', CASE WHEN g % 2 = 0 THEN 'sent' ELSE 'pending' END,
       now() - interval '40 days'
FROM generate_series(1, 30) g
""")
        )
    outbox = OutboxService(services.ctx)
    assert await outbox.prune(timedelta(days=30), limit=10) == 10
    assert await outbox.prune(timedelta(days=30), limit=10) == 5
    assert await outbox.prune(timedelta(days=30), limit=10) == 0


CONNECTION_EVENTS = ("begin", "commit", "rollback")


def fired(counted: list[str], name: str, *args: Any) -> None:
    counted.append(name)


async def test_a_write_is_one_begin_and_one_commit_to_the_counters(
    engine: AsyncEngine, services: Services
) -> None:
    """What the benchmark's commit count and the e2e timelines listen to."""
    alice = await services.user("alice_counted", funds={"USDT": 20_00})
    bob = await services.user("bob_counted")
    counted: list[str] = []
    listeners = {name: functools.partial(fired, counted, name) for name in CONNECTION_EVENTS}
    for name, listener in listeners.items():
        event.listen(engine.sync_engine, name, listener)
    try:
        created = await services.deals.create(
            alice,
            role="buyer",
            currency="USDT",
            amount=5_00,
            description="counted",
            counterparty=bob.telegram_id,
        )
        assert counted == ["begin", "commit"]
        counted.clear()
        with pytest.raises(EscrowError):  # only the seller may accept it
            await services.deals.accept(alice, created.value.deal.code)
        assert counted == ["begin", "rollback"]
    finally:
        for name, listener in listeners.items():
            event.remove(engine.sync_engine, name, listener)
