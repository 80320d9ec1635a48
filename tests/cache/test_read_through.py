"""Read-through: what each read costs, single flight, schema versions, L1 TTL.

Every test runs on fakeredis and on the real Redis (the `backend` fixture).
"""

from __future__ import annotations

import asyncio

import msgspec

from cache.snapshots import (
    SCHEMA_VERSION,
    ReputationSnapshot,
    SnapshotCodec,
    UserSnapshot,
    WalletSnapshot,
    parse_header,
)
from tests.cache.conftest import Pair

ALICE = 5001


async def test_l1_hit_l2_hit_and_miss_cost_what_they_should(pair: Pair) -> None:
    a, b = await pair.node("a"), await pair.node("b")
    alice = pair.loader.add(ALICE)

    a.trips.start()
    assert await a.cache.get(ALICE) == alice  # miss: GET, one load, one fill
    assert a.trips.take() == [("GET",), ("EVALSHA",)]
    assert pair.loader.calls == 1

    assert await a.cache.get(ALICE) == alice  # L1 hit
    assert a.trips.stop() == []
    assert pair.loader.calls == 1

    b.trips.start()
    assert await b.cache.get(ALICE) == alice  # L2 hit: one GET, no load
    assert b.trips.take() == [("GET",)]
    assert await b.cache.get(ALICE) == alice  # and now an L1 hit
    assert b.trips.stop() == []
    assert pair.loader.calls == 1

    assert (a.cache.counters.l1_hits, a.cache.counters.loads, a.cache.counters.fills) == (1, 1, 1)
    assert (b.cache.counters.l2_hits, b.cache.counters.l1_hits, b.cache.counters.loads) == (1, 1, 0)


async def test_unknown_user_is_a_miss_that_is_not_cached(pair: Pair) -> None:
    a = await pair.node("a")
    a.trips.start()
    assert await a.cache.get(404) is None
    assert await a.cache.get(404) is None
    assert a.trips.stop() == [("GET",), ("GET",)]  # no fill, no L1 entry
    assert pair.loader.calls == 2
    assert await a.cache.redis.exists(a.cache.keys.snapshot(404)) == 0

    registered = pair.loader.add(404)  # registering announces the user like any change
    assert await a.cache.get(404) == registered


async def test_concurrent_misses_share_one_load(pair: Pair) -> None:
    a = await pair.node("a")
    alice = pair.loader.add(ALICE)
    gate = pair.loader.hold()

    a.trips.start()
    readers = [asyncio.create_task(a.cache.get(ALICE)) for _ in range(100)]
    await pair.loader.holding.wait()
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*readers)

    assert results == [alice] * 100
    assert pair.loader.calls == 1
    assert a.trips.stop() == [("GET",), ("EVALSHA",)]
    assert a.cache.counters.load_joins == 99


async def test_a_reader_that_gives_up_does_not_cancel_the_shared_load(pair: Pair) -> None:
    a = await pair.node("a")
    alice = pair.loader.add(ALICE)
    gate = pair.loader.hold()
    impatient = asyncio.create_task(a.cache.get(ALICE))
    await pair.loader.holding.wait()
    patient = asyncio.create_task(a.cache.get(ALICE))
    await asyncio.sleep(0)
    impatient.cancel()
    gate.set()
    assert await patient == alice
    assert pair.loader.calls == 1


async def test_l1_entries_expire_after_their_ttl(pair: Pair) -> None:
    a = await pair.node("a")
    pair.loader.add(ALICE)
    await a.cache.get(ALICE)
    pair.clock.advance(pair.settings.l1_ttl_seconds - 1)
    a.trips.start()
    await a.cache.get(ALICE)
    assert a.trips.take() == []
    pair.clock.advance(2)
    await a.cache.get(ALICE)
    assert a.trips.stop() == [("GET",)]  # back to L2, not to the database
    assert pair.loader.calls == 1


async def test_l1_is_bounded(pair: Pair) -> None:
    from tests.cache.conftest import fast_settings

    a = await pair.node("a", settings=fast_settings(l1_size=3))
    for telegram_id in range(6000, 6005):
        pair.loader.add(telegram_id)
        await a.cache.get(telegram_id)
    assert a.cache.l1_len == 3
    assert a.cache.cached_locally(6000) is None  # the oldest went first
    assert a.cache.cached_locally(6004) is not None


