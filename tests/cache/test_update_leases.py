"""The scripts an update takes and gives back its leases with in webhook mode
(cache/scripts.py): its update_id and its user's lock in one round trip, with
the user's form read along; done (or freed) and unlocked in one more; only
keys holding the caller's token are renewed or freed (fakeredis, the real
Redis and a Redis Cluster: the keys of one update share a slot)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from aiogram.fsm.storage.base import StorageKey

from bot.telegram.fsm import FormKeyBuilder
from cache.keys import CacheKeys
from cache.scripts import UpdateLeaseScripts
from tests.cache.conftest import Backend, RoundTrips

# the product's layout: the update, the user's lock and form in one slot group
KEYS, USER = CacheKeys("ul"), StorageKey(bot_id=1, chat_id=42, user_id=42)
UPDATE = KEYS.update(1, USER.user_id)
FORMS = FormKeyBuilder(prefix=KEYS.forms)
LOCK, STEP, DATA = (FORMS.build(USER, part) for part in ("lock", "state", "data"))
MINE, THEIRS, DONE = b"mine", b"theirs", b"done"
LEASE_MS = 5_000


@pytest.fixture
async def redis(backend: Backend, trips: RoundTrips) -> AsyncIterator[aioredis.Redis]:
    client = backend.client(trips)
    await client.delete(UPDATE, LOCK, STEP, DATA)
    # the scripts are loaded once per Redis; what follows is on a warm one
    await UpdateLeaseScripts(client).release(["ul:warm"], MINE, DONE, 0)
    await UpdateLeaseScripts(client).take(["ul:warm"], MINE, 1)
    await UpdateLeaseScripts(client).renew(["ul:warm"], MINE, 1)
    yield client
    await client.aclose()


@pytest.fixture
def trips() -> RoundTrips:
    return RoundTrips()


async def test_an_update_and_its_users_lock_and_form_in_one_round_trip(
    redis: aioredis.Redis, trips: RoundTrips
) -> None:
    scripts = UpdateLeaseScripts(redis)
    await redis.set(STEP, "NewDeal:amount")
    await redis.set(DATA, '{"role": "buyer"}')
    trips.start()
    taken = await scripts.take([UPDATE, LOCK, STEP, DATA], MINE, LEASE_MS)
    assert trips.stop() == [("EVALSHA",)]
    assert taken == [1, 1, b"NewDeal:amount", b'{"role": "buyer"}']
    assert await redis.get(UPDATE) == MINE and await redis.get(LOCK) == MINE
    assert 0 < await redis.pttl(UPDATE) <= LEASE_MS and 0 < await redis.pttl(LOCK) <= LEASE_MS
    # a request retried after its reply was lost finds the keys ours
    assert (await scripts.take([UPDATE, LOCK], MINE, LEASE_MS))[:2] == [1, 1]

    trips.start()
    await scripts.release([UPDATE, LOCK], MINE, DONE, 3600)
    assert trips.stop() == [("EVALSHA",)]
    assert await redis.get(UPDATE) == DONE
    assert 3590 < await redis.ttl(UPDATE) <= 3600
    assert await redis.exists(LOCK) == 0
    # a redelivery finds it done
    assert await scripts.take([UPDATE, LOCK], THEIRS, LEASE_MS) == [0, DONE]


async def test_an_update_in_hand_elsewhere_takes_nothing(redis: aioredis.Redis) -> None:
    scripts = UpdateLeaseScripts(redis)
    await redis.set(UPDATE, THEIRS, px=LEASE_MS)
    assert await scripts.take([UPDATE, LOCK, STEP, DATA], MINE, LEASE_MS) == [0, THEIRS]
    assert await redis.exists(LOCK) == 0


async def test_a_user_locked_elsewhere_leaves_the_lock_and_the_form_unread(
    redis: aioredis.Redis,
) -> None:
    scripts = UpdateLeaseScripts(redis)
    await redis.set(LOCK, THEIRS, px=LEASE_MS)
    assert await scripts.take([UPDATE, LOCK, STEP, DATA], MINE, LEASE_MS) == [1, 0]
    assert await redis.get(UPDATE) == MINE
    # the update failed: its lease is freed for a redelivery, their lock kept
    await scripts.release([UPDATE, LOCK], MINE, DONE, 0)
    assert await redis.exists(UPDATE) == 0
    assert await redis.get(LOCK) == THEIRS


async def test_an_update_without_a_user_takes_its_lease_only(redis: aioredis.Redis) -> None:
    scripts = UpdateLeaseScripts(redis)
    assert await scripts.take([UPDATE], MINE, LEASE_MS) == [1, 0]
    await scripts.release([UPDATE], MINE, DONE, 60)
    assert await redis.get(UPDATE) == DONE


async def test_only_keys_still_ours_are_renewed(redis: aioredis.Redis) -> None:
    scripts = UpdateLeaseScripts(redis)
    await redis.set(UPDATE, MINE, px=1_000)
    await redis.set(LOCK, THEIRS, px=1_000)  # ours expired and was taken meanwhile
    assert await scripts.renew([UPDATE, LOCK], MINE, LEASE_MS) == 1
    assert await redis.pttl(UPDATE) > 1_000
    assert await redis.pttl(LOCK) <= 1_000
