"""Two `python -m bot run` processes in webhook mode on their own ports,
sharing Postgres and Redis, with the Bot API pointed at a test server here:
the webhook set once, updates posted to either, a duplicate handled once, a
429 honoured, SIGTERM mid-update finishing it before exiting 0, a replica
killed between a commit and its notification: the other one sends it, and
an update in hand on a replica killed: the other one handles it."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy import text

from bot.telegram.keyboards import Signer
from tests.runtime.botapi import (
    TOKEN,
    BotApiServer,
    message,
    output,
    press,
    serving,
    start,
    stop,
)


@pytest.fixture
async def api() -> AsyncIterator[tuple[BotApiServer, int]]:
    server = BotApiServer()
    async with serving(server) as port:
        yield server, port


async def test_two_processes_behind_one_bot_api(replica_config, api, tmp_path, database):
    server, api_port = api
    first, second = await asyncio.gather(
        start(replica_config, api_port, tmp_path / "first.log"),
        start(replica_config, api_port, tmp_path / "second.log"),
    )
    try:
        # started together, yet setWebhook is called once, not by every replica
        assert len(server.methods("setWebhook")) == 1
        async with aiohttp.ClientSession() as http:
            # a duplicate update_id posted to both is handled once
            start_update = message(80_001, "/start")
            statuses = await asyncio.gather(
                first.post(http, start_update), second.post(http, start_update)
            )
            # one handles it; the other finds it in hand and asks Telegram to post
            # it again later (503), unless the first was done by then (dropped: 200)
            assert sorted(statuses) in ([200, 200], [200, 503])
            for replica in (first, second):  # posted again: dropped by either
                assert await replica.post(http, start_update) == 200
            assert [p["chat_id"] for p in server.methods("sendMessage")] == ["80001"]

            # Telegram says 429: the reply waits out retry_after and is sent
            server.throttle_next = 1
            began = time.monotonic()
            assert await second.post(http, message(80_001, "/wallet")) == 200
            assert time.monotonic() - began >= 1.0
            sent = server.methods("sendMessage")
            assert len(sent) == 3 and sent[1] == sent[2]  # the same call, again
            assert "Your wallet" in sent[2]["text"]  # the user registered via the other one

            # a wizard started on one process continues on the other
            assert await second.post(http, message(80_001, "/new")) == 200
            markup = json.loads(server.methods("sendMessage")[-1]["reply_markup"])
            buying = markup["inline_keyboard"][0][0]
            assert buying["text"] == "I'm buying"
            assert await first.post(http, press(80_001, buying["callback_data"], 5)) == 200
            assert "Who is the seller?" in server.methods("editMessageText")[-1]["text"]
            assert await second.post(http, message(80_001, "@someone_new")) == 200
            # the counterparty step, looked up on the second process
            assert (
                "Nobody on the bot is @someone_new yet" in server.methods("sendMessage")[-1]["text"]
            )

            # SIGTERM while an update is in flight: it is finished, then exit 0
            server.send_delay = 1.0
            posted = asyncio.create_task(first.post(http, message(80_002, "/start")))
            await asyncio.sleep(0.4)
            first.process.send_signal(signal.SIGTERM)
            assert await posted == 200
            assert await asyncio.wait_for(first.process.wait(), 30) == 0
            assert server.methods("sendMessage")[-1]["chat_id"] == "80002"
        async with database.engine.connect() as conn:
            users = await conn.scalar(
                text("SELECT count(*) FROM users WHERE telegram_id IN (80001, 80002)")
            )
        assert users == 2  # nothing committed was lost
    finally:
        codes = [await stop(first), await stop(second)]
        logs = output(first.log, second.log)
    assert codes == [0, 0], logs
    assert "Traceback" not in logs, logs


async def test_a_replica_killed_before_sending_a_notification_leaves_it_to_the_other(
    replica_config, api, tmp_path, database, services
):
    server, api_port = api
    outbox = {
        "runtime__outbox_grace_seconds": "2",
        "runtime__outbox_interval_seconds": "0.5",
        "runtime__outbox_retry_seconds": "1",
    }
    first, second = await asyncio.gather(
        start(replica_config, api_port, tmp_path / "first.log", **outbox),
        start(replica_config, api_port, tmp_path / "second.log", **outbox),
    )
    alice = await services.user("alice_k", telegram_id=80_011, funds={"USDT": 100_00})
    bob = await services.user("bob_k", telegram_id=80_012)
    deal = (
        await services.deals.create(
            alice,
            role="buyer",
            currency="USDT",
            amount=10_00,
            description="lamp",
            counterparty=80_012,
        )
    ).value.deal
    accept = Signer.for_token(TOKEN).act(bob.telegram_id, "accept", deal).pack()
    try:
        # Alice's notification hangs in Telegram; the first replica dies meanwhile.
        server.hang_chat = alice.telegram_id
        async with aiohttp.ClientSession() as http:
            pressed = asyncio.create_task(
                first.post(
                    http, press(bob.telegram_id, accept, 7, first_name="Bob", username="bob_k")
                )
            )
            for _ in range(500):
                if any(p["chat_id"] == "80011" for p in server.methods("sendMessage")):
                    break
                await asyncio.sleep(0.01)
            first.process.kill()
            with pytest.raises(aiohttp.ClientError):
                await pressed
        assert await first.process.wait() == -signal.SIGKILL
        server.hang_chat = None
        server.unhang.set()
        async with database.engine.connect() as conn:
            status = await conn.scalar(
                text("SELECT status FROM escrows WHERE id = :id"), {"id": deal.id}
            )
        assert status == "accepted"  # committed before the crash
        # The other replica's worker sends it once the grace has passed.
        began = time.monotonic()
        for _ in range(100):
            async with database.engine.connect() as conn:
                row = (
                    await conn.execute(
                        text(
                            "SELECT status, attempts FROM notifications"
                            " WHERE kind = 'accept' AND chat_id = 80011"
                        )
                    )
                ).one()
            if row.status == "sent":
                break
            await asyncio.sleep(0.1)
        assert (row.status, row.attempts) == ("sent", 1), output(second.log)
        assert time.monotonic() - began < 5
        told = [p for p in server.methods("sendMessage") if p["chat_id"] == "80011"]
        assert len(told) == 2  # the one that hung with the dead replica, and this one
        assert "@bob_k accepted the deal" in told[1]["text"]
        assert "Fund" in told[1]["reply_markup"]  # Alice's card, with her next step
    finally:
        codes = [await stop(first), await stop(second)]
        logs = output(first.log, second.log)
    assert codes == [-signal.SIGKILL, 0], logs


async def test_an_update_in_hand_on_a_killed_replica_is_handled_by_the_other(
    replica_config, api, tmp_path
):
    """Telegram posts again what got no answer; the update's lease on the dead
    replica runs out and the other one handles it, once."""
    server, api_port = api
    lease = {"runtime__lease_seconds": "1"}
    first, second = await asyncio.gather(
        start(replica_config, api_port, tmp_path / "first.log", **lease),
        start(replica_config, api_port, tmp_path / "second.log", **lease),
    )
    user_id = 80_021
    update = message(user_id, "/help")
    try:
        server.hang_chat = user_id  # the reply hangs in Telegram; the replica dies meanwhile
        async with aiohttp.ClientSession() as http:
            posted = asyncio.create_task(first.post(http, update))
            for _ in range(500):
                if any(p["chat_id"] == str(user_id) for p in server.methods("sendMessage")):
                    break
                await asyncio.sleep(0.01)
            first.process.kill()
            with pytest.raises(aiohttp.ClientError):
                await posted
            server.hang_chat = None
            server.unhang.set()
            # redelivered at once: in hand (the dead replica's lease), Telegram is asked to wait
            assert await second.post(http, update) == 503
            await asyncio.sleep(1.2)
            assert await second.post(http, update) == 200  # the lease ran out: handled
            assert await second.post(http, update) == 200  # and dropped from now on
        replies = [p for p in server.methods("sendMessage") if p["chat_id"] == str(user_id)]
        assert len(replies) == 2, output(second.log)  # the one that hung, and the other's
        assert "How escrow works" in replies[1]["text"]
    finally:
        await stop(first)
        assert await stop(second) == 0, output(second.log)
