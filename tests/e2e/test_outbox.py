"""The notification outbox: every change writes its notifications in its own
transaction; the handler sends them at once; what it could not send (a crash
between commit and send, Telegram down) the worker sends after the grace, with
a backoff, at most `outbox_attempts` times; a chat that refuses the bot is not
asked again; two workers never send one notification twice."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from aiogram.exceptions import (
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramServerError,
)
from sqlalchemy import text

from bot.runtime.app import App
from bot.runtime.notifier import LEASE_RAN_OUT, Outbox
from bot.services.errors import WrongState
from bot.services.notifications import Subjects, Who
from bot.sim import FakeTelegram, SimulatedUser
from bot.sim.users import ChatMessage
from db.sql.notifications import Notice
from tests.e2e.conftest import actor
from tests.e2e.test_deals import open_deal
from tests.refusals import refuses

GRACE = timedelta(milliseconds=300)


async def rows(app: App) -> list[Any]:
    async with app.database.engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT id, chat_id, kind, status, attempts, note, last_error,"
                " extract(epoch FROM due_at - now()) AS due_in FROM notifications ORDER BY id"
            )
        )
        return result.all()


async def make_due(app: App) -> None:
    """As if the grace (or a backoff) had passed."""
    async with app.database.engine.begin() as conn:
        await conn.execute(text("UPDATE notifications SET due_at = now() WHERE status = 'pending'"))


def told(user: SimulatedUser, words: str) -> list[ChatMessage]:
    return [m for m in user.messages if words in m.text]


def crash_before_sending(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The process dies right after the commit: the handler never sends."""
    lost: list[int] = []

    async def died(self: Outbox, notices: Any, *subjects: Any, **kwargs: Any) -> int:
        lost.extend(n.id for n in notices)
        return 0

    monkeypatch.setattr(Outbox, "send", died)
    return lost


def server_down(error: type[Exception]) -> Any:
    def make(call: Any) -> Exception:
        if error is TelegramServerError:
            return TelegramServerError(call, "Bad Gateway")
        return TelegramNetworkError(call, "connection reset")

    return make


async def test_each_change_writes_its_notifications_in_its_own_transaction(app, pair, people):
    alice, bob = pair
    deal = await open_deal(app, alice)  # by @username: Bob is told
    assert [(r.kind, r.chat_id, r.status) for r in await rows(app)] == [
        ("invited", bob.id, "pending")
    ]
    assert 29 < (await rows(app))[0].due_in <= 30  # the handler's grace, from config.toml
    await bob.send(f"/deal {deal.code}")
    await bob.press("✅ Accept")
    assert told(alice, "@bob_sells accepted the deal")  # the handler sent it at once
    await alice.press("💰 Fund 100.00 USDT")
    assert told(bob, "@alice_buys funded the deal")
    admin = people.admin()
    await admin.start()
    await bob.press("⚠️ Open a dispute")
    await bob.send("It never arrived")
    kinds = [(r.kind, r.chat_id, r.note) for r in (await rows(app))[1:]]
    assert kinds == [
        ("accept", alice.id, None),
        ("fund", bob.id, None),
        ("dispute", alice.id, "It never arrived"),
        ("dispute_opened", admin.id, "It never arrived"),
    ]
    # a refused action (the seller can't release) writes nothing
    before = len(await rows(app))
    with refuses(WrongState, r"you can.t release it now", app.services.ctx.currencies):
        await app.services.deals.release(await actor(app, bob), deal.code)
    assert len(await rows(app)) == before
    assert told(alice, "Reason: It never arrived")
    assert told(admin, "New dispute opened by @bob_sells")


async def test_a_crash_between_commit_and_send_delays_the_notification(app, pair, monkeypatch):
    alice, bob = pair
    app.services.ctx.notify_grace = GRACE
    deal = await open_deal(app, alice)
    await app.outbox.send(
        (await rows_as_notices(app)), deal, actor=await actor(app, alice)
    )  # Bob sees the deal
    await bob.press("✅ Accept")
    await app.outbox.flush()  # its worker's tick recorded what it sent so far
    lost = crash_before_sending(monkeypatch)
    await alice.press("💰 Fund 100.00 USDT")
    assert len(lost) == 1 and not told(bob, "funded the deal")
    monkeypatch.undo()
    # another replica's worker (or this one, restarted): nothing is due yet
    worker = Outbox(app.bot, app.services, app.dispatcher["signer"], app.config.runtime)
    assert await worker.run_once() == 0
    await asyncio.sleep(GRACE.total_seconds() + 0.05)
    assert await worker.run_once() == 1
    [message] = told(bob, "🔒 @alice_buys funded the deal")
    assert "📦 Mark as delivered" in bob.buttons(message)  # his card, his buttons
    await worker.flush()
    assert [r.status for r in await rows(app) if r.id in lost] == ["sent"]
    assert await worker.run_once() == 0  # sent once
    await bob.press("📦 Mark as delivered", message=message)  # and the card works
    assert told(alice, "marked the deal as delivered")


