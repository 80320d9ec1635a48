"""The Telegram double's round-trip model, and what the benchmark's harness
takes from it: when a request left the process, and how long the update
waited on Telegram (round trips awaited side by side once; the press's answer,
which nothing awaits, not at all)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiogram import Bot

from bot.bench.harness import CURRENT, Harness, Rec, waited
from bot.runtime.app import LOCAL_TOKEN
from bot.sim.methods import BotRequest
from bot.sim.round_trip import RoundTrip
from bot.sim.telegram import FakeTelegram
from bot.telegram.middlewares import ANSWER_TASK


def test_the_model_is_seeded_jittered_and_has_a_long_tail():
    model, again = RoundTrip(seed=7), RoundTrip(seed=7)
    first = [model() for _ in range(20_000)]
    assert first == [again() for _ in range(20_000)]
    ms = sorted(seconds * 1000 for seconds in first)
    p50, p99 = ms[len(ms) // 2], ms[int(len(ms) * 0.99)]
    assert 36 < p50 < 44
    assert p99 > 2.5 * p50  # the slow tail
    assert RoundTrip(median_ms=0)() == 0.0


async def test_a_request_is_heard_as_it_leaves_and_the_updates_awaited_waits_count_once():
    telegram = FakeTelegram(keep_log=False, latency=RoundTrip(median_ms=20, seed=3))
    bot = Bot(LOCAL_TOKEN, session=telegram)
    Harness(telegram, bot, None)  # type: ignore[arg-type]  # listens to the double
    heard: list[str] = []
    telegram.add_listener(lambda request: heard.append(f"sent {request.method}"), sent=True)
    telegram.add_listener(lambda request: heard.append(f"answered {request.method}"))

    rec = Rec()
    token = CURRENT.set(rec)
    try:
        await bot.get_me()  # awaited by the update's own task
        # an edit and a notification at once: tasks of their own, awaited together
        await asyncio.gather(bot.get_my_commands(), bot.get_webhook_info())
        background = asyncio.create_task(bot.get_chat_menu_button())
        await asyncio.sleep(0)
        assert heard[-1] == "sent getChatMenuButton"  # heard before its round trip
    finally:
        CURRENT.reset(token)
    await background
    assert heard[:2] == ["sent getMe", "answered getMe"]
    # every round trip the update caused is recorded, each from leaving to its answer
    assert len(rec.waits) == 4
    assert all(answered > sent for sent, answered in rec.waits)
    # the two awaited side by side hold the update up once, not twice
    gathered = sorted(rec.waits[1:3])
    assert waited(gathered) < sum(end - start for start, end in gathered)
    await bot.session.close()


def test_overlapping_waits_are_counted_once():
    assert waited([]) == 0
    assert waited([(0, 10)]) == 10
    assert waited([(0, 10), (20, 25)]) == 15  # apart: both
    assert waited([(0, 10), (5, 12)]) == 12  # overlapping: their union
    assert waited([(5, 12), (0, 10), (1, 3)]) == 12  # in any order, one inside another


async def test_the_presss_answer_sent_from_its_own_task_is_not_a_wait_of_the_update():
    telegram = FakeTelegram(keep_log=False, latency=0.001)
    harness = Harness(telegram, Bot(LOCAL_TOKEN, session=telegram), None)  # type: ignore[arg-type]

    def hear(method: str) -> None:
        request = BotRequest(method, {}, 0, None, sent_ns=100)  # type: ignore[arg-type]
        request.waited_ns = 40
        harness._answered(request)

    rec = Rec()
    token = CURRENT.set(rec)
    try:
        await asyncio.create_task(_call(hear, "answerCallbackQuery"), name=f"{ANSWER_TASK} 17")
        await asyncio.create_task(_call(hear, "editMessageText"), name="Task-9")
        hear("answerCallbackQuery")  # answered in the update's own task (last, or the floor)
    finally:
        CURRENT.reset(token)
    assert rec.waits == [(100, 140), (100, 140)]  # the edit, and the answer that was awaited


async def _call(function: Callable[[str], None], method: str) -> None:
    function(method)
