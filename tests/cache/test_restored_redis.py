"""A Redis that comes back with older data than Postgres: restarted from its
saved snapshot (or a failover to a replica that lagged). Its entries carry
the generation the replicas still use, so nothing about them looks old; the
listener notices that this Redis is not the one they were written to (its
run_id) and every entry it holds is disowned, with no stale read meanwhile.

On a redis-server of the test's own (tests/cache/redis_server.py), two
replicas on the real Postgres, writing through the services."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from bot.config import Config
from bot.services.base import ServiceContext
from bot.services.settings import EscrowSettings
from cache.client import no_retries
from cache.keys import SLOT_GROUPS, CacheKeys
from cache.loader import PostgresSnapshotLoader
from cache.scripts import RUN_UNKNOWN, RunCheck
from cache.snapshots import UserSnapshot, parse_header
from db import Database
from tests.cache.conftest import (
    Backend,
    FakeBackend,
    FakeLoader,
    ManualClock,
    Node,
    RoundTrips,
    counting_connection,
    fast_settings,
    start_node,
)
from tests.cache.redis_server import OwnRedis
from tests.conftest import Services

TELEGRAM_ID = 778_001


class OwnBackend(Backend):
    """Clients straight to the test's own redis-server."""

    kind = "own"

    def __init__(self, server: OwnRedis) -> None:
        self.server = server

    def client(self, trips: RoundTrips | None = None, name: str | None = None) -> aioredis.Redis:
        base = aioredis.Connection
        pool = aioredis.ConnectionPool(
            connection_class=counting_connection(base, trips) if trips else base,
            host="127.0.0.1",
            port=self.server.port,
            client_name=name,
            socket_timeout=0.2,
            socket_connect_timeout=0.2,
            retry=no_retries(),
        )
        return aioredis.Redis(connection_pool=pool)


class Replica:
    def __init__(self, node: Node, services: Services, clock: ManualClock) -> None:
        self.node = node
        self.cache = node.cache
        self.listener = node.listener
        self.services = services
        self.clock = clock

    async def shows(self) -> int:
        """The USDT balance a read through this replica's cache shows, after its
        breaker's open time (if a failure opened it) is over."""
        self.clock.advance(self.cache.settings.breaker_open_seconds)
        return usdt(await self.cache.get(TELEGRAM_ID))


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def replicas(
    server: OwnRedis, database: Database, config: Config, escrow_settings: EscrowSettings
) -> AsyncIterator[list[Replica]]:
    backend = OwnBackend(server)
    settings = fast_settings()
    loader = PostgresSnapshotLoader(database.engine)
    replicas = []
    for name in ("a", "b"):
        clock = ManualClock()
        node = await start_node(backend, name, loader, settings, clock=clock)
        ctx = ServiceContext(
            db=database,
            settings=escrow_settings,
            currencies=config.currency_table(),
            events=node.publisher,
        )
        replicas.append(Replica(node, Services(ctx), clock))
    yield replicas
    for replica in replicas:
        await replica.node.aclose()


def usdt(snapshot: UserSnapshot | None) -> int:
    assert snapshot is not None
    wallet = snapshot.wallet("USDT")
    assert wallet is not None
    return wallet.available


async def entry_version(server: OwnRedis, replica: Replica) -> int | None:
    client = server.client()
    try:
        raw = await client.get(replica.cache.keys.snapshot(TELEGRAM_ID))
    finally:
        await client.aclose()
    header = parse_header(raw) if raw is not None else None
    return header.version if header is not None else None


