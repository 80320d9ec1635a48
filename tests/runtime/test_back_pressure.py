"""Back-pressure: a burst of updates never runs more than
`[runtime] max_updates_in_flight` handlers at once. Polling takes no more
updates from Telegram until one finishes; the webhook answers Telegram 503
with Retry-After beyond the bound, and Telegram's redelivery is handled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
import pytest

from bot.config import Config
from bot.runtime.run import Replica
from bot.sim import FakeTelegram, SimulatedUser
from tests.runtime.conftest import eventually
from tests.runtime.test_polling_and_startup import PollingTelegram, polling_config
from tests.runtime.test_webhook import start as start_webhook

BOUND = 3


def bounded(config: Config, bound: int = BOUND) -> Config:
    runtime = msgspec.structs.replace(config.runtime, max_updates_in_flight=bound)
    return msgspec.structs.replace(config, runtime=runtime)


class HandlersAtOnce:
    """An outer middleware counting the updates being handled at once."""

    def __init__(self) -> None:
        self.now = self.most = self.handled = 0

    async def __call__(
        self,
        handler: Callable[[Any, dict[str, Any]], Awaitable[Any]],
        event: Any,
        data: dict[str, Any],
    ) -> Any:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await handler(event, data)
        finally:
            self.now -= 1
            self.handled += 1


async def test_polling_runs_no_more_handlers_at_once_than_the_bound(replica_config):
    telegram = PollingTelegram(latency=0.05)  # every Bot API call takes 50 ms
    replica = Replica(bounded(polling_config(replica_config)), session=telegram)
    task = asyncio.create_task(replica.run())
    await asyncio.wait_for(replica.ready.wait(), 20)
    app = replica.app
    at_once = HandlersAtOnce()
    app.dispatcher.update.outer_middleware(at_once)
    try:
        people = [
            SimulatedUser(telegram, app.bot, app.dispatcher, user_id=72_000 + n, first_name="P")
            for n in range(4 * BOUND)
        ]
        for person in people:  # one burst: a single getUpdates returns them all
            telegram.updates.put_nowait(person._message_update("/start"))
        await eventually(lambda: at_once.handled == len(people), seconds=30)
        assert at_once.most == BOUND  # reached, never passed
        assert all(person.last.text.startswith("👋 Hi, P!") for person in people)
    finally:
        replica.stop()
        assert await asyncio.wait_for(task, 20) == 0


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_webhook_beyond_the_bound_answers_503_and_handles_the_redelivery(
    replica_config, http
):
    telegram = FakeTelegram(latency=0.3)  # every Bot API call takes 300 ms
    running = await start_webhook(bounded(replica_config, 2), telegram)
    app = running.replica.app
    try:
        alice, bob, carol = (
            SimulatedUser(telegram, app.bot, app.dispatcher, user_id=user_id, first_name=name)
            for user_id, name in ((72_101, "Alice"), (72_102, "Bob"), (72_103, "Carol"))
        )
        first = [
            asyncio.create_task(running.post(http, user._message_update("/start")))
            for user in (alice, bob)
        ]
        await eventually(lambda: running.replica.in_flight == 2)
        update = carol._message_update("/start")
        body = update.model_dump_json(exclude_none=True)
        headers = {"Content-Type": "application/json", **running.secret_header}
        async with http.post(f"{running.url}/tg", data=body, headers=headers) as response:
            assert response.status == 503  # Telegram keeps the update and retries
            assert response.headers["Retry-After"] == "1"
        assert not carol.chat.messages  # not handled
        assert running.replica.deferred == 1
        assert await asyncio.gather(*first) == [200, 200]
        assert await running.post(http, update) == 200  # Telegram's redelivery
        assert carol.last.text.startswith("👋 Hi, Carol!")
        assert len(telegram.calls("sendMessage")) == 3
    finally:
        running.replica.stop()
        assert await running.task == 0
