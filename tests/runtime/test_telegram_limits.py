"""Telegram's limits: a 429 is waited out (its retry_after), within bounds, a 5xx
is tried again (not a press's answer); sends are paced within the overall and
per-chat rates, button answers never wait, and replies to the update in hand
go at once."""

from __future__ import annotations

import json

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramRetryAfter, TelegramServerError
from aiogram.types import Chat, Update, User

from bot.runtime.limits import RetryAfter
from bot.runtime.send_rate import Replies, SendDeferred, SendRate, deferrable
from bot.sim import FakeTelegram, SimulatedUser


@pytest.fixture
def telegram() -> FakeTelegram:
    return FakeTelegram()


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def bot(telegram: FakeTelegram, waits: list[float]) -> Bot:
    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    bot = Bot("42:TEST", session=telegram)
    bot.session.middleware(RetryAfter(attempts=3, max_wait=10, sleep=sleep))
    return bot


@pytest.fixture
def chat(telegram: FakeTelegram, bot: Bot) -> int:
    user = SimulatedUser(telegram, bot, None, user_id=5, first_name="Eve", started=True)  # type: ignore[arg-type]
    return user.id


async def test_the_call_is_sent_again_after_the_given_seconds(telegram, bot, chat, waits):
    telegram.fail_next("sendMessage", 2, retry_after=3)
    message = await bot.send_message(chat, "hello")
    assert message.text == "hello"
    assert waits == [3, 3]
    assert [r.error is None for r in telegram.calls("sendMessage")] == [False, False, True]


async def test_attempts_are_bounded(telegram, bot, chat, waits):
    telegram.fail_next("sendMessage", 4, retry_after=1)
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(chat, "hello")
    assert waits == [1, 1, 1]
    assert len(telegram.calls("sendMessage")) == 4


async def test_a_wait_longer_than_the_limit_fails_at_once(telegram, bot, chat, waits):
    telegram.fail_next("sendMessage", retry_after=60)
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(chat, "hello")
    assert waits == []


def server_error(call):
    return TelegramServerError(call, "Internal Server Error")


async def test_a_telegram_server_error_is_sent_again_with_a_doubling_wait(
    telegram, bot, chat, waits
):
    telegram.fail_next("sendMessage", 2, error=server_error)
    message = await bot.send_message(chat, "hello")
    assert message.text == "hello"
    assert waits == [0.5, 1.0]
    assert [r.error is None for r in telegram.calls("sendMessage")] == [False, False, True]


async def test_server_error_retries_are_bounded(telegram, bot, chat, waits):
    telegram.fail_next("sendMessage", 4, error=server_error)
    with pytest.raises(TelegramServerError):
        await bot.send_message(chat, "hello")
    assert len(telegram.calls("sendMessage")) == 4
    assert waits == [0.5, 1.0, 2.0]


async def test_a_press_answer_is_not_retried(telegram, bot, chat, waits):
    query_id = telegram.open_callback_query(chat)
    telegram.fail_next("answerCallbackQuery", error=server_error)
    with pytest.raises(TelegramServerError):
        await bot.answer_callback_query(query_id)
    assert waits == [] and len(telegram.calls("answerCallbackQuery")) == 1


async def test_other_errors_are_not_retried(telegram, bot, chat, waits):
    telegram.fail_next("sendMessage", bad_request="message is too long")
    with pytest.raises(Exception, match="message is too long"):
        await bot.send_message(chat, "hello")
    assert waits == [] and len(telegram.calls("sendMessage")) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_sends_in_one_chat_are_paced_after_a_burst():
    clock = Clock()
    rate = SendRate(per_second=100, chat_per_second=1, chat_burst=2, clock=clock)
    assert [rate.delay(7) for _ in range(4)] == [0, 0, 1.0, 2.0]
    assert rate.delay(8) == 0  # another chat has its own budget
    clock.now += 3.0  # time passes: the queue has drained and one token is back
    assert rate.delay(7) == 0


def test_the_overall_rate_paces_sends_to_many_chats():
    clock = Clock()
    rate = SendRate(per_second=2, chat_per_second=1, chat_burst=5, clock=clock)
    assert [rate.delay(chat) for chat in range(5)] == [0, 0, 0.5, 1.0, 1.5]


async def test_only_sends_wait_and_a_press_is_answered_at_once(telegram, chat):
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    bot = Bot("42:TEST", session=telegram)
    bot.session.middleware(SendRate(per_second=100, chat_per_second=1, chat_burst=1, sleep=sleep))
    await bot.send_message(chat, "one")
    await bot.send_message(chat, "two")
    assert len(waits) == 1 and 0.9 < waits[0] <= 1.0
    query = telegram.open_callback_query(chat)
    assert await bot.answer_callback_query(query)
    assert len(waits) == 1


