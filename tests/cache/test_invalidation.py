"""Invalidation across replicas: publish after commit, listeners drop L1, and
no stale fill ever lands (fakeredis, the real Redis and a Redis Cluster)."""

from __future__ import annotations

import asyncio

from cache import channels
from cache.keys import SLOT_GROUPS, group_of
from cache.messages import CacheReset, Message, encode_messages
from cache.snapshots import SCHEMA_VERSION, TOMBSTONE_SCHEMA, parse_header
from db.events import DealChanged, UserChanged
from tests.cache.conftest import Node, Pair

ALICE = 5001
BOB = 5002


def heard(node: Node, telegram_id: int, version: int) -> asyncio.Event:
    """Set once `node`'s listener has applied UserChanged(telegram_id, >= version)."""
    event = asyncio.Event()

    def hook(message: Message) -> None:
        if (
            isinstance(message, UserChanged)
            and message.telegram_id == telegram_id
            and message.version >= version
        ):
            event.set()

    node.listener.on_event.append(hook)
    return event


async def entry_header(node: Node, telegram_id: int) -> tuple[int, int] | None:
    raw = await node.cache.redis.get(node.cache.keys.snapshot(telegram_id))
    header = parse_header(raw) if raw is not None else None
    return (header.version, header.schema) if header else None


async def test_a_write_through_a_is_seen_by_b_after_its_invalidation(pair: Pair) -> None:
    a, b = await pair.node("a"), await pair.node("b")
    pair.loader.add(ALICE, available=100)
    assert (await a.cache.get(ALICE)).wallets[0].available == 100  # type: ignore[union-attr]
    assert (await b.cache.get(ALICE)).wallets[0].available == 100  # type: ignore[union-attr]
    assert b.cache.cached_locally(ALICE) is not None

    event = pair.loader.commit(ALICE, available=70)
    b_heard = heard(b, ALICE, event.version)
    a.trips.start()
    await a.publisher.publish((event,))
    assert a.trips.take() == [("EVALSHA", a.publish)]  # one pipelined round trip

    # Read-your-writes on the writer's replica, without waiting for anything.
    assert (await a.cache.get(ALICE)).version == 2  # type: ignore[union-attr]
    async with asyncio.timeout(5):
        await b_heard.wait()
    assert b.cache.cached_locally(ALICE) is None
    assert (await b.cache.get(ALICE)).wallets[0].available == 70  # type: ignore[union-attr]
    assert a.cache.counters.invalidations_sent == 1
    assert b.cache.counters.invalidations_received == 1


async def test_invalidation_leaves_a_tombstone_not_a_hole(pair: Pair) -> None:
    a = await pair.node("a")
    pair.loader.add(ALICE)
    await a.cache.get(ALICE)
    assert await entry_header(a, ALICE) == (1, SCHEMA_VERSION)
    await a.publisher.publish((pair.loader.commit(ALICE, available=1),))
    assert await entry_header(a, ALICE) == (2, TOMBSTONE_SCHEMA)
    ttl = await a.cache.redis.pttl(a.cache.keys.snapshot(ALICE))
    assert 0 < ttl <= pair.settings.tombstone_ttl_seconds * 1000
    # The next reader replaces the tombstone with version 2 and its full TTL.
    a.trips.start()
    assert (await a.cache.get(ALICE)).version == 2  # type: ignore[union-attr]
    assert a.trips.stop() == [("GET",), ("EVALSHA",)]
    assert await entry_header(a, ALICE) == (2, SCHEMA_VERSION)


async def test_a_reader_that_loaded_v1_cannot_fill_it_after_v2_is_committed(pair: Pair) -> None:
    """The forced interleaving: reader loads v1 → writer commits v2 and
    invalidates → reader tries to set v1. It must end with v2 or nothing."""
    a, b = await pair.node("a"), await pair.node("b")
    pair.loader.add(ALICE, available=100)

    gate = pair.loader.hold()
    reader = asyncio.create_task(b.cache.get(ALICE))
    await pair.loader.holding.wait()  # b has read version 1 from the database

    event = pair.loader.commit(ALICE, available=10)  # the writer commits version 2 ...
    await a.publisher.publish((event,))  # ... and its invalidation is applied
    gate.set()  # now the reader tries to fill version 1

    assert (await reader).version == 1  # what it read before the write finished
    assert await entry_header(a, ALICE) == (2, TOMBSTONE_SCHEMA)  # not version 1
    assert b.cache.counters.fills_refused == 1
    assert b.cache.cached_locally(ALICE) is None
    assert (await b.cache.get(ALICE)).version == 2  # type: ignore[union-attr]
    assert (await a.cache.get(ALICE)).version == 2  # type: ignore[union-attr]


