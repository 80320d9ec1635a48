"""Switching between webhook and polling never leaves the bot deaf: Telegram's
own record (getWebhookInfo) decides whether setWebhook is called, so a digest
left in Redis by an earlier run, or a webhook deleted from outside (before a
start or while replicas run), ends with the webhook set again."""

from __future__ import annotations

import asyncio

import msgspec

from bot.config import Config
from bot.runtime.run import Replica
from cache.client import build_redis
from cache.keys import CacheKeys
from tests.e2e.conftest import ON_ONE_REDIS_AND_A_CLUSTER
from tests.runtime.conftest import eventually
from tests.runtime.test_polling_and_startup import PollingTelegram
from tests.runtime.test_webhook import free_port, webhook_config

URL = "https://bot.example.test/tg"


def in_mode(config: Config, mode: str, **runtime: float) -> Config:
    config = webhook_config(config, free_port())
    telegram = msgspec.structs.replace(config.telegram, mode=mode)
    return msgspec.structs.replace(
        config,
        telegram=telegram,
        runtime=msgspec.structs.replace(config.runtime, **runtime),
    )


async def started(config: Config, telegram: PollingTelegram) -> tuple[Replica, asyncio.Task[int]]:
    replica = Replica(config, session=telegram)
    task = asyncio.create_task(replica.run())
    ready = asyncio.create_task(replica.ready.wait())
    await asyncio.wait({task, ready}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    assert replica.ready.is_set(), f"replica exited with {task.result()}"
    return replica, task


async def serve_once(config: Config, telegram: PollingTelegram) -> None:
    replica, task = await started(config, telegram)
    replica.stop()
    assert await asyncio.wait_for(task, 20) == 0


@ON_ONE_REDIS_AND_A_CLUSTER
async def test_webhook_then_polling_then_webhook_ends_with_the_webhook_set(replica_config):
    telegram = PollingTelegram()
    keys = CacheKeys(replica_config.cache.key_prefix)
    redis = build_redis(replica_config.redis, replica_config.cache)
    try:
        await serve_once(in_mode(replica_config, "webhook"), telegram)
        assert telegram.settings.webhook_url == URL
        assert await redis.exists(keys.webhook)

        await serve_once(in_mode(replica_config, "polling"), telegram)
        assert telegram.settings.webhook_url == ""  # polling deleted it
        assert not await redis.exists(keys.webhook)  # and forgot it had set it

        await serve_once(in_mode(replica_config, "webhook"), telegram)
        assert telegram.settings.webhook_url == URL  # not deaf
        assert len(telegram.calls("setWebhook")) == 2
    finally:
        await redis.aclose()


async def test_a_webhook_deleted_from_outside_is_set_again_at_the_next_start(replica_config):
    telegram = PollingTelegram()
    await serve_once(in_mode(replica_config, "webhook"), telegram)
    telegram.settings.answer("deleteWebhook", {})  # someone's curl, another deployment
    await serve_once(in_mode(replica_config, "webhook"), telegram)
    assert telegram.settings.webhook_url == URL
    assert len(telegram.calls("setWebhook")) == 2


async def test_a_webhook_set_again_from_outside_with_telegrams_defaults_is_set_back(
    replica_config,
):
    telegram = PollingTelegram()
    await serve_once(in_mode(replica_config, "webhook"), telegram)
    assert telegram.settings.max_connections == 100
    # someone set the same URL by hand, with Telegram's default of 40 connections
    telegram.settings.answer("setWebhook", {"url": URL})
    await serve_once(in_mode(replica_config, "webhook"), telegram)
    assert telegram.settings.max_connections == 100
    assert len(telegram.calls("setWebhook")) == 2


async def test_a_webhook_deleted_while_replicas_run_is_set_again_by_one_of_them(replica_config):
    telegram = PollingTelegram()
    first, second = [
        await started(in_mode(replica_config, "webhook", jobs_interval_seconds=0.2), telegram)
        for _ in range(2)
    ]
    try:
        assert len(telegram.calls("setWebhook")) == 1  # one for both, at start
        telegram.settings.answer("deleteWebhook", {})
        await eventually(lambda: telegram.settings.webhook_url == URL)
        await asyncio.sleep(1.0)  # five more ticks on each replica
        assert len(telegram.calls("setWebhook")) == 2  # set again once, by one replica
    finally:
        for replica, task in (first, second):
            replica.stop()
            assert await asyncio.wait_for(task, 20) == 0