async def test_l1_keeps_what_is_read_and_lets_the_least_recently_read_go(pair: Pair) -> None:
    from tests.cache.conftest import fast_settings

    a = await pair.node("a", settings=fast_settings(l1_size=3))
    for telegram_id in (6100, 6101, 6102):
        pair.loader.add(telegram_id)
        await a.cache.get(telegram_id)
    await a.cache.get(6100)  # the first one filled is read again
    pair.loader.add(6103)
    await a.cache.get(6103)
    assert a.cache.cached_locally(6100) is not None
    assert a.cache.cached_locally(6101) is None  # read least recently: it went
    a.trips.start()
    await a.cache.get(6100)
    assert a.trips.stop() == []  # still an L1 hit, no Redis


class UserSnapshotV2(msgspec.Struct, frozen=True, array_like=True):
    """What a later release might cache: another shape, another schema number."""

    id: int
    telegram_id: int
    display_name: str
    version: int
    balances: dict[str, int]


async def test_entries_of_another_schema_are_misses_never_misreads(pair: Pair) -> None:
    old = await pair.node("old")
    alice = pair.loader.add(ALICE)
    await old.cache.get(ALICE)  # an entry of this release's schema in Redis

    newer = SCHEMA_VERSION + 1
    newer_codec = SnapshotCodec(
        schema=newer,
        encoder=msgspec.msgpack.Encoder(),
        decoder=msgspec.msgpack.Decoder(UserSnapshot),
    )
    new = await pair.node("new", codec=newer_codec)
    new.trips.start()
    assert await new.cache.get(ALICE) == alice  # a miss, loaded, not decoded from the old
    assert new.trips.stop() == [("GET",), ("EVALSHA",)]
    assert pair.loader.calls == 2
    key = old.cache.keys.snapshot(ALICE)
    header = parse_header(await old.cache.redis.get(key))
    assert header is not None and (header.version, header.schema) == (1, newer)  # newer wins

    # The old release meets the newer entry: a miss as well, and it leaves it be.
    old.cache.clear_local()
    old.trips.start()
    assert await old.cache.get(ALICE) == alice
    assert old.trips.stop() == [("GET",), ("EVALSHA",)]
    header = parse_header(await old.cache.redis.get(key))
    assert header is not None and header.schema == newer
    assert old.cache.counters.fills_refused == 0  # same version: nothing stale about it


async def test_a_newer_schemas_payload_is_never_decoded_as_this_ones(pair: Pair) -> None:
    a = await pair.node("a")
    alice = pair.loader.add(ALICE)
    key = a.cache.keys.snapshot(ALICE)
    v2 = UserSnapshotV2(alice.id, ALICE, "Alice", 1, {"USDT": 5})
    await a.cache.redis.set(key, f"0:1:{SCHEMA_VERSION + 1}:".encode() + msgspec.msgpack.encode(v2))
    assert await a.cache.get(ALICE) == alice
    assert pair.loader.calls == 1


class UserSnapshotBeforeRecords(msgspec.Struct, frozen=True, array_like=True):
    """The snapshot of schema 1, before the user's record was part of it."""

    id: int
    telegram_id: int
    username: str | None
    first_name: str
    last_name: str | None
    language_code: str | None
    status: str
    is_admin: bool
    version: int
    wallets: tuple[WalletSnapshot, ...] = ()


async def test_an_entry_from_before_the_record_is_a_miss_not_an_empty_record(pair: Pair) -> None:
    a = await pair.node("a")
    trader = msgspec.structs.replace(
        pair.loader.add(ALICE),
        reputation=ReputationSnapshot(since=1_700_000_000, deals=12, ratings=3, stars=14),
    )
    pair.loader.users[ALICE] = trader
    # everything but the record and the locale after it
    old = UserSnapshotBeforeRecords(*msgspec.structs.astuple(trader)[:-2])
    payload = msgspec.msgpack.encode(old)
    # Read as this release's shape the old payload would pass for a newcomer:
    assert msgspec.msgpack.decode(payload, type=UserSnapshot).reputation.deals == 0
    key = a.cache.keys.snapshot(ALICE)
    await a.cache.redis.set(key, b"0:1:1:" + payload)  # the same version, written by schema 1
    a.trips.start()
    assert (await a.cache.get(ALICE)) == trader  # a miss: loaded, the record whole
    assert a.trips.stop() == [("GET",), ("EVALSHA",)]
    header = parse_header(await a.cache.redis.get(key))
    assert header is not None and (header.version, header.schema) == (1, SCHEMA_VERSION)


async def test_an_undecodable_entry_is_a_miss(pair: Pair) -> None:
    a = await pair.node("a")
    alice = pair.loader.add(ALICE)
    key = a.cache.keys.snapshot(ALICE)
    await a.cache.redis.set(key, b"0:1:1:\xc1garbage")
    assert await a.cache.get(ALICE) == alice
    await a.cache.redis.set(key, b"not even a header")
    a.cache.clear_local()
    assert await a.cache.get(ALICE) == alice
    assert pair.loader.calls == 2