async def test_delete_then_set_cannot_resurrect_an_older_entry(pair: Pair) -> None:
    """With an entry in L2 already: the invalidation must not be a plain DEL
    after which the slow reader's older fill lands."""
    a, b = await pair.node("a"), await pair.node("b")
    pair.loader.add(ALICE)
    await a.cache.get(ALICE)  # version 1 is in L2
    await a.publisher.publish((pair.loader.commit(ALICE, available=50),))  # tombstone v2
    gate = pair.loader.hold()
    reader = asyncio.create_task(b.cache.get(ALICE))  # misses, loads version 2 ...
    await pair.loader.holding.wait()
    await a.publisher.publish((pair.loader.commit(ALICE, available=20),))  # ... v3 commits
    gate.set()
    assert (await reader).version == 2
    assert await entry_header(a, ALICE) == (3, TOMBSTONE_SCHEMA)
    assert (await b.cache.get(ALICE)).version == 3  # type: ignore[union-attr]


async def test_a_read_racing_an_invalidation_does_not_stay_in_l1(pair: Pair) -> None:
    a = await pair.node("a")
    pair.loader.add(ALICE)
    gate = pair.loader.hold()
    reader = asyncio.create_task(a.cache.get(ALICE))
    await pair.loader.holding.wait()
    a.cache.drop_local(ALICE)  # an invalidation heard while the read was in flight
    gate.set()
    await reader
    assert a.cache.cached_locally(ALICE) is None
    assert a.cache.counters.l1_fills_skipped == 1


async def test_a_read_after_an_invalidation_does_not_join_an_older_load(pair: Pair) -> None:
    a = await pair.node("a")
    pair.loader.add(ALICE)
    gate = pair.loader.hold()
    old_read = asyncio.create_task(a.cache.get(ALICE))
    await pair.loader.holding.wait()
    await a.publisher.publish((pair.loader.commit(ALICE, available=5),))
    assert (await a.cache.get(ALICE)).version == 2  # type: ignore[union-attr]
    gate.set()
    assert (await old_read).version == 1
    assert a.cache.cached_locally(ALICE).version == 2  # type: ignore[union-attr]


async def test_an_invalidation_keeps_an_l1_entry_that_is_already_newer(pair: Pair) -> None:
    a = await pair.node("a")
    pair.loader.add(ALICE)
    event = pair.loader.commit(ALICE, available=1)
    await a.cache.get(ALICE)  # version 2 already
    a.cache.drop_local(ALICE, event.version)
    assert a.cache.cached_locally(ALICE) is not None


async def test_events_of_one_commit_travel_in_one_message(pair: Pair) -> None:
    a, b = await pair.node("a"), await pair.node("b")
    pair.loader.add(ALICE)
    pair.loader.add(BOB)
    for telegram_id in (ALICE, BOB):
        await b.cache.get(telegram_id)
    seen: list[Message] = []
    all_heard = asyncio.Event()

    def hook(message: Message) -> None:
        seen.append(message)
        if len(seen) == 3:  # on a cluster, a message per slot group
            all_heard.set()

    b.listener.on_event.append(hook)
    deal = DealChanged(7, "D7", 3, "funded", (ALICE, BOB))
    events = (pair.loader.commit(ALICE, 1), pair.loader.commit(BOB, 2), deal)
    a.trips.start()
    await a.publisher.publish(events)
    if a.cache.sharded:  # a message per slot group, all three on one master here
        assert a.trips.stop() == [("EVALSHA", "EVALSHA", "SPUBLISH", "SPUBLISH", "SPUBLISH")]
    else:
        assert a.trips.stop() == [("EVALSHA", "EVALSHA", "PUBLISH")]
    async with asyncio.timeout(5):
        await all_heard.wait()
    assert seen == list(events)  # deal changes reach the hooks too
    assert b.cache.cached_locally(ALICE) is None
    assert b.cache.cached_locally(BOB) is None