async def test_a_redis_restarted_from_an_older_save_never_shows_the_old_balance(
    server: OwnRedis, replicas: list[Replica]
) -> None:
    a, b = replicas
    await a.services.user("alice_r", telegram_id=TELEGRAM_ID, funds={"USDT": 10_00})
    for replica in (a, b):
        assert usdt(await replica.cache.get(TELEGRAM_ID)) == 10_00
    old_version = await entry_version(server, a)
    await server.save()  # Redis's own persistence: this is what a restart brings back

    actor = await a.cache.get(TELEGRAM_ID)
    assert actor is not None
    await a.services.wallets.credit_deposit(actor, "USDT", 2_00, reference="after-save")
    for replica in (a, b):
        assert usdt(await replica.cache.get(TELEGRAM_ID)) == 12_00
    generations = {replica.cache.generation for replica in (a, b)}
    disowned = sum(replica.cache.counters.redis_runs_disowned for replica in (a, b))
    run = await server.run_id()

    await server.stop()
    for replica in (a, b):
        async with asyncio.timeout(5):
            await replica.listener.wait_for("disconnected")
    await server.start()
    assert await server.run_id() != run
    assert await entry_version(server, a) == old_version  # the old entry is back

    # From the moment Redis answers again, through the listeners' reconnects,
    # every read shows the balance after the deposit.
    shown: list[tuple[str, int, str]] = []
    async with asyncio.timeout(10):
        while not all(r.listener.state == "subscribed" for r in (a, b)):
            for name, replica in (("a", a), ("b", b)):
                shown.append((name, await replica.shows(), replica.listener.state))
            await asyncio.sleep(0.005)
    # (a replica's first command on a connection from before the restart fails
    # and opens its breaker: Postgres serves until its open time is over)
    async with asyncio.timeout(10):
        while not (
            all(r.cache.l1_trusted for r in (a, b))
            and await entry_version(server, a) == old_version + 1
        ) and all(balance == 12_00 for _, balance, _ in shown):
            for name, replica in (("a", a), ("b", b)):
                shown.append((name, await replica.shows(), "subscribed"))
            await asyncio.sleep(0.005)
    assert [s for s in shown if s[1] != 12_00] == []

    # The replicas agree on one new generation, past any they had used; the
    # old entry was disowned once, by whichever replica checked first.
    assert a.cache.generation == b.cache.generation > max(generations)
    assert sum(r.cache.counters.redis_runs_disowned for r in (a, b)) == disowned + 1
    # and the cache works as before: the new balance is in L2, under the new generation
    b.cache.clear_local()
    b.node.trips.start()
    assert usdt(await b.cache.get(TELEGRAM_ID)) == 12_00
    assert b.node.trips.stop() == [("GET",)]


async def test_until_its_listener_has_checked_redis_a_replica_reads_only_postgres(
    server: OwnRedis, replicas: list[Replica]
) -> None:
    """Reads may reach the restored Redis before this replica's listener is
    back (its backoff; a command retried on a new connection): they do not use
    it, even after another replica has disowned the entries, since this one
    still reads under the old generation."""
    a, b = replicas
    await a.services.user("alice_r", telegram_id=TELEGRAM_ID, funds={"USDT": 10_00})
    assert usdt(await b.cache.get(TELEGRAM_ID)) == 10_00
    await server.save()
    actor = await a.cache.get(TELEGRAM_ID)
    assert actor is not None
    received = b.cache.counters.invalidations_received
    await a.services.wallets.credit_deposit(actor, "USDT", 2_00, reference="after-save")
    for _ in range(500):  # b hears of the deposit through the channel
        if b.cache.counters.invalidations_received > received:
            break
        await asyncio.sleep(0.01)
    assert await b.shows() == 12_00
    hits = b.cache.counters.l2_hits

    gate = asyncio.Event()
    subscribe = b.listener._subscribe

    async def held_back(pubsub: Any) -> None:
        await gate.wait()
        await subscribe(pubsub)

    b.listener._subscribe = held_back  # type: ignore[method-assign]
    await server.stop()
    for replica in (a, b):
        async with asyncio.timeout(5):
            await replica.listener.wait_for("disconnected")
    await server.start()
    async with asyncio.timeout(5):
        await a.listener.wait_for("subscribed")  # a has disowned the old entries
    assert a.cache.counters.redis_runs_disowned == 2  # at its first start, and now
    shown = [await b.shows() for _ in range(5)]
    assert shown == [12_00] * 5
    assert b.cache.counters.l2_hits == hits  # Redis was not read
    gate.set()
    async with asyncio.timeout(5):
        await b.listener.wait_for("subscribed")
    assert b.cache.generation == a.cache.generation
    assert await b.shows() == 12_00


