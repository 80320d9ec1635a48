"""Polling mode with a configurable Bot API server, and start-up that waits
for its services a bounded number of times, saying why."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

import aiohttp
import msgspec
import pytest
from aiogram.exceptions import TelegramConflictError
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.types import Update

from bot.config import Config, ConfigError, load_config
from bot.runtime.run import Replica
from bot.runtime.startup import telegram_session
from bot.sim import FakeTelegram, SimulatedUser
from cache.settings import RedisSettings
from tests.conftest import ADMIN_TELEGRAM_ID
from tests.runtime.conftest import eventually
from tests.runtime.test_webhook import free_port


class PollingTelegram(FakeTelegram):
    """The double, plus getUpdates served from a queue (long polling of 0.1 s),
    refused while a webhook is set, as Telegram does."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.updates: asyncio.Queue[Update] = asyncio.Queue()

    async def make_request(self, bot, method: TelegramMethod[Any], timeout=None):  # noqa: ASYNC109
        if isinstance(method, GetUpdates):
            if self.settings.webhook_url:
                raise TelegramConflictError(
                    method,
                    "Conflict: can't use getUpdates method while webhook is active;"
                    " use deleteWebhook to delete the webhook first",
                )
            try:
                async with asyncio.timeout(0.1):
                    updates = [await self.updates.get()]
            except TimeoutError:
                return []
            while not self.updates.empty() and len(updates) < 100:  # a burst comes at once
                updates.append(self.updates.get_nowait())
            return updates
        return await super().make_request(bot, method, timeout)


def polling_config(config: Config) -> Config:
    telegram = msgspec.structs.replace(config.telegram, token="123456:TEST-polling")
    escrow = msgspec.structs.replace(config.escrow, admins=(ADMIN_TELEGRAM_ID,))
    return msgspec.structs.replace(config, telegram=telegram, escrow=escrow)


def test_the_bot_api_base_url_comes_from_the_config(config):
    local = msgspec.structs.replace(
        config, telegram=msgspec.structs.replace(config.telegram, api_base="http://127.0.0.1:8081")
    )
    session = telegram_session(local, "polling")
    assert session.api.api_url("42:T", "getMe") == "http://127.0.0.1:8081/bot42:T/getMe"


async def test_polling_serves_updates_and_sigterm_lets_the_one_in_flight_finish(replica_config):
    telegram = PollingTelegram(latency=0.2)
    replica = Replica(polling_config(replica_config), session=telegram)
    assert replica.mode == "polling"
    task = asyncio.create_task(replica.run())
    await asyncio.wait_for(replica.ready.wait(), 20)
    assert telegram.calls("deleteWebhook")  # polling and a webhook exclude each other
    app = replica.app
    alice = SimulatedUser(telegram, app.bot, app.dispatcher, user_id=71_001, first_name="Alice")
    await telegram.updates.put(alice._message_update("/start"))
    await eventually(lambda: telegram.calls("sendMessage"))
    await telegram.updates.put(alice._message_update("/help"))
    await eventually(lambda: replica.in_flight)  # /help is in flight
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 20) == 0
    assert len(telegram.calls("sendMessage")) == 2  # the /help in flight was answered
    assert telegram.closed


async def test_start_up_gives_up_on_redis_after_the_configured_attempts(replica_config, caplog):
    config = msgspec.structs.replace(
        replica_config,
        redis=RedisSettings(url="redis://127.0.0.1:1/0"),
        runtime=msgspec.structs.replace(
            replica_config.runtime, connect_attempts=3, connect_backoff_max_seconds=0.05
        ),
    )
    with caplog.at_level(logging.WARNING, logger="bot.runtime.run"):
        assert await Replica(config).run() == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "bot.runtime.run"]
    waits = [m for m in messages if m.startswith("waiting for Redis at redis://127.0.0.1:1/0")]
    assert len(waits) == 2
    assert "attempt 1 of 3 failed" in waits[0]
    assert any("did not answer after 3 attempts" in m for m in messages)


async def test_polling_serves_metrics_and_health_on_the_side_server(replica_config):
    port = free_port()
    config = polling_config(replica_config)
    config = msgspec.structs.replace(
        config,
        observability=msgspec.structs.replace(
            config.observability, http_host="127.0.0.1", http_port=port
        ),
    )
    telegram = PollingTelegram()
    replica = Replica(config, session=telegram)
    task = asyncio.create_task(replica.run())
    await asyncio.wait_for(replica.ready.wait(), 20)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
                assert await response.json() == {
                    "postgres": True,
                    "redis": True,
                    "listener": True,
                }
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert "escrow_invalidation_listener_up 1.0" in await response.text()
    finally:
        replica.stop()
        assert await asyncio.wait_for(task, 20) == 0


async def test_start_up_gives_up_on_an_unreachable_bot_api(replica_config, caplog):
    config = polling_config(replica_config)
    config = msgspec.structs.replace(
        config,
        telegram=msgspec.structs.replace(config.telegram, api_base="http://127.0.0.1:1"),
        runtime=msgspec.structs.replace(
            config.runtime, connect_attempts=2, connect_backoff_max_seconds=0.05
        ),
    )
    with caplog.at_level(logging.WARNING, logger="bot.runtime.run"):
        assert await Replica(config).run() == 1  # the real aiohttp session, no double
    messages = [r.getMessage() for r in caplog.records if r.name == "bot.runtime.run"]
    assert any(m.startswith("waiting for the Bot API at http://127.0.0.1:1") for m in messages)
    assert any("did not answer after 2 attempts" in m for m in messages)


def test_webhook_mode_needs_the_public_url():
    environ = {"ESCROW__TELEGRAM__TOKEN": "1:A", "ESCROW__TELEGRAM__MODE": "webhook"}
    with pytest.raises(ConfigError) as refused:
        load_config(environ=environ)
    assert "telegram.webhook_url: required in webhook mode" in str(refused.value)
    assert "ESCROW__TELEGRAM__WEBHOOK_URL" in str(refused.value)


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_a_token_without_admins_refuses_to_start_and_says_what_to_set(
    replica_config, caplog, mode
):
    """Nobody could settle a dispute or decide a withdrawal: refuse before serving."""
    telegram = msgspec.structs.replace(
        replica_config.telegram,
        token="123456:TEST-no-admins",
        mode=mode,
        webhook_url="https://bot.example.test/tg",
        webhook_host="127.0.0.1",
        webhook_port=free_port(),
    )
    config = msgspec.structs.replace(
        replica_config,
        telegram=telegram,
        escrow=msgspec.structs.replace(replica_config.escrow, admins=()),
    )
    session = PollingTelegram()
    replica = Replica(config, session=session)
    with caplog.at_level(logging.ERROR, logger="bot.runtime.run"):
        assert await asyncio.wait_for(replica.run(), 20) == 1
    (refusal,) = [r.getMessage() for r in caplog.records if r.name == "bot.runtime.run"]
    assert refusal.startswith("cannot start: no admins configured")
    assert "ESCROW__ESCROW__ADMINS" in refusal and "[escrow] admins" in refusal
    assert not replica.ready.is_set()
    assert session.requests == []  # Telegram was never asked for anything
    assert replica.app is None  # nothing was built, nothing served