async def rows_as_notices(app: App) -> list[Notice]:
    async with app.database.engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT id, chat_id, kind, user_id, escrow_id, withdrawal_id, actor_id, note,"
                " attempts FROM notifications WHERE status = 'pending' ORDER BY id"
            )
        )
        return [Notice(**row._mapping) for row in result]


async def test_what_the_handler_sent_the_worker_does_not_send_again(app, pair):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await app.outbox.send(await rows_as_notices(app), deal, actor=await actor(app, alice))
    await bob.press("✅ Accept")
    assert len(told(alice, "accepted the deal")) == 1
    assert await app.outbox.flush() == 2
    await make_due(app)  # nothing is pending: nothing becomes due
    assert await app.outbox.run_once() == 0
    assert [r.status for r in await rows(app)] == ["sent", "sent"]
    assert len(told(alice, "accepted the deal")) == 1


async def test_the_worker_renders_what_the_handler_would_have_sent(app, pair, people):
    alice, bob = pair
    deal = await open_deal(app, alice)
    notices = await rows_as_notices(app)
    alice_as_handler_sees = Who("@alice_buys", alice.id)
    handler_view = app.outbox.notices.render(
        notices[0], Subjects({deal.id: deal}, {}, {notices[0].actor_id: alice_as_handler_sees})
    )
    subjects = await app.services.outbox.subjects(notices)
    chat, text_, markup = app.outbox.notices.render(notices[0], subjects)
    assert chat == bob.id == handler_view[0]
    assert (text_, markup) == handler_view[1:]
    assert "📨 @alice_buys opened a deal with you: you are the seller." in text_


async def test_telegram_down_is_retried_with_a_backoff_until_it_is_delivered(
    app, pair, telegram: FakeTelegram
):
    alice, bob = pair
    deal = await open_deal(app, alice)
    telegram.fail_next("sendMessage", error=server_down(TelegramServerError))
    await app.outbox.send(await rows_as_notices(app), deal, actor=await actor(app, alice))
    assert not told(bob, "opened a deal with you")
    await app.outbox.flush()
    [row] = await rows(app)
    assert row.status == "pending" and "Bad Gateway" in row.last_error and row.due_in > 25
    await make_due(app)
    telegram.fail_next("sendMessage", error=server_down(TelegramNetworkError))
    assert await app.outbox.run_once() == 0  # the worker's first attempt fails too
    [row] = await rows(app)
    assert row.attempts == 1 and row.status == "pending"
    assert 9 < row.due_in <= 10  # outbox_retry_seconds, doubling per attempt
    assert await app.outbox.run_once() == 0  # not due yet
    await make_due(app)
    assert await app.outbox.run_once() == 1
    assert len(told(bob, "opened a deal with you")) == 1
    await app.outbox.flush()
    [row] = await rows(app)
    assert (row.status, row.attempts) == ("sent", 2)
    counted = {
        (path, result): app.metrics.registry.get_sample_value(
            "escrow_notifications_total", {"path": path, "result": result}
        )
        for path, result in (("direct", "pending"), ("worker", "pending"), ("worker", "sent"))
    }
    assert counted == {k: 1.0 for k in counted}  # on /metrics: what was tried, and how it went


async def test_attempts_are_bounded(app, pair, telegram: FakeTelegram):
    alice, _ = pair
    await open_deal(app, alice)
    app.outbox.attempts = 3
    await make_due(app)
    for attempt in range(1, 4):
        telegram.fail_next("sendMessage", error=server_down(TelegramServerError))
        await app.outbox.run_once()
        await app.outbox.flush()
        [row] = await rows(app)
        assert row.attempts == attempt
        await make_due(app)
    assert row.status == "failed"
    assert await app.outbox.run_once() == 0  # given up: never claimed again
    assert (await rows(app))[0].attempts == 3


async def test_a_chat_that_blocked_the_bot_is_not_asked_again(app, pair):
    alice, bob = pair
    deal = await open_deal(app, alice)
    bob.block()
    await app.outbox.send(await rows_as_notices(app), deal, actor=await actor(app, alice))
    await app.outbox.flush()
    [row] = await rows(app)
    assert row.status == "undeliverable" and "blocked" in row.last_error
    await make_due(app)
    bob.unblock()
    assert await app.outbox.run_once() == 0
    assert not told(bob, "opened a deal with you")