async def test_a_redis_that_restarts_with_nothing_saved_is_disowned_as_well(
    server: OwnRedis, replicas: list[Replica]
) -> None:
    """An empty Redis after a restart holds nothing stale, but the replicas
    cannot tell it from a restored one: disowning costs one reload per user."""
    a, b = replicas
    await a.services.user("alice_r", telegram_id=TELEGRAM_ID, funds={"USDT": 10_00})
    generation = a.cache.generation
    await server.stop()
    await server.start()
    for replica in (a, b):
        async with asyncio.timeout(5):
            await replica.listener.wait_for("subscribed")
    assert a.cache.generation == b.cache.generation > generation
    assert usdt(await b.cache.get(TELEGRAM_ID)) == 10_00


async def test_reconnecting_to_the_same_redis_disowns_nothing(
    server: OwnRedis, replicas: list[Replica]
) -> None:
    a, b = replicas
    await a.services.user("alice_r", telegram_id=TELEGRAM_ID, funds={"USDT": 10_00})
    assert usdt(await a.cache.get(TELEGRAM_ID)) == 10_00
    generation = b.cache.generation
    assert await OwnBackend(server).kill_subscriber(b.node.listener_name) == 1
    async with asyncio.timeout(5):
        await b.listener.wait_for("disconnected")
        await b.listener.wait_for("subscribed")
    assert b.cache.generation == generation
    assert b.cache.counters.redis_runs_disowned == 0
    b.node.trips.start()
    assert usdt(await b.cache.get(TELEGRAM_ID)) == 10_00
    assert b.node.trips.stop() == [("GET",)]  # a's entry is still good: an L2 hit


# -- the check itself ----------------------------------------------------------------


async def test_replicas_checking_a_new_redis_at_once_disown_it_once(backend: Backend) -> None:
    """Ten replicas check one slot group at once: one disowns it, the others
    take its new generation; fakeredis refuses INFO and changes nothing."""
    redis = backend.client()
    keys, group = CacheKeys(f"check-{secrets.token_hex(4)}"), 3
    await redis.set(keys.generations[group], 7)  # what the restored data says
    await redis.set(keys.redis_runs[group], "0123abcd")  # written to another run
    # replicas that had used up to generation 9 since that data was saved
    highest = [9 if g == group else 0 for g in range(SLOT_GROUPS)]
    results = await asyncio.gather(*(RunCheck(redis, keys)(highest) for _ in range(10)))
    try:
        if backend.kind == "fake":
            assert {result[group] for result in results} == {(RUN_UNKNOWN, 7)}
            return
        assert sorted(result[group] for result in results) == [(0, 10)] * 9 + [(1, 10)]
        assert (await RunCheck(redis, keys)(highest))[group] == (0, 10)
        await redis.set(keys.redis_runs[group], "4567cdef")  # as if restarted again
        assert (await RunCheck(redis, keys)([3] * SLOT_GROUPS))[group] == (1, 11)
    finally:
        await redis.aclose()


async def test_a_redis_that_does_not_tell_its_run_id_is_used_as_before(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """fakeredis (like some proxies) refuses INFO: nothing can be detected, so
    the generation is read as before, and the operator is told once."""
    backend = FakeBackend()
    loader = FakeLoader()
    loader.add(5001)
    with caplog.at_level(logging.WARNING, logger="cache.listener"):
        node = await start_node(backend, "a", loader, fast_settings(), clock=ManualClock())
    try:
        assert node.cache.generation == 0 and node.cache.counters.redis_runs_disowned == 0
        assert await node.cache.get(5001) is not None
        node.trips.start()
        node.cache.clear_local()
        assert await node.cache.get(5001) is not None
        assert node.trips.stop() == [("GET",)]
        [told] = [r.getMessage() for r in caplog.records if r.name == "cache.listener"]
        assert "does not tell its run_id" in told
    finally:
        await node.aclose()