async def test_replies_to_the_update_in_hand_go_at_once_and_take_no_budget(telegram, chat):
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    bot = Bot("42:TEST", session=telegram)
    rate = SendRate(per_second=100, chat_per_second=1, chat_burst=1, clock=Clock(), sleep=sleep)
    bot.session.middleware(rate)
    other = SimulatedUser(telegram, bot, None, user_id=6, first_name="Bob", started=True)  # type: ignore[arg-type]
    user = User(id=chat, is_bot=False, first_name="Eve")

    async def handler(event: object, data: dict[str, object]) -> None:
        for n in range(10):  # the user's own quick taps, each answered in their chat
            await bot.send_message(chat, f"reply {n}")
        for n in range(2):  # what those taps cause in someone else's chat
            await bot.send_message(other.id, f"notice {n}")

    data = {"event_chat": Chat(id=chat, type="private"), "event_from_user": user}
    await Replies()(handler, Update(update_id=1), data)
    assert (rate.replies, rate.paced, rate.waited) == (10, 2, 1)
    assert waits == [1.0]  # only the other chat's second notice waited
    # Outside an update (the outbox worker, a job), the same chat is paced.
    await bot.send_message(chat, "a notification")
    await bot.send_message(chat, "another")
    assert (rate.replies, rate.paced, rate.waited) == (10, 4, 2)
    assert rate.counts() == {
        "reply": 10,
        "paced_at_once": 2,
        "paced_waited": 2,
        "paced_by_replica": 0,
        "deferred_to_the_outbox": 0,
    }


def telegram_429(telegram: FakeTelegram, bot: Bot, seconds: int):
    """What Telegram answers a call it throttles, read by the session as the
    real HTTP session reads it (tests/runtime/botapi.py serves the same body)."""
    body = {
        "ok": False,
        "error_code": 429,
        "description": f"Too Many Requests: retry after {seconds}",
        "parameters": {"retry_after": seconds},
    }

    def refuse(call):
        try:
            telegram.check_response(bot, call, 429, json.dumps(body))
        except TelegramRetryAfter as exc:
            return exc
        raise AssertionError("a 429 with retry_after is not read as TelegramRetryAfter")

    return refuse


async def test_telegrams_429_is_waited_out_for_its_retry_after(telegram, bot, chat, waits):
    message = await bot.send_message(chat, "hello")
    telegram.fail_next("editMessageText", error=telegram_429(telegram, bot, 4))
    edited = await bot.edit_message_text("hello again", chat_id=chat, message_id=message.message_id)
    assert edited.text == "hello again"
    assert waits == [4]


def test_a_send_that_would_wait_too_long_takes_no_turn():
    now = [0.0]
    rate = SendRate(100, 1, 2, clock=lambda: now[0])
    assert [rate.delay(7, 0.5), rate.delay(7, 0.5)] == [0, 0]  # a burst of two
    assert rate.delay(7, 0.5) is None  # would wait a second: nothing reserved
    assert rate.delay(7) == 1.0  # the turn it did not take
    now[0] = 0.5
    assert rate.delay(7, 0.5) is None  # 1.5 s away now
    assert rate.delay(8, 0.5) == 0  # another chat's budget, and the overall one, untouched


async def test_in_an_update_only_the_outboxs_notifications_are_left_to_its_worker(telegram, chat):
    """A notification the outbox sends while an update is handled waits at
    most `wait_in_update`; any other send of the bot's own (an admin's notice)
    waits its turn as before, and outside an update everything does."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    bot = Bot("42:TEST", session=telegram)
    rate = SendRate(100, 1, 1, wait_in_update=0.5, clock=Clock(), sleep=sleep)
    bot.session.middleware(rate)
    other = SimulatedUser(telegram, bot, None, user_id=6, first_name="Bob", started=True)  # type: ignore[arg-type]
    outcomes: list[str] = []

    async def handler(event: object, data: dict[str, object]) -> None:
        with deferrable():
            await bot.send_message(other.id, "notice 1")  # the chat's burst of one
            try:
                await bot.send_message(other.id, "notice 2")  # would wait a second
            except SendDeferred:
                outcomes.append("deferred")
        await bot.send_message(other.id, "an admin's notice")  # not the outbox's: waits
        outcomes.append("waited")

    data = {"event_chat": Chat(id=chat, type="private"), "event_from_user": User(
        id=chat, is_bot=False, first_name="Eve")}  # fmt: skip
    await Replies()(handler, Update(update_id=1), data)
    assert outcomes == ["deferred", "waited"]
    assert waits == [1.0]  # the deferred one reserved nothing: the notice took its turn
    assert [r.params["text"] for r in telegram.requests if r.method == "sendMessage"] == [
        "notice 1",
        "an admin's notice",
    ]
    with deferrable():  # outside an update: the outbox worker waits its turn
        await bot.send_message(other.id, "notice 2")
    assert waits == [1.0, 2.0]
    assert rate.counts()["deferred_to_the_outbox"] == 1