async def test_two_workers_send_each_notification_exactly_once(
    app, pair, telegram: FakeTelegram, monkeypatch
):
    alice, bob = pair
    crash_before_sending(monkeypatch)
    for _ in range(12):
        await open_deal(app, alice)
    monkeypatch.undo()
    await make_due(app)
    telegram.latency = 0.002  # sends overlap
    signer, runtime = app.dispatcher["signer"], app.config.runtime
    workers = [Outbox(app.bot, app.services, signer, runtime, batch=5) for _ in range(2)]
    sent = await asyncio.gather(*(worker.run_once() for worker in workers))
    assert sum(sent) == 12 and all(sent)  # both worked, neither twice
    assert len(told(bob, "opened a deal with you")) == 12
    for worker in workers:
        await worker.flush()
    assert {r.status for r in await rows(app)} == {"sent"}


async def test_a_batch_being_sent_is_leased_to_its_worker(app, pair, telegram: FakeTelegram):
    alice, bob = pair
    await open_deal(app, alice)
    await make_due(app)
    telegram.latency = 0.3  # Telegram is slow: the send is still in flight below
    first = asyncio.create_task(app.outbox.run_once())
    await asyncio.sleep(0.1)
    [row] = await rows(app)
    assert row.attempts == 1 and 299 < row.due_in <= 300  # outbox_lease_seconds
    other = Outbox(app.bot, app.services, app.dispatcher["signer"], app.config.runtime)
    assert await other.run_once() == 0  # another replica's worker leaves it alone
    assert await first == 1
    await app.outbox.flush()
    assert [r.status for r in await rows(app)] == ["sent"]
    assert len(told(bob, "opened a deal with you")) == 1


async def test_a_withdrawal_request_reaches_the_admins_even_after_a_crash(app, pair, people):
    alice, _ = pair
    admin = people.admin()
    await admin.start()
    # the process dies before the handler's send: the request is only in the outbox
    await app.services.wallets.request_withdrawal(
        await actor(app, alice), "USDT", 50_00, "TXYZ-wallet"
    )
    assert [r.kind for r in await rows(app)] == ["withdrawal_requested"]
    await make_due(app)
    assert await app.outbox.run_once() == 1
    [message] = told(admin, "New withdrawal request")
    assert "@alice_buys" in message.text and f"(id {alice.id})" in message.text
    assert "50.00" in message.text


async def test_a_batch_outliving_half_its_lease_hands_the_rest_back(
    app, pair, telegram: FakeTelegram, monkeypatch
):
    """Telegram so slow that a batch would outlive its lease: the worker stops
    sending at half of it, and a worker coming once the lease is over sends
    only what the first handed back, later. Nobody is told twice."""
    alice, bob = pair
    crash_before_sending(monkeypatch)
    for _ in range(5):
        await open_deal(app, alice)
    monkeypatch.undo()
    await make_due(app)
    telegram.latency = 0.4
    signer = app.dispatcher["signer"]
    runtime = msgspec.structs.replace(app.config.runtime, outbox_lease_seconds=1.0)
    first, second = (Outbox(app.bot, app.services, signer, runtime) for _ in range(2))
    busy = asyncio.create_task(first.run_once())
    await asyncio.sleep(1.1)  # the first batch's lease is over
    assert await second.run_once() == 0  # what was handed back is not due yet
    assert await busy == 2  # sends started before 0.5 s: at 0 and 0.4 s
    statuses = [(r.status, r.last_error) for r in await rows(app)]
    assert statuses.count(("sent", None)) == 2
    assert statuses.count(("pending", LEASE_RAN_OUT)) == 3
    assert len(told(bob, "opened a deal with you")) == 2
    await make_due(app)  # its backoff has passed
    telegram.latency = 0.0
    assert await second.run_once() == 3
    await second.flush()
    assert {r.status for r in await rows(app)} == {"sent"}
    assert len(told(bob, "opened a deal with you")) == 5


# -- what Telegram refuses -------------------------------------------------------------


def forbidden(description: str) -> Any:
    return lambda call: TelegramForbiddenError(call, f"Forbidden: {description}")


def counted(app: App, path: str, result: str) -> float:
    value = app.metrics.registry.get_sample_value(
        "escrow_notifications_total", {"path": path, "result": result}
    )
    return value or 0.0


