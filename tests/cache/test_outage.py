"""Redis trouble: the listener losing its connection, Redis going away and
coming back, a Redis that stops answering. Reads stay correct throughout,
writes are never failed by the cache, and it recovers by itself."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from cache.messages import CacheReset
from cache.snapshots import SCHEMA_VERSION, TOMBSTONE_SCHEMA, parse_header
from tests.cache.conftest import Node, Pair, fast_settings

ALICE = 5001
BOB = 5002
CAROL = 5003


async def version_in_redis(node: Node, telegram_id: int) -> tuple[int, int] | None:
    raw = await node.cache.redis.get(node.cache.keys.snapshot(telegram_id))
    header = parse_header(raw) if raw is not None else None
    return (header.version, header.schema) if header else None


async def test_a_listener_that_loses_its_connection_stops_trusting_l1(pair: Pair) -> None:
    a, b = await pair.node("a"), await pair.node("b")
    pair.loader.add(ALICE, available=100)
    await b.cache.get(ALICE)
    assert b.cache.l1_trusted and b.cache.cached_locally(ALICE) is not None

    states: list[str] = []
    original = b.listener._set_state

    async def record(state: str) -> None:  # type: ignore[no-untyped-def]
        states.append(state)
        await original(state)  # type: ignore[arg-type]

    b.listener._set_state = record  # type: ignore[method-assign]
    assert await pair.backend.kill_subscriber(b.listener_name) >= 1
    async with asyncio.timeout(5):
        await b.listener.wait_for("disconnected")
    # Whatever is published now may never reach b: its L1 is gone and bypassed.
    assert not b.cache.l1_trusted and b.cache.l1_len == 0
    await a.publisher.publish((pair.loader.commit(ALICE, available=1),))
    before = b.cache.counters.l1_bypassed
    assert (await b.cache.get(ALICE)).version == 2  # type: ignore[union-attr]
    assert b.cache.counters.l1_bypassed == before + 1

    async with asyncio.timeout(5):
        await b.listener.wait_for("subscribed")  # reconnected by itself
    assert states[0] == "disconnected" and states[-1] == "subscribed"
    assert b.cache.l1_trusted
    assert (b.cache.counters.listener_connects, b.cache.counters.listener_disconnects) == (2, 1)
    assert (await b.cache.get(ALICE)).version == 2  # type: ignore[union-attr]
    b.trips.start()
    assert (await b.cache.get(ALICE)).version == 2  # type: ignore[union-attr]
    assert b.trips.stop() == []  # L1 is back in use


async def test_reads_survive_redis_going_away_and_the_cache_recovers(pair: Pair) -> None:
    a, b = await pair.node("a"), await pair.node("b")
    pair.loader.add(ALICE, available=100)
    pair.loader.add(BOB, available=100)
    for node in (a, b):
        await node.cache.get(ALICE)
    assert await version_in_redis(a, ALICE) == (1, SCHEMA_VERSION)

    await pair.backend.stop_serving()
    for node in (a, b):
        async with asyncio.timeout(5):
            await node.listener.wait_for("disconnected")
        assert not node.cache.l1_trusted

    # A write commits while Redis is away: publishing must not fail it.
    event = pair.loader.commit(ALICE, available=40)
    await a.publisher.publish((event,))
    assert a.publisher.pending == 1
    assert a.cache.counters.publish_failures + a.cache.counters.invalidations_pending >= 1

    # Reads are correct, from the database, and do not touch Redis at all: with
    # its listener away, nothing Redis would answer could be trusted.
    b.trips.start()
    assert (await b.cache.get(ALICE)).wallets[0].available == 40  # type: ignore[union-attr]
    assert (await b.cache.get(ALICE)).wallets[0].available == 40  # type: ignore[union-attr]
    assert (await b.cache.get(BOB)).wallets[0].available == 100  # type: ignore[union-attr]
    assert b.trips.stop() == []
    assert b.cache.counters.l2_skipped >= 3

    await pair.backend.resume_serving()
    # The writer's held-back invalidation goes out as soon as it is back ...
    async with asyncio.timeout(5):
        await a.publisher.wait_drained()
    assert await version_in_redis(a, ALICE) == (2, TOMBSTONE_SCHEMA)
    # ... and the readers use Redis again once their breaker's open time is over.
    pair.clock.advance(pair.settings.breaker_open_seconds)
    async with asyncio.timeout(5):
        await b.listener.wait_for("subscribed")
    assert (await b.cache.get(ALICE)).wallets[0].available == 40  # type: ignore[union-attr]
    assert b.cache.breaker.state == "closed" and b.cache.l1_trusted
    assert await version_in_redis(b, ALICE) == (2, SCHEMA_VERSION)
    b.trips.start()
    await b.cache.get(ALICE)
    assert b.trips.stop() == []  # L1 again


async def test_only_one_read_probes_redis_when_the_breaker_half_opens(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await pair.node("a")
    pair.loader.add(ALICE)
    # Redis refuses the readers' commands while the listener stays subscribed
    # (with the listener away, reads would not try Redis at all).
    tries: list[str] = []

    async def refused(key: str) -> None:
        tries.append(key)
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(a.cache.redis, "get", refused)
    assert await a.cache.get(ALICE) is not None
    assert a.cache.breaker.state == "open"
    pair.loader.add(BOB)
    pair.loader.add(CAROL)
    errors = a.cache.counters.redis_errors
    pair.clock.advance(pair.settings.breaker_open_seconds)
    await asyncio.gather(*(a.cache.get(telegram_id) for telegram_id in (ALICE, BOB, CAROL)))
    # One probe (it failed); the other two went straight to the database.
    assert a.cache.counters.redis_errors == errors + 1
    assert len(tries) == 2
    assert a.cache.counters.l2_skipped >= 2
    assert a.cache.breaker.state == "open"


async def test_invalidations_lost_beyond_the_limit_reset_the_generation(pair: Pair) -> None:
    settings = fast_settings(pending_limit=1)
    a = await pair.node("a", settings=settings)
    b = await pair.node("b", settings=settings)
    for telegram_id in (ALICE, BOB, CAROL):
        pair.loader.add(telegram_id)
        await b.cache.get(telegram_id)
    generation = b.cache.generation
    reset_heard = asyncio.Event()
    b.listener.on_event.append(lambda m: reset_heard.set() if isinstance(m, CacheReset) else None)

    await pair.backend.stop_serving()
    async with asyncio.timeout(5):
        await b.listener.wait_for("disconnected")
    await a.publisher.publish((pair.loader.commit(ALICE, 1), pair.loader.commit(BOB, 2)))
    assert a.cache.counters.invalidations_overflowed == 1
    await pair.backend.resume_serving()

    async with asyncio.timeout(5):
        await a.publisher.wait_drained()
        await b.listener.wait_for("subscribed")
        if b.cache.generation == generation:  # subscribed before the reset: hears it
            await reset_heard.wait()
    assert b.cache.generation > generation
    assert a.cache.counters.generation_resets == 1
    # Every entry from before is void, whoever changed or not.
    loads = pair.loader.calls
    assert (await b.cache.get(BOB)).version == 2  # type: ignore[union-attr]
    assert (await b.cache.get(CAROL)).version == 1  # type: ignore[union-attr]
    assert pair.loader.calls == loads + 2


async def test_a_publish_cancelled_mid_send_keeps_its_invalidation_owed(pair: Pair) -> None:
    a = await pair.node("a")
    pair.loader.add(ALICE)
    entered, never = asyncio.Event(), asyncio.Event()

    async def stuck(*args: object) -> None:
        entered.set()
        await never.wait()

    a.publisher._apply = stuck  # type: ignore[method-assign]
    task = asyncio.create_task(a.publisher.publish((pair.loader.commit(ALICE, 1),)))
    await entered.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert a.publisher.pending == 1
    del a.publisher._apply  # the real one again
    await a.publisher.flush_pending()
    assert a.publisher.pending == 0
    assert await version_in_redis(a, ALICE) == (2, TOMBSTONE_SCHEMA)


async def test_a_replica_starts_without_redis_and_picks_it_up_later(pair: Pair) -> None:
    from cache.replica import CacheReplica

    pair.loader.add(ALICE)
    await pair.backend.stop_serving()
    client = pair.backend.client()
    replica = CacheReplica.build(client, pair.loader, pair.settings, clock=pair.clock)
    try:
        await replica.start(wait_seconds=0.2)  # gives up waiting, does not fail
        assert replica.listener.state != "subscribed"
        assert await replica.cache.get(ALICE) is not None  # from the database
        await pair.backend.resume_serving()
        async with asyncio.timeout(5):
            await replica.listener.wait_for("subscribed")
        assert replica.cache.l1_trusted
        await replica.cache.get(ALICE)
        assert replica.cache.cached_locally(ALICE) is not None
    finally:
        await replica.aclose()
        await client.aclose()
