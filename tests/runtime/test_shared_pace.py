"""The fleet keeps Telegram's rates together: in webhook mode every replica's
paced sends reserve their turn in one budget in Redis, so two replicas
notifying one chat wait as one would; while Redis fails each replica paces
with its own budget, and says so in its counts."""

from __future__ import annotations

import secrets

import pytest
import redis.asyncio as aioredis
from aiogram import Bot

from bot.runtime.send_rate import SendRate
from bot.runtime.shared_pace import SharedPace
from bot.sim import FakeTelegram, SimulatedUser
from cache.client import build_cluster, no_retries
from cache.keys import CacheKeys


@pytest.fixture
async def redis(redis_url: str):
    client = aioredis.Redis.from_url(redis_url, socket_timeout=1, retry=no_retries())
    yield client
    await client.aclose()


def replica(redis: aioredis.Redis, prefix: str, per_second: float, chat: float, burst: int):
    shared = SharedPace(redis, CacheKeys(prefix), per_second, chat, burst)
    return SendRate(per_second, chat, burst, shared=shared)


async def test_two_replicas_notifying_one_chat_share_its_budget(redis: aioredis.Redis):
    prefix = f"pace{secrets.token_hex(3)}"
    one, two = (replica(redis, prefix, 100, 1, 5) for _ in range(2))
    waits = []
    for _ in range(5):  # ten notifications to one chat, five from each replica, at once
        waits += [await one.reserve(7), await two.reserve(7)]
    # one burst of five for the chat, then one a second: as a single replica would
    # (each replica's own budget would have let all ten go at once)
    assert waits == pytest.approx([0, 0, 0, 0, 0, 1, 2, 3, 4, 5], abs=0.1)
    assert one.counts()["paced_by_replica"] == two.counts()["paced_by_replica"] == 0


async def test_the_overall_budget_is_the_fleets(redis: aioredis.Redis):
    prefix = f"pace{secrets.token_hex(3)}"
    one, two = (replica(redis, prefix, 2, 1, 5) for _ in range(2))
    # six chats, alternately from each replica: two a second for the fleet
    waits = [await (one if n % 2 else two).reserve(100 + n) for n in range(6)]
    assert waits == pytest.approx([0, 0, 0.5, 1.0, 1.5, 2.0], abs=0.1)


async def test_a_paced_send_waits_its_turn_and_goes(redis: aioredis.Redis):
    telegram, waits = FakeTelegram(), []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    shared = SharedPace(redis, CacheKeys(f"pace{secrets.token_hex(3)}"), 100, 1, 2)
    bot = Bot("42:TEST", session=telegram)
    bot.session.middleware(SendRate(100, 1, 2, shared=shared, sleep=sleep))
    chat = SimulatedUser(telegram, bot, None, user_id=9, first_name="P", started=True)  # type: ignore[arg-type]
    for n in range(3):
        await bot.send_message(chat.id, f"notice {n}")
    assert [m.text for m in chat.messages] == ["notice 0", "notice 1", "notice 2"]
    assert waits == pytest.approx([1.0], abs=0.1)  # the third, after a burst of two


async def test_while_redis_fails_a_replica_paces_with_its_own_budget():
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=no_retries())
    rate = SendRate(100, 1, 2, shared=SharedPace(dead, CacheKeys("pace"), 100, 1, 2))
    waits = [await rate.reserve(9) for _ in range(3)]
    assert waits == pytest.approx([0, 0, 1.0], abs=0.05)  # its own burst of two
    assert rate.counts()["paced_by_replica"] == 3
    assert rate.breaker.allow() is False  # Redis is skipped for a moment, not asked each time
    await dead.aclose()


async def test_on_a_redis_cluster_the_budget_is_shared_too(redis_cluster):
    """The overall budget and a chat's share one hash tag: one slot, one script."""
    client = build_cluster(redis_cluster.url, socket_timeout=2, retry=no_retries())
    try:
        prefix = f"pace{secrets.token_hex(3)}"
        one, two = (replica(client, prefix, 100, 1, 2) for _ in range(2))  # type: ignore[arg-type]
        waits = [await one.reserve(7), await two.reserve(7), await one.reserve(7)]
        assert waits == pytest.approx([0, 0, 1.0], abs=0.1)
        assert one.counts()["paced_by_replica"] == 0
    finally:
        await client.aclose()


async def test_a_send_that_would_wait_too_long_takes_no_turn_of_the_fleets(
    redis: aioredis.Redis,
):
    """A send made while handling an update waits a bounded time: past it,
    nothing is reserved on either budget, so the next send's turn is the one
    it would have had."""
    prefix = f"pace{secrets.token_hex(3)}"
    one, two = (replica(redis, prefix, 100, 1, 2) for _ in range(2))
    assert [await one.reserve(7, 0.5), await one.reserve(7, 0.5)] == [0, 0]  # the burst
    assert await two.reserve(7, 0.5) is None  # would wait a second
    assert await two.reserve(7, 0.5) is None
    assert await one.reserve(7) == pytest.approx(1.0, abs=0.1)  # still the next turn
    assert await two.reserve(8, 0.5) == 0  # another chat: the overall budget was not spent