# Telegram's descriptions (telegram-bot-api) of a chat that will not take a message
# from the bot, however often it is asked.
REFUSING_CHATS = {
    "blocked": dict(error=forbidden("bot was blocked by the user")),
    "deactivated": dict(error=forbidden("user is deactivated")),
    "never started": dict(error=forbidden("bot can't initiate conversation with a user")),
    "kicked": dict(error=forbidden("bot was kicked from the group chat")),
    "no such chat": dict(bad_request="chat not found"),
    "unknown user": dict(bad_request="private chat not found"),
}

# Requests Telegram refuses because of what we sent: sending it again fails again.
OUR_DEFECTS = {
    "markup": dict(bad_request='can\'t parse entities: Unsupported start tag "x" at byte offset 0'),
    "length": dict(bad_request="message is too long"),
    "button": dict(bad_request="BUTTON_DATA_INVALID"),
    "entity too large": dict(
        error=lambda call: TelegramEntityTooLarge(call, "Request Entity Too Large")
    ),
}


@pytest.mark.parametrize("refusal", REFUSING_CHATS.values(), ids=REFUSING_CHATS)
async def test_a_chat_that_refuses_the_bot_is_undeliverable(
    app, pair, telegram: FakeTelegram, refusal: dict[str, Any], caplog
):
    alice, bob = pair
    deal = await open_deal(app, alice)
    telegram.fail_next("sendMessage", **refusal)
    with caplog.at_level(logging.INFO, logger="bot.runtime.notifier"):
        await app.outbox.send(await rows_as_notices(app), deal, actor=await actor(app, alice))
    await app.outbox.flush()
    [row] = await rows(app)
    assert row.status == "undeliverable" and row.last_error
    assert [r.levelno for r in caplog.records if r.name == "bot.runtime.notifier"] == [logging.INFO]
    assert counted(app, "direct", "undeliverable") == 1
    await make_due(app)
    assert await app.outbox.run_once() == 0  # not asked again
    assert not told(bob, "opened a deal with you")


@pytest.mark.parametrize("path", ["direct", "worker"])
@pytest.mark.parametrize("defect", OUR_DEFECTS.values(), ids=OUR_DEFECTS)
async def test_a_message_telegram_refuses_as_malformed_fails_loudly_once(
    app, pair, telegram: FakeTelegram, monkeypatch, defect: dict[str, Any], path: str, caplog
):
    """Not the chat's fault but ours: the row is failed with Telegram's words,
    logged at ERROR with its id and counted, and not tried again."""
    alice, bob = pair
    if path == "worker":
        crash_before_sending(monkeypatch)
    deal = await open_deal(app, alice)
    monkeypatch.undo()
    [notice] = await rows_as_notices(app)
    telegram.fail_next("sendMessage", **defect)
    with caplog.at_level(logging.INFO, logger="bot.runtime.notifier"):
        if path == "direct":
            await app.outbox.send([notice], deal, actor=await actor(app, alice))
        else:
            await make_due(app)
            assert await app.outbox.run_once() == 0
    await app.outbox.flush()
    [row] = await rows(app)
    assert row.status == "failed"
    refused = telegram.calls("sendMessage")[-1].error
    assert refused is not None and str(refused.message) in row.last_error
    [logged] = [r for r in caplog.records if r.name == "bot.runtime.notifier"]
    assert logged.levelno == logging.ERROR and f"notification {notice.id}" in logged.getMessage()
    assert counted(app, path, "failed") == 1
    await make_due(app)
    assert await app.outbox.run_once() == 0  # given up: never claimed again
    assert not told(bob, "opened a deal with you")


async def test_an_overlong_notification_is_failed_by_what_telegram_says(app, pair, people):
    """A text the double refuses as Telegram does (over 4,096 characters once
    parsed) fails the row at once instead of retrying it outbox_attempts times."""
    alice, bob = pair
    admin = people.admin()
    await admin.start()
    deal = await open_deal(app, alice)
    await bob.send(f"/deal {deal.code}")
    await bob.press("✅ Accept")
    await alice.press("💰 Fund 100.00 USDT")
    # a reason longer than any the settings allow, as a row written by an older release
    outcome = await app.services.deals.dispute(await actor(app, bob), deal.code, "why")
    to_admin = next(n for n in outcome.notices if n.kind == "dispute_opened")
    long_notice = msgspec.structs.replace(to_admin, note="<" * 4_000)
    await app.outbox.send([long_notice], outcome.value, actor=await actor(app, bob))
    await app.outbox.flush()
    statuses = {r.id: (r.status, r.last_error) for r in await rows(app)}
    assert statuses[to_admin.id] == (
        "failed",
        "Telegram server says - Bad Request: message is too long",
    )
    assert not told(admin, "New dispute opened")
