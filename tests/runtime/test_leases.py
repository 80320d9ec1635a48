"""Leases in Redis between replicas: an update in hand on a replica that died
is handled once its lease runs out, one that was handled is dropped, and a
user's lock that could not be released frees the user within the lease."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator

import msgspec
import pytest
from aiogram.fsm.storage.base import StorageKey
from prometheus_client import generate_latest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.runtime.app import App, build_app
from bot.runtime.coordination import DONE, Lease, RedisUserLock, WebhookReply, webhook_reply
from bot.runtime.leases import UpdateLease
from bot.sim import FakeTelegram, SimulatedUser
from cache.keys import CacheKeys
from cache.scripts import UpdateLeaseScripts

_ids = itertools.count(80_000)
LEASE = 0.5


@pytest.fixture
async def app(replica_config) -> AsyncIterator[App]:
    config = msgspec.structs.replace(
        replica_config,
        runtime=msgspec.structs.replace(replica_config.runtime, lease_seconds=LEASE),
    )
    app = await build_app(config, session=FakeTelegram(), replicas=True)
    yield app
    await app.aclose()


@pytest.fixture
async def redis(app: App) -> Redis:
    return app.cache.cache.redis


def person(app: App) -> SimulatedUser:
    telegram = app.bot.session
    assert isinstance(telegram, FakeTelegram)
    return SimulatedUser(telegram, app.bot, app.dispatcher, user_id=next(_ids), first_name="Lee")


async def posted(app: App, user: SimulatedUser, update) -> tuple[WebhookReply, list[str]]:
    """`update` as the webhook server receives it: what it answers Telegram, and
    what the bot sent; then its lease is given back (after the update, off its path)."""
    answered = await posted_only(user, update)
    assert app.update_dedup is not None
    await app.update_dedup.settled()
    return answered


async def posted_only(user: SimulatedUser, update) -> tuple[WebhookReply, list[str]]:
    """What the webhook answers Telegram for `update`, and what the bot sent."""
    reply = WebhookReply()
    token = webhook_reply.set(reply)
    try:
        result = await user.feed(update)
    finally:
        webhook_reply.reset(token)
    return reply, result.methods


async def test_an_update_in_hand_on_a_dead_replica_is_handled_after_its_lease(
    app: App, redis: Redis
) -> None:
    user = person(app)
    update = user._message_update("/help")
    key = CacheKeys(app.config.cache.key_prefix).update(update.update_id, user.user.id)
    # another replica took it and died mid-update: its lease is left to run out
    await redis.set(key, b"their-token", px=int(LEASE * 1000))

    reply, sent = await posted(app, user, update)
    assert reply.retry_later  # the webhook answers 503: Telegram posts it again later
    assert sent == []
    assert app.update_dedup is not None and app.update_dedup.deferred == 1

    await asyncio.sleep(LEASE + 0.1)
    reply, sent = await posted(app, user, update)
    assert not reply.retry_later
    assert sent == ["sendMessage"]  # handled, by this replica
    assert await redis.get(key) == DONE
    ttl = await redis.ttl(key)
    assert (
        app.config.runtime.update_dedup_seconds - 5 < ttl <= app.config.runtime.update_dedup_seconds
    )

    reply, sent = await posted(app, user, update)  # and once only
    assert (reply.retry_later, sent) == (False, [])
    assert app.update_dedup.dropped == 1
    scrape = generate_latest(app.metrics.registry).decode()
    assert 'escrow_updates_not_handled_total{reason="in_hand_elsewhere"} 1.0' in scrape
    assert 'escrow_updates_not_handled_total{reason="duplicate"} 1.0' in scrape


async def test_a_press_in_hand_elsewhere_is_answered_and_posted_again_later(
    app: App, redis: Redis
) -> None:
    user = person(app)
    await user.send("/start")
    update = user.press_update("❓ Help")
    key = CacheKeys(app.config.cache.key_prefix).update(update.update_id, user.user.id)
    await redis.set(key, b"their-token", px=int(LEASE * 1000))
    reply, sent = await posted(app, user, update)
    assert reply.retry_later
    assert sent == ["answerCallbackQuery"]  # the spinner stops; the press is not lost


async def test_an_update_is_done_before_its_lease_is_given_back(
    app: App, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply and the webhook's answer to Telegram do not wait for the
    release; a stop does (it is in flight), and so does the user's next
    update here (the process lock), which then takes the Redis lock at once."""
    user = person(app)
    await user.send("/start")
    assert app.update_dedup is not None
    await app.update_dedup.settled()
    let_go = asyncio.Event()
    release = UpdateLeaseScripts.release

    async def held(self, *args, **kwargs):
        await let_go.wait()
        await release(self, *args, **kwargs)

    monkeypatch.setattr(UpdateLeaseScripts, "release", held)
    update = user._message_update("/help")
    key = CacheKeys(app.config.cache.key_prefix).update(update.update_id, user.user.id)
    async with asyncio.timeout(5):
        reply, sent = await posted_only(user, update)
    assert sent == ["sendMessage"] and not reply.retry_later
    assert await redis.get(key) != DONE  # still leased: given back after the update
    assert app.in_flight.count == 1  # what a stop waits for

    following = asyncio.create_task(user.send("/help"))
    await asyncio.sleep(0.05)
    assert not following.done()  # this user's next update waits for the release
    let_go.set()
    assert (await following).methods == ["sendMessage"]
    await app.update_dedup.settled()
    assert await redis.get(key) == DONE
    assert app.in_flight.count == 0
    assert app.dispatcher.fsm.events_isolation.unlocked == 0  # never ran without the lock