async def test_a_message_the_listener_cannot_read_clears_l1(pair: Pair) -> None:
    a = await pair.node("a")
    pair.loader.add(ALICE)
    await a.cache.get(ALICE)
    await a.publish_raw(b"\x92\xa6future\x01", group_of(BOB))
    probe = heard(a, BOB, 1)
    await a.publish_raw(encode_messages((UserChanged(2, BOB, 1),)), group_of(BOB))
    async with asyncio.timeout(5):
        await probe.wait()
    assert a.cache.counters.listener_bad_messages == 1
    assert a.cache.cached_locally(ALICE) is None


async def test_a_generation_reset_voids_every_entry_on_every_replica(pair: Pair) -> None:
    a, b = await pair.node("a"), await pair.node("b")
    pair.loader.add(ALICE)
    await a.cache.get(ALICE)
    await b.cache.get(ALICE)
    reset = asyncio.Event()
    # Alice's group's reset: on a cluster each group's travels on its own
    # master's channel, so another group's may arrive first
    b.listener.on_event.append(
        lambda m: reset.set() if isinstance(m, CacheReset) and m.group == group_of(ALICE) else None
    )
    resets = await a.cache.reset_generation()
    assert {reset.group for reset in resets} == set(range(SLOT_GROUPS))
    await channels.publish(a.cache.redis, a.cache.keys, resets)
    async with asyncio.timeout(5):
        await reset.wait()
    [generation] = {reset.generation for reset in resets if reset.group == group_of(ALICE)}
    assert b.cache.generation_of(group_of(ALICE)) == generation
    assert b.cache.cached_locally(ALICE) is None
    b.trips.start()
    await b.cache.get(ALICE)  # the old entry is not trusted: loaded and refilled
    assert b.trips.stop() == [("GET",), ("EVALSHA",)]
    assert pair.loader.calls == 2
    raw = await b.cache.redis.get(b.cache.keys.snapshot(ALICE))
    assert parse_header(raw).generation == generation  # type: ignore[union-attr]


async def test_a_reset_already_applied_leaves_l1_alone(pair: Pair) -> None:
    """A replica hears its own reset (and another's it learned of first from
    an entry) after it has read under the new generation: what it read stays."""
    a = await pair.node("a")
    pair.loader.add(ALICE)
    group = group_of(ALICE)
    [generation] = [r.generation for r in await a.cache.reset_generation() if r.group == group]
    resets: list[int] = []
    heard = asyncio.Event()

    def on_reset(message: Message) -> None:
        if isinstance(message, CacheReset):
            resets.append(message.generation)
            heard.set()

    a.listener.on_event.append(on_reset)
    await a.cache.get(ALICE)
    for late in (generation, generation - 1):  # its own echo, then an older one
        heard.clear()
        await a.publish_raw(encode_messages((CacheReset(late, group),)), group)
        async with asyncio.timeout(5):
            await heard.wait()
        assert a.cache.generation_of(group) == generation
        assert a.cache.cached_locally(ALICE) is not None
    assert resets == [generation, generation - 1]


async def test_a_replica_with_a_stale_generation_learns_it_from_a_refused_fill(
    pair: Pair,
) -> None:
    a = await pair.node("a")
    pair.loader.add(ALICE)
    group = group_of(ALICE)
    told = a.cache.generation_of(group)
    await a.cache.redis.incr(a.cache.keys.generations[group])  # nobody told a
    assert await a.cache.get(ALICE) is not None
    assert a.cache.generation_of(group) == told + 1
    assert a.cache.counters.fills_refused == 1
    await a.cache.get(ALICE)
    assert a.cache.counters.fills == 1


async def test_a_lost_script_cache_costs_one_reload(pair: Pair) -> None:
    if pair.backend.kind == "real":
        return  # SCRIPT FLUSH is server-wide; fakeredis and the cluster show the same path
    a = await pair.node("a")
    pair.loader.add(ALICE)
    await a.cache.get(ALICE)
    await a.cache.redis.script_flush()
    a.trips.start()
    await a.publisher.publish((pair.loader.commit(ALICE, available=3),))
    # (on a cluster the script is loaded on each of its three masters)
    loads = [("SCRIPT LOAD",)] * (3 if a.cache.sharded else 1)
    assert a.trips.stop() == [("EVALSHA", a.publish), *loads, ("EVALSHA", a.publish)]
    assert await entry_header(a, ALICE) == (2, TOMBSTONE_SCHEMA)
