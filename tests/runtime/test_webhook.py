"""Webhook mode, in process: two replicas on their own ports in front of one
Telegram, the webhook set once, updates posted to either, a duplicate handled
once, and SIGTERM finishing the updates in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest
from aiogram.types import Update
from sqlalchemy import text

from bot.config import Config
from bot.runtime.run import Replica
from bot.runtime.send_rate import SendRate
from bot.runtime.webhook import webhook_secret
from bot.sim import FakeTelegram, SimulatedUser
from tests.conftest import ADMIN_TELEGRAM_ID
from tests.runtime.conftest import eventually

TOKEN = "123456:TEST-webhook"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def webhook_config(config: Config, port: int) -> Config:
    telegram = msgspec.structs.replace(
        config.telegram,
        token=TOKEN,
        mode="webhook",
        webhook_host="127.0.0.1",
        webhook_port=port,
        webhook_path="/tg",
        webhook_url="https://bot.example.test/tg",
    )
    escrow = msgspec.structs.replace(config.escrow, admins=(ADMIN_TELEGRAM_ID,))
    return msgspec.structs.replace(config, telegram=telegram, escrow=escrow)


class Running:
    def __init__(self, replica: Replica, task: asyncio.Task[int], port: int) -> None:
        self.replica, self.task, self.port = replica, task, port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def secret_header(self) -> dict[str, str]:
        return {"X-Telegram-Bot-Api-Secret-Token": webhook_secret(TOKEN, "")}

    async def post(self, http: aiohttp.ClientSession, update: Update) -> int:
        body = update.model_dump_json(exclude_none=True)
        headers = {"Content-Type": "application/json", **self.secret_header}
        async with http.post(f"{self.url}/tg", data=body, headers=headers) as response:
            return response.status


async def start(config: Config, telegram: FakeTelegram) -> Running:
    port = free_port()
    replica = Replica(webhook_config(config, port), session=telegram)
    task = asyncio.create_task(replica.run())
    ready = asyncio.create_task(replica.ready.wait())
    await asyncio.wait({task, ready}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        raise AssertionError(f"replica exited with {task.result()}")
    assert replica.ready.is_set()
    return Running(replica, task, port)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_two_replicas_set_the_webhook_once_and_handle_a_duplicate_once(replica_config, http):
    telegram = FakeTelegram()
    first = await start(replica_config, telegram)
    second = await start(replica_config, telegram)
    try:
        (set_webhook,) = telegram.calls("setWebhook")
        assert set_webhook.params["url"] == "https://bot.example.test/tg"
        assert set_webhook.params["secret_token"] == webhook_secret(TOKEN, "")
        # Telegram keeps up to 100 requests open at once, not its default 40
        assert set_webhook.params["max_connections"] == 100
        app = first.replica.app
        alice = SimulatedUser(telegram, app.bot, app.dispatcher, user_id=70_001, first_name="A")
        update = alice._message_update("/start")
        statuses = await asyncio.gather(first.post(http, update), second.post(http, update))
        # one handles it; the other drops it (done) or, while it is in hand,
        # answers 503 so that Telegram posts it again, and drops it then
        assert sorted(statuses) in ([200, 200], [200, 503])
        assert [await first.post(http, update), await second.post(http, update)] == [200, 200]
        assert len(telegram.calls("sendMessage")) == 1
        assert alice.last.text.startswith("👋 Hi, A!")
        await second.post(http, alice._message_update("/help"))
        assert len(telegram.calls("sendMessage")) == 2
        # what they send on their own is paced by the fleet's budget in Redis
        paced = [m for m in telegram.middleware if isinstance(m, SendRate)]
        assert len(paced) == 2 and all(rate.shared is not None for rate in paced)

        # a request without the secret is refused
        async with http.post(f"{first.url}/tg", json={"update_id": 1}) as response:
            assert response.status == 401
    finally:
        first.replica.stop()
        second.replica.stop()
        assert await first.task == 0 and await second.task == 0


def with_side_server(config: Config, port: int) -> Config:
    observability = msgspec.structs.replace(
        config.observability, http_host="127.0.0.1", http_port=port
    )
    return msgspec.structs.replace(config, observability=observability)


async def test_metrics_and_health_are_on_the_internal_side_server_not_the_public_port(
    replica_config, http
):
    side_port = free_port()
    running = await start(with_side_server(replica_config, side_port), FakeTelegram())
    try:
        for path in ("/metrics", "/healthz"):  # the public listener serves the webhook only
            async with http.get(f"{running.url}{path}") as response:
                assert response.status == 404, path
        async with http.get(f"http://127.0.0.1:{side_port}/healthz") as response:
            assert response.status == 200
            assert await response.json() == {"postgres": True, "redis": True, "listener": True}
        async with http.get(f"http://127.0.0.1:{side_port}/metrics") as response:
            assert response.status == 200
            assert "escrow_invalidation_listener_up 1.0" in await response.text()
    finally:
        running.replica.stop()
        assert await running.task == 0


async def test_health_says_stopping_while_the_updates_in_flight_finish(replica_config, http):
    side_port = free_port()
    telegram = FakeTelegram(latency=0.5)  # every Bot API call takes 500 ms
    running = await start(with_side_server(replica_config, side_port), telegram)
    app = running.replica.app
    bob = SimulatedUser(telegram, app.bot, app.dispatcher, user_id=70_003, first_name="Bob")
    health = f"http://127.0.0.1:{side_port}/healthz"
    async with http.get(health) as response:
        assert response.status == 200
    posted = asyncio.create_task(running.post(http, bob._message_update("/start")))
    await eventually(lambda: running.replica.in_flight)
    running.replica.stop()
    # the update is still being handled: the load balancer is told to look elsewhere
    async with http.get(health) as response:
        assert response.status == 503
        assert await response.json() == {"stopping": True}
    assert running.replica.in_flight == 1
    assert await posted == 200
    assert await running.task == 0
    assert bob.last.text.startswith("👋 Hi, Bob!")


async def test_sigterm_finishes_the_updates_in_flight_then_stops(replica_config, http):
    telegram = FakeTelegram(latency=0.3)  # every Bot API call takes 300 ms
    running = await start(replica_config, telegram)
    app = running.replica.app
    bob = SimulatedUser(telegram, app.bot, app.dispatcher, user_id=70_002, first_name="Bob")
    posted = asyncio.create_task(running.post(http, bob._message_update("/start")))
    await eventually(lambda: running.replica.in_flight)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await posted == 200  # answered, not cut off
    assert await running.task == 0
    assert bob.last.text.startswith("👋 Hi, Bob!")  # its reply was sent before closing
    assert telegram.closed  # the bot's session was closed at the end
    assert app.database.engine.sync_engine.pool.checkedout() == 0
    with pytest.raises(aiohttp.ClientConnectionError):
        await running.post(http, bob._message_update("/help"))


async def test_sigterm_mid_traffic_loses_nothing_committed_and_drops_no_notification(
    replica_config, http, database
):
    telegram = FakeTelegram(latency=0.02)  # every Bot API call takes 20 ms
    running = await start(replica_config, telegram)
    app = running.replica.app
    alice, bob = (
        SimulatedUser(
            telegram, app.bot, app.dispatcher, user_id=user_id, first_name=name, username=username
        )
        for user_id, name, username in ((70_011, "Alice", "alice_mid"), (70_012, "Bob", "bob_mid"))
    )
    for user in (alice, bob):
        assert await running.post(http, user._message_update("/start")) == 200
    buyer = await app.cache.cache.get(alice.id)
    for _ in range(8):  # Alice opens 8 deals with Bob; the cards reach him at once
        created = await app.services.deals.create(
            buyer,
            role="buyer",
            currency="USDT",
            amount=10_00,
            description="lamp",
            counterparty=await app.services.users.find_by_username("bob_mid"),
        )
        await app.outbox.send(created.notices, created.value.deal, actor=buyer)
    cards = [m for m in bob.messages if "✅ Accept" in bob.buttons(m)]
    assert len(cards) == 8
    # Bob accepts all 8 at once; SIGTERM lands while they are in flight.
    presses = [
        asyncio.create_task(running.post(http, bob.press_update("✅ Accept", message=card)))
        for card in cards
    ]
    await eventually(lambda: running.replica.in_flight >= 4)
    os.kill(os.getpid(), signal.SIGTERM)
    answered = await asyncio.gather(*presses, return_exceptions=True)
    assert await running.task == 0
    async with database.engine.connect() as conn:
        accepted = await conn.scalar(text("SELECT count(*) FROM escrows WHERE status = 'accepted'"))
        told = (
            await conn.execute(
                text("SELECT chat_id, status FROM notifications WHERE kind = 'accept'")
            )
        ).all()
    # Every press taken was finished and answered; none was cut off half-way.
    assert accepted == answered.count(200) >= 4
    # Each committed accept told Alice, and the outbox recorded it as sent before exit.
    assert sorted(told) == [(alice.id, "sent")] * accepted
    assert len([m for m in alice.messages if "@bob_mid accepted the deal" in m.text]) == accepted