async def test_a_release_cancelled_before_it_ran_still_lets_a_stop_through(app: App) -> None:
    """A loop torn down cancels the release task, perhaps before it started:
    the process lock is still given back and the update no longer counted in
    flight, so a stop does not wait for it for ever (the lease itself expires
    in Redis)."""
    assert app.update_dedup is not None
    await app.update_dedup.settled()

    class NeverReleased:
        update = "an update's key"

        async def release(self, **_: object) -> None:
            await asyncio.Event().wait()

    given_back = []
    app.update_dedup._release_later(NeverReleased(), True, lambda: given_back.append(1))  # type: ignore[arg-type]
    assert app.in_flight.count == 1
    (task,) = app.update_dedup._releasing
    task.cancel()  # before it ever ran
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)  # its callbacks
    assert given_back == [1] and app.in_flight.count == 0
    async with asyncio.timeout(1):
        await app.update_dedup.settled()


async def test_an_update_that_fails_leaves_no_lease_behind(app: App, redis: Redis) -> None:
    user = person(app)
    update = user._message_update("/help")
    key = CacheKeys(app.config.cache.key_prefix).update(update.update_id, user.user.id)
    telegram = app.bot.session
    assert isinstance(telegram, FakeTelegram)
    telegram.fail_next("sendMessage", bad_request="chat not found")
    await posted(app, user, update)
    assert await redis.get(key) is None  # a redelivery may try again at once
    reply, sent = await posted(app, user, update)
    assert (reply.retry_later, sent) == (False, ["sendMessage"])


async def test_a_lease_is_renewed_while_held_and_gone_when_released(redis: Redis) -> None:
    lease = Lease(redis, "lease-test:held", LEASE)
    assert await lease.acquire()
    await asyncio.sleep(LEASE * 3)  # three times its length
    assert await redis.get(lease.name) == lease.token
    other = Lease(redis, lease.name, LEASE)
    assert not await other.acquire()
    await lease.release()
    assert await redis.get(lease.name) is None
    assert await other.acquire()
    await other.release()


async def test_an_update_lease_renews_the_update_and_the_lock_while_held(redis: Redis) -> None:
    scripts = UpdateLeaseScripts(redis)
    # one hash tag: on a Redis Cluster the script takes both keys in one slot
    lease = UpdateLease(scripts, "lease-test:{t}:update", "lease-test:{t}:lock", LEASE)
    assert (await lease.take(None))[:2] == [1, 1]
    await asyncio.sleep(LEASE * 3)  # three times its length
    assert await redis.mget(lease.update, "lease-test:{t}:lock") == [lease.token, lease.token]
    await lease.release(done=True, done_seconds=60)
    assert await redis.mget(lease.update, "lease-test:{t}:lock") == [DONE, None]


async def test_a_user_lock_that_could_not_be_released_frees_the_user_within_the_lease(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolation = app.dispatcher.fsm.events_isolation
    assert isinstance(isolation, RedisUserLock)
    user = person(app)
    await user.send("/start")
    assert app.update_dedup is not None
    await app.update_dedup.settled()  # its lease given back (after it) first

    release = UpdateLeaseScripts.release

    async def lost(self: UpdateLeaseScripts, *args: object) -> None:
        monkeypatch.setattr(UpdateLeaseScripts, "release", release)  # once
        raise RedisConnectionError("Connection reset by peer")

    monkeypatch.setattr(UpdateLeaseScripts, "release", lost)
    first = await user.send("/help")
    assert first.methods == ["sendMessage"]  # the update itself went through
    await app.update_dedup.settled()
    key = StorageKey(bot_id=app.bot.id, chat_id=user.id, user_id=user.id)
    assert await app.cache.cache.redis.exists(isolation.key_builder.build(key, "lock"))

    started = time.monotonic()
    second = await user.send("/help")
    waited = time.monotonic() - started
    assert second.methods == ["sendMessage"]
    assert waited < LEASE + 0.3  # not the old 60 s lock timeout
    assert isolation.unlocked == 0  # it waited for the lock and took it


async def test_an_orphaned_user_lock_from_a_previous_run_delays_the_user_at_most_the_lease(
    app: App,
) -> None:
    isolation = app.dispatcher.fsm.events_isolation
    assert isinstance(isolation, RedisUserLock)
    user = person(app)
    key = StorageKey(bot_id=app.bot.id, chat_id=user.id, user_id=user.id)
    # left by a replica killed while holding it (a lease: it carries a TTL)
    await app.cache.cache.redis.set(
        isolation.key_builder.build(key, "lock"), b"dead-replica", px=int(LEASE * 1000)
    )
    started = time.monotonic()
    result = await user.send("/start")
    assert result.methods == ["sendMessage"]
    assert time.monotonic() - started < LEASE + 0.3
