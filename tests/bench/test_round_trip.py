"""The Telegram double's round-trip model, and what the benchmark's harness
takes from it: when a request left the process, and how long the update's own
task waited on it (a request it did not await is not its wait)."""

from __future__ import annotations

import asyncio

from aiogram import Bot

from bot.bench.harness import CURRENT, Harness, Rec
from bot.runtime.app import LOCAL_TOKEN
from bot.sim.round_trip import RoundTrip
from bot.sim.telegram import FakeTelegram


def test_the_model_is_seeded_jittered_and_has_a_long_tail():
    model, again = RoundTrip(seed=7), RoundTrip(seed=7)
    first = [model() for _ in range(20_000)]
    assert first == [again() for _ in range(20_000)]
    ms = sorted(seconds * 1000 for seconds in first)
    p50, p99 = ms[len(ms) // 2], ms[int(len(ms) * 0.99)]
    assert 36 < p50 < 44
    assert p99 > 2.5 * p50  # the slow tail
    assert RoundTrip(median_ms=0)() == 0.0


async def test_a_request_is_heard_as_it_leaves_and_its_wait_is_the_awaiting_task_s():
    telegram = FakeTelegram(keep_log=False, latency=RoundTrip(median_ms=20, seed=3))
    bot = Bot(LOCAL_TOKEN, session=telegram)
    Harness(telegram, bot, None)  # type: ignore[arg-type]  # listens to the double
    heard: list[str] = []
    telegram.add_listener(lambda request: heard.append(f"sent {request.method}"), sent=True)
    telegram.add_listener(lambda request: heard.append(f"answered {request.method}"))

    rec = Rec()
    rec.task = asyncio.current_task()
    token = CURRENT.set(rec)
    try:
        await bot.get_me()  # awaited: the update's own wait
        background = asyncio.create_task(bot.get_my_commands())  # not awaited by it
        await asyncio.sleep(0)
        assert heard[-1] == "sent getMyCommands"  # heard before its round trip
    finally:
        CURRENT.reset(token)
    await background
    assert heard == ["sent getMe", "answered getMe", "sent getMyCommands", "answered getMyCommands"]
    # one round trip of about 20 ms (the tail is 4× that), the background one left out
    assert 5e6 < rec.telegram_wait < 200e6
    await bot.session.close()
