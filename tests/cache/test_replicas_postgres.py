"""Two replicas on the real Postgres and the real Redis, writing through the
services: what a read costs, how soon the other replica sees a write, and
what happens when Redis goes away or hangs."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import event

from bot.config import Config
from bot.services.base import ServiceContext
from bot.services.settings import EscrowSettings
from cache.loader import PostgresSnapshotLoader
from cache.messages import Message
from cache.snapshots import TOMBSTONE_SCHEMA, UserSnapshot, parse_header
from db import Database
from db.events import Event, UserChanged
from tests.cache.conftest import ManualClock, Node, RealBackend, fast_settings, start_node
from tests.conftest import READS_FROM, Services, StatementLog

# The snapshot loads, also with a hot standby serving them.
pytestmark = READS_FROM

TELEGRAM_ID = 777_001


class Replica:
    """A bot replica: its cache node and the services publishing through it."""

    def __init__(self, node: Node, services: Services) -> None:
        self.node = node
        self.cache = node.cache
        self.services = services


class Cluster:
    def __init__(self, backend: RealBackend, a: Replica, b: Replica) -> None:
        self.backend = backend
        self.a = a
        self.b = b


@pytest.fixture
async def cluster(
    database: Database, redis_url: str, config: Config, escrow_settings: EscrowSettings
) -> AsyncIterator[Cluster]:
    backend = RealBackend(redis_url)
    await backend.start()
    settings = fast_settings()
    loader = PostgresSnapshotLoader(database.engine, database.standby)
    replicas = []
    for name in ("a", "b"):
        node = await start_node(backend, name, loader, settings, clock=ManualClock())
        ctx = ServiceContext(
            db=database,
            settings=escrow_settings,
            currencies=config.currency_table(),
            events=node.publisher,
        )
        replicas.append(Replica(node, Services(ctx)))
    yield Cluster(backend, *replicas)
    for replica in replicas:
        await replica.node.aclose()
    await backend.aclose()


@pytest.fixture
def begins(database: Database) -> Iterator[list[str]]:
    """Transaction control statements sent by asyncpg (invisible to `sql`).

    asyncpg calls query loggers soon after the query, not during it, so the
    logger stays on every connection checked out until the fixture ends (one
    removed at checkin would miss a query that had just run)."""
    seen: list[str] = []
    logged: list[Any] = []

    def logger(record: Any) -> None:
        # "BEGIN;", "BEGIN ISOLATION LEVEL READ COMMITTED;", "ROLLBACK;", ...
        if record.query.split()[0].upper().rstrip(";") in {"BEGIN", "COMMIT", "ROLLBACK"}:
            seen.append(record.query)

    def checkout(dbapi_connection: Any, *args: Any) -> None:
        connection = dbapi_connection._connection
        if connection not in logged:
            connection.add_query_logger(logger)
            logged.append(connection)

    pool = database.engine.sync_engine.pool
    event.listen(pool, "checkout", checkout)
    yield seen
    event.remove(pool, "checkout", checkout)
    for connection in logged:
        connection.remove_query_logger(logger)


def usdt(snapshot: UserSnapshot | None) -> int:
    assert snapshot is not None
    wallet = snapshot.wallet("USDT")
    assert wallet is not None
    return wallet.available


async def test_each_level_costs_what_it_should(
    cluster: Cluster, sql: StatementLog, begins: list[str]
) -> None:
    a, b = cluster.a, cluster.b
    user = await a.services.user("alice_c", telegram_id=TELEGRAM_ID, funds={"USDT": 50_00})
    await asyncio.sleep(0.05)  # the loggers of the set-up's statements have run
    begins.clear()

    sql.start()
    b.node.trips.start()
    snapshot = await b.cache.get(TELEGRAM_ID)  # miss
    assert b.node.trips.take() == [("GET",), ("EVALSHA",)]
    assert sql.stop() == [sql.statements[0]] and len(sql.statements) == 1
    await asyncio.sleep(0.05)  # asyncpg runs query loggers soon after, not during
    assert begins == []  # one round trip: no BEGIN/ROLLBACK around the SELECT
    assert snapshot is not None and (snapshot.id, snapshot.username) == (user.id, "alice_c")
    assert usdt(snapshot) == 50_00 and snapshot.version == user.version + 1

    sql.start()
    assert await b.cache.get(TELEGRAM_ID) == snapshot  # L1
    assert b.node.trips.stop() == []
    a.node.trips.start()
    assert await a.cache.get(TELEGRAM_ID) == snapshot  # L2
    assert a.node.trips.stop() == [("GET",)]
    assert sql.stop() == []


async def test_a_write_through_a_is_seen_by_b_and_how_soon(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = cluster.a, cluster.b
    await a.services.user("alice_c", telegram_id=TELEGRAM_ID, funds={"USDT": 1_00})
    actor = await a.cache.get(TELEGRAM_ID)
    assert actor is not None

    committed: dict[int, float] = {}
    dropped: dict[int, float] = {}
    drop_seen = asyncio.Event()
    publisher = a.node.publisher

    class Stopwatch:
        """Between commit and publish: Service.transaction calls it right after commit."""

        async def publish(self, events: tuple[Event, ...]) -> None:
            for e in events:
                if isinstance(e, UserChanged):
                    committed[e.version] = time.perf_counter()
            await publisher.publish(events)

    def on_event(message: Message) -> None:
        if isinstance(message, UserChanged) and message.telegram_id == TELEGRAM_ID:
            dropped[message.version] = time.perf_counter()
            drop_seen.set()

    a.services.ctx.events = Stopwatch()
    b.node.listener.on_event.append(on_event)
    balance = 1_00
    for round_ in range(50):
        assert usdt(await b.cache.get(TELEGRAM_ID)) == balance  # b holds it in L1
        assert b.cache.cached_locally(TELEGRAM_ID) is not None
        drop_seen.clear()
        await a.services.wallets.credit_deposit(actor, "USDT", 1_00, reference=f"r{round_}")
        balance += 1_00
        async with asyncio.timeout(5):
            await drop_seen.wait()
        assert b.cache.cached_locally(TELEGRAM_ID) is None
        assert usdt(await b.cache.get(TELEGRAM_ID)) == balance  # never the old one

    lags = sorted((dropped[v] - committed[v]) * 1000 for v in committed)
    with capsys.disabled():
        print(
            f"\ncommit -> remote L1 drop over {len(lags)} writes: "
            f"median {statistics.median(lags):.2f} ms, "
            f"p95 {lags[int(len(lags) * 0.95) - 1]:.2f} ms, max {lags[-1]:.2f} ms"
        )


async def test_100_concurrent_misses_are_one_sql_statement(
    cluster: Cluster, sql: StatementLog
) -> None:
    await cluster.a.services.user("alice_c", telegram_id=TELEGRAM_ID)
    b = cluster.b
    sql.start()
    b.node.trips.start()
    results = await asyncio.gather(*(b.cache.get(TELEGRAM_ID) for _ in range(100)))
    assert len(sql.stop()) == 1
    assert b.node.trips.stop() == [("GET",), ("EVALSHA",)]
    assert len({id(r) for r in results}) == 1 and results[0] is not None


async def test_a_stale_fill_loses_to_a_commit_on_postgres(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    await a.services.user("alice_c", telegram_id=TELEGRAM_ID, funds={"USDT": 10_00})
    actor = await a.cache.get(TELEGRAM_ID)
    assert actor is not None
    await a.cache.redis.delete(a.cache.keys.snapshot(TELEGRAM_ID))
    b.cache.clear_local()

    # b's load runs the real SELECT, then waits before it may fill.
    loaded, release = asyncio.Event(), asyncio.Event()
    real_loader = PostgresSnapshotLoader(cluster.a.services.ctx.db.engine)

    async def slow_loader(telegram_id: int) -> UserSnapshot | None:
        snapshot = await real_loader(telegram_id)
        loaded.set()
        await release.wait()
        return snapshot

    b.cache.loader = slow_loader
    reader = asyncio.create_task(b.cache.get(TELEGRAM_ID))
    await loaded.wait()  # b has read version N
    outcome = await a.services.wallets.credit_deposit(actor, "USDT", 5_00, reference="late")
    new_version = outcome.events[0].version  # committed and invalidated
    release.set()

    stale = await reader
    assert stale is not None and stale.version == new_version - 1
    raw = await a.cache.redis.get(a.cache.keys.snapshot(TELEGRAM_ID))
    header = parse_header(raw)
    assert header is not None and (header.version, header.schema) == (new_version, TOMBSTONE_SCHEMA)
    b.cache.loader = real_loader
    assert usdt(await b.cache.get(TELEGRAM_ID)) == 15_00


async def test_an_unknown_user_is_not_cached_and_registering_is_seen(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    assert await b.cache.get(TELEGRAM_ID) is None
    await a.services.user("newcomer", telegram_id=TELEGRAM_ID)
    snapshot = await b.cache.get(TELEGRAM_ID)
    assert snapshot is not None and snapshot.username == "newcomer"
    assert {w.currency for w in snapshot.wallets} == {"USDT", "BTC", "TON"}


async def test_with_redis_gone_writes_commit_and_reads_come_from_postgres(
    cluster: Cluster, sql: StatementLog
) -> None:
    a, b = cluster.a, cluster.b
    await a.services.user("alice_c", telegram_id=TELEGRAM_ID, funds={"USDT": 10_00})
    actor = await b.cache.get(TELEGRAM_ID)  # b has it in L1 and L2
    assert actor is not None

    await cluster.backend.stop_serving()
    for replica in (a, b):
        async with asyncio.timeout(5):
            await replica.node.listener.wait_for("disconnected")

    # The snapshot is a fine Actor for the services; the deposit commits.
    outcome = await a.services.wallets.credit_deposit(actor, "USDT", 2_00, reference="offline")
    assert outcome.value.credited
    assert a.node.publisher.pending == 1

    sql.start()
    assert usdt(await b.cache.get(TELEGRAM_ID)) == 12_00  # from Postgres, not the stale L1
    assert usdt(await b.cache.get(TELEGRAM_ID)) == 12_00
    assert len(sql.stop()) == 2  # every read goes to Postgres while Redis is away

    await cluster.backend.resume_serving()
    async with asyncio.timeout(5):
        await a.node.publisher.wait_drained()
        await b.node.listener.wait_for("subscribed")
    sql.start()
    assert usdt(await b.cache.get(TELEGRAM_ID)) == 12_00  # L2 holds the tombstone: reloaded
    assert usdt(await b.cache.get(TELEGRAM_ID)) == 12_00  # and then L1 again
    assert len(sql.stop()) == 1


async def test_a_redis_that_stops_answering_costs_one_timeout(cluster: Cluster) -> None:
    a = cluster.a
    await a.services.user("alice_c", telegram_id=TELEGRAM_ID, funds={"USDT": 9_00})
    cluster.backend.proxy.blackhole()
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        assert usdt(await a.cache.get(TELEGRAM_ID)) == 9_00
        timings.append((time.perf_counter() - started) * 1000)
    assert a.cache.breaker.state == "open"
    assert a.cache.counters.redis_errors == 1  # one timeout, then the breaker
    # A listener on a connection that went silent notices by the missing PONG.
    async with asyncio.timeout(5):
        await cluster.b.node.listener.wait_for("disconnected")
    assert not cluster.b.cache.l1_trusted
    print(f"\nreads with a hanging Redis: {', '.join(f'{t:.1f} ms' for t in timings)}")
    actor = await a.cache.get(TELEGRAM_ID)
    assert actor is not None
    started = time.perf_counter()
    await a.services.wallets.credit_deposit(actor, "USDT", 1_00, reference="hang")
    print(f"a deposit with the breaker open: {(time.perf_counter() - started) * 1000:.1f} ms")
    assert a.node.publisher.pending == 1
