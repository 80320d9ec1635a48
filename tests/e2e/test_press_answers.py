"""A press's answer is sent before anything else of the press and not waited
for: the handler's own work overlaps Telegram's round trip. An answer that
fails is logged and counted, never shown, and the press is handled anyway:
Telegram answering 500 to answerCallbackQuery, or refusing a second answer to
a press it redelivered."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest
from aiogram.exceptions import TelegramServerError
from prometheus_client import generate_latest
from redis.asyncio.connection import Connection
from sqlalchemy import event

from bot.ops.metrics import UpdateRecord
from bot.runtime.app import App, build_app
from bot.sim import FakeTelegram, SimulatedUser
from bot.telegram.handlers.errors import UNEXPECTED
from bot.telegram.texts import FORGED_BUTTON, OUTDATED_CARD
from db.models import DealStatus
from tests.e2e.conftest import balance, sync_engines
from tests.e2e.test_deals import forge, open_deal, show, status_of

SOMETHING_WENT_WRONG = UNEXPECTED.split(".")[0]


def _server_error(call):
    return TelegramServerError(call, "Internal Server Error")


# With Telegram answering at once, and with each Bot API call taking 50 ms.
ROUND_TRIPS = pytest.mark.parametrize("latency", [None, 0.05], ids=["instant", "50ms"])


@ROUND_TRIPS
async def test_a_press_whose_answer_fails_is_handled_anyway(app, pair, telegram, caplog, latency):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    await bob.press("✅ Accept")
    telegram.latency = latency
    telegram.fail_next("answerCallbackQuery", error=_server_error)

    with caplog.at_level(logging.WARNING, logger="bot.telegram.middlewares"):
        result = await alice.press("💰 Fund 100.00 USDT")
        await app.in_flight.finish(5)  # the answer's reply, if still on its way

    assert await status_of(app, deal) == DealStatus.FUNDED
    assert await balance(app, alice) == (400_00, 100_00)
    assert "funded — the money is held in escrow" in alice.last.text
    assert not any(SOMETHING_WENT_WRONG in t for t in result.texts)
    assert "not acknowledged" in caplog.text  # logged for the operator, not shown
    scrape = generate_latest(app.metrics.registry).decode()
    assert 'escrow_press_answers_failed_total{reason="telegram_error"} 1.0' in scrape


@ROUND_TRIPS
async def test_a_redelivered_press_is_not_reported_as_a_failure(app, pair, telegram, latency):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    telegram.latency = latency
    update = bob.press_update("✅ Accept")
    await bob.feed(update)
    assert await status_of(app, deal) == DealStatus.ACCEPTED

    # Telegram posts the same press again (its webhook call timed out): the
    # answer is refused as Telegram refuses a second answer to one query.
    again = await bob.feed(update)
    await app.in_flight.finish(5)

    # the only refusals: the second answer, and (the press now showing the
    # success it was) an edit Telegram finds identical to the card it shows
    refused = [r for r in again.requests if r.error is not None]
    assert [r.method for r in refused][:1] == ["answerCallbackQuery"]
    assert all("message is not modified" in str(r.error) for r in refused[1:])
    assert bob.last.text.startswith("✅ You accepted the deal.")
    assert not any(SOMETHING_WENT_WRONG in t for t in again.texts)
    assert await status_of(app, deal) == DealStatus.ACCEPTED


# -- Telegram's round trip is off the press's path ---------------------------------------

LATENCY = 0.05


class Timeline:
    """What a press does, in order, with when: `issued` when a Bot API request
    leaves the bot (the session's middlewares, before the round trip), `replied`
    when Telegram has handled it (after), SQL statements and Redis commands."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []

    def add(self, kind: str, what: str) -> None:
        self.events.append((kind, what, time.perf_counter_ns()))

    def kinds(self) -> list[tuple[str, str]]:
        return [(kind, what) for kind, what, _ in self.events]

    def at(self, kind: str, what: str) -> int:
        return next(i for i, (k, w, _) in enumerate(self.events) if (k, w) == (kind, what))


@pytest.fixture
def timeline(app: App, telegram: FakeTelegram, monkeypatch) -> Iterator[Timeline]:
    line = Timeline()

    async def issued(make_request, bot, method):
        line.add("issued", method.__api_method__)
        return await make_request(bot, method)

    original = Connection.send_packed_command

    async def on_redis(self, command, check_health=True):
        packed = command if isinstance(command, (bytes, bytearray)) else b"".join(command)
        name = packed.split(b"\r\n")[2].decode().upper() if packed.startswith(b"*") else "?"
        if name not in ("PING", "SUBSCRIBE"):  # the invalidation listener's own traffic
            line.add("redis", name)
        return await original(self, command, check_health)

    def on_sql(conn, cursor, statement, *args):
        line.add("sql", statement.split()[0])

    app.bot.session.middleware(issued)
    telegram.add_listener(lambda request: line.add("replied", request.method))
    monkeypatch.setattr(Connection, "send_packed_command", on_redis)
    for engine in sync_engines(app):
        event.listen(engine, "before_cursor_execute", on_sql)
    yield line
    for engine in sync_engines(app):
        event.remove(engine, "before_cursor_execute", on_sql)


async def test_a_press_does_its_own_work_during_its_answers_round_trip(
    app, pair, telegram, timeline
):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    await bob.press("✅ Accept")
    app.cache.cache.clear_local()  # cold: the snapshot is read from Redis
    telegram.latency = LATENCY
    timeline.events.clear()

    await alice.press("💰 Fund 100.00 USDT")

    events = timeline.kinds()
    # The answer leaves first, before the snapshot's read, the SQL, the card...
    assert events[0] == ("issued", "answerCallbackQuery"), events
    assert events.count(("issued", "answerCallbackQuery")) == 1
    # ...and the press's own work starts while Telegram is answering it.
    assert events[1] == ("redis", "GET"), events
    assert events.index(("redis", "GET")) < timeline.at("replied", "answerCallbackQuery")
    assert await status_of(app, deal) == DealStatus.FUNDED
    assert "funded — the money is held in escrow" in alice.last.text


async def test_a_press_is_handled_whole_while_its_answer_is_unanswered(
    app, pair, telegram, timeline
):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    await bob.press("✅ Accept")
    telegram.latency = LATENCY
    answering = asyncio.Event()  # Telegram sits on the press's answer until set

    async def slow_answers(make_request, bot, method):
        if method.__api_method__ == "answerCallbackQuery":
            await answering.wait()
        return await make_request(bot, method)

    app.bot.session.middleware(slow_answers)
    timeline.events.clear()

    await alice.press("💰 Fund 100.00 USDT")

    assert timeline.kinds()[0] == ("issued", "answerCallbackQuery")
    assert ("replied", "answerCallbackQuery") not in timeline.kinds()
    assert await status_of(app, deal) == DealStatus.FUNDED
    assert "funded — the money is held in escrow" in alice.last.text
    assert "funded" in bob.last.text
    assert app.in_flight.count == 1  # the answer, still on its way
    answering.set()
    await app.in_flight.finish(5)
    assert ("replied", "answerCallbackQuery") in timeline.kinds()
    assert app.in_flight.count == 0


async def test_a_read_only_press_sends_its_reply_before_its_answer_returns(
    app, pair, telegram, timeline
):
    alice, _ = pair
    await alice.send("/start")  # L1 is warm: the press does no I/O but its requests
    telegram.latency = LATENCY
    timeline.events.clear()

    await alice.press("❓ Help")

    assert timeline.kinds() == [
        ("issued", "answerCallbackQuery"),
        ("issued", "editMessageText"),  # one round trip for the press, not two
        ("replied", "answerCallbackQuery"),
        ("replied", "editMessageText"),
    ]


async def test_the_time_to_answer_is_when_the_answer_left(app, pair, telegram, monkeypatch):
    alice, _ = pair
    await alice.send("/start")
    records: list[UpdateRecord] = []
    finish = app.metrics.finish
    monkeypatch.setattr(app.metrics, "finish", lambda r: (records.append(r), finish(r)))
    replied: list[int] = []
    telegram.add_listener(lambda request: replied.append(request.at_ns))
    telegram.latency = LATENCY

    await alice.press("❓ Help")

    (record,) = records
    assert record.answered_ns is not None
    # recorded when the request was made, a round trip before Telegram's reply
    assert replied[0] - record.answered_ns >= 0.9 * LATENCY * 1e9
    scrape = generate_latest(app.metrics.registry).decode()
    assert 'escrow_time_to_answer_seconds_count{route="help_button"} 1.0' in scrape


async def test_alerts_are_still_the_first_request_and_carry_their_text(
    app, pair, people, telegram, timeline
):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    old_card = bob.last
    await show(alice, deal)
    await alice.press("Cancel deal")
    await alice.press("Yes, cancel the deal")
    telegram.latency = LATENCY
    timeline.events.clear()

    result = await bob.press("✅ Accept", message=old_card)

    assert timeline.kinds()[0] == ("issued", "answerCallbackQuery")
    assert (result.answer.text, result.answer.show_alert) == (OUTDATED_CARD, True)
    assert "cancelled" in bob.messages[-2].text or "cancelled" in bob.last.text

    timeline.events.clear()
    mallory = people("Mallory", "mallory_m")
    telegram.latency = None
    await mallory.start()
    telegram.latency = LATENCY
    result = await mallory.feed(forge(mallory, telegram, old_card.keyboard[0][0].callback_data))
    await app.in_flight.finish(5)  # nothing but the answer: the press is done before it
    assert result.methods == ["answerCallbackQuery"]
    assert (result.answer.text, result.answer.show_alert) == (FORGED_BUTTON, True)


async def test_closing_waits_for_the_answers_on_their_way(app):
    telegram = FakeTelegram()
    other = await build_app(app.config, session=telegram, engine=app.database.engine)
    answer_sent = asyncio.Event()

    async def issued(make_request, bot, method):
        if method.__api_method__ == "answerCallbackQuery":
            answer_sent.set()
        return await make_request(bot, method)

    try:
        user = SimulatedUser(telegram, other.bot, other.dispatcher, user_id=59_001, first_name="Ed")
        await user.send("/start")
        other.bot.session.middleware(issued)
        telegram.latency = 0.3
        pressing = asyncio.create_task(user.press("❓ Help"))
        await asyncio.wait_for(answer_sent.wait(), 5)
        assert other.in_flight.count == 2  # the press, and its answer on its way
    finally:
        await other.aclose()
    assert telegram.closed
    assert telegram.methods[-2:] == ["answerCallbackQuery", "editMessageText"]
    assert [r.error for r in telegram.calls("answerCallbackQuery")] == [None]
    assert other.in_flight.count == 0
    await pressing


async def test_the_actors_card_and_the_other_partys_notice_go_out_together(
    app, pair, telegram, timeline
):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    await bob.press("✅ Accept")
    telegram.latency = LATENCY
    timeline.events.clear()

    await alice.press("💰 Fund 100.00 USDT")

    issued = [w for k, w in timeline.kinds() if k == "issued"]
    assert issued == ["answerCallbackQuery", "editMessageText", "sendMessage"]
    # the card (Alice's chat) and the notice (Bob's) are sent at once
    assert timeline.at("issued", "sendMessage") < timeline.at("replied", "editMessageText")
    assert "funded — the money is held in escrow" in alice.last.text
    assert "funded" in bob.last.text
