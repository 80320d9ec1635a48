"""Deals through the real Dispatcher and the Telegram double: the parties'
buttons, what each side sees, forged and outdated buttons, double presses,
and the order and cost of every press."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiogram.types import CallbackQuery, Update
from redis.asyncio.connection import Connection
from sqlalchemy import event, text

from bot.runtime.app import App
from bot.services import ServiceContext, Services
from bot.services.views import DealView
from bot.sim import FakeTelegram, SimulatedUser
from bot.telegram.keyboards import DealAct
from bot.telegram.texts import FORGED_BUTTON, OUTDATED_CARD
from db.models import DealStatus
from tests.e2e.conftest import actor, balance, sync_engines

PRICE = 100_00


async def status_of(app: App, deal: DealView) -> str:
    async with app.database.engine.connect() as conn:
        return await conn.scalar(text("SELECT status FROM escrows WHERE id = :i"), {"i": deal.id})


async def open_deal(app: App, alice: SimulatedUser, **overrides: Any) -> DealView:
    params: dict[str, Any] = dict(
        role="buyer",
        currency="USDT",
        amount=PRICE,
        description="Vintage lamp",
        counterparty=await app.services.users.find_by_username("bob_sells"),
    )
    params.update(overrides)
    created = await app.services.deals.create(await actor(app, alice), **params)
    return created.value.deal


def services_elsewhere(app: App) -> Services:
    """The use cases as another replica runs them: same database, but no event
    reaches this replica (lost, or it restarted)."""
    return Services(
        ServiceContext(
            db=app.database,
            settings=app.services.ctx.settings,
            currencies=app.services.ctx.currencies,
        )
    )


async def show(user: SimulatedUser, deal: DealView) -> None:
    await user.send(f"/deal {deal.code}")


# -- complete deals ----------------------------------------------------------------------


async def test_two_users_complete_a_deal_with_buttons(app, pair):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    assert "you are the seller" in bob.last.text
    assert bob.buttons()[:3] == ["✅ Accept", "Decline", "Cancel deal"]

    await bob.press("✅ Accept")
    assert bob.last.text.startswith("✅ You accepted the deal.")
    # Alice hears about it, with her own buttons
    assert alice.last.text.startswith("✅ @bob_sells accepted the deal.")
    assert alice.buttons()[0] == "💰 Fund 100.00 USDT"

    await alice.press("💰 Fund 100.00 USDT")
    assert "funded — the money is held in escrow" in alice.last.text
    assert await balance(app, alice) == (400_00, 100_00)
    assert bob.last.text.startswith("🔒 @alice_buys funded the deal")

    await bob.press("📦 Mark as delivered")
    assert alice.last.text.startswith("📦 @bob_sells marked the deal as delivered.")

    await alice.press("✅ Release payment")
    assert "can't be undone" in alice.last.text  # asked once more
    assert await status_of(app, deal) == DealStatus.DELIVERED
    await alice.press("✅ Yes, release the payment")
    assert await status_of(app, deal) == DealStatus.RELEASED
    assert await balance(app, alice) == (400_00, 0)
    assert await balance(app, bob) == (98_50, 0)
    assert bob.last.text.startswith("✅ @alice_buys released the payment")
    # the menu shows the new balance (the snapshot was invalidated after commit)
    await bob.send("/start")
    assert "Balance: 98.50 USDT" in bob.last.text


async def test_the_invited_user_joins_through_the_link(app, pair, people):
    alice, _ = pair
    created = await app.services.deals.create(
        await actor(app, alice),
        role="buyer",
        currency="USDT",
        amount=PRICE,
        description="Logo",
        counterparty=None,
    )
    carol = people("Carol", "carol_new")
    await carol.start(created.value.invitation.code)
    assert "You are invited to this deal" in carol.last.text
    # an open link is not addressed to anyone: nothing to decline
    assert carol.buttons() == ["✅ Accept the deal", "« Menu"]
    await carol.press("✅ Accept the deal")
    assert carol.last.text.startswith("✅ You joined the deal.")
    assert "you are the seller" in carol.last.text
    assert alice.last.text.startswith("✅ @carol_new accepted your invitation.")
    assert await status_of(app, created.value.deal) == DealStatus.ACCEPTED
    # the link works once
    dave = people("Dave", "dave_late")
    await dave.start(created.value.invitation.code)
    assert "already been used" in dave.last.text


async def test_decline_and_cancel(app, pair):
    alice, bob = pair
    declined = await open_deal(app, alice)
    await show(bob, declined)
    await bob.press("Decline")
    assert await status_of(app, declined) == DealStatus.DECLINED
    assert alice.last.text.startswith("✖️ @bob_sells declined the deal.")

    cancelled = await open_deal(app, alice)
    await show(alice, cancelled)
    await alice.press("Cancel deal")
    await alice.press("Yes, cancel the deal")
    assert await status_of(app, cancelled) == DealStatus.CANCELLED

    refunded = await open_deal(app, alice)
    await show(bob, refunded)
    await bob.press("✅ Accept")
    await alice.press("💰 Fund 100.00 USDT")
    await bob.press("↩️ Cancel and refund the buyer")
    await bob.press("↩️ Yes, cancel and refund")
    assert await status_of(app, refunded) == DealStatus.REFUNDED
    assert await balance(app, alice) == (500_00, 0)
    assert alice.last.text.startswith("↩️ @bob_sells cancelled the deal")


async def test_a_dispute_reaches_the_admins(app, pair, people):
    alice, bob = pair
    admin = people.admin()
    await admin.start()
    deal = await open_deal(app, alice)
    await show(bob, deal)
    await bob.press("✅ Accept")
    await alice.press("💰 Fund 100.00 USDT")
    await alice.press("⚠️ Open a dispute")
    assert "What went wrong?" in alice.last.text
    await alice.send("x" * 501)
    assert "too long" in alice.last.text  # the step repeats
    await alice.send("The lamp arrived <broken>")
    assert await status_of(app, deal) == DealStatus.DISPUTED
    assert "in dispute" in alice.last.text
    assert "opened a dispute" in bob.last.text and "<broken>" in bob.last.text
    assert admin.last.text.startswith("🛡 New dispute opened by @alice_buys (the buyer).")
    assert "✅ Release to seller" in admin.buttons()


# -- refusals that change nothing ----------------------------------------------------------


def forge(user: SimulatedUser, telegram: FakeTelegram, data: str) -> Update:
    """A callback query with data the bot never put on this user's screen."""
    shown = user.last.message
    query = CallbackQuery(
        id=telegram.open_callback_query(user.id),
        from_user=user.user,
        chat_instance="forged",
        message=shown,
        data=data,
    ).as_(user.bot)
    return Update(update_id=telegram.next_update_id(), callback_query=query).as_(user.bot)


async def test_forged_buttons_get_an_alert_and_change_nothing(app, pair, people, telegram):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    accept = next(b for b in bob.last.keyboard[0])
    mallory = people("Mallory", "mallory_m")
    await mallory.start()

    # Bob's own button, replayed by someone else
    result = await mallory.feed(forge(mallory, telegram, accept.callback_data))
    assert result.methods == ["answerCallbackQuery"]
    assert (result.answer.text, result.answer.show_alert) == (FORGED_BUTTON, True)

    # an action Bob was never offered, and a tampered version
    for data in (
        DealAct(action="fund", code=deal.code, v=deal.version, sig="AAAAAAAAAA").pack(),
        DealAct.unpack(accept.callback_data).model_copy(update={"v": 99}).pack(),
    ):
        result = await bob.feed(forge(bob, telegram, data))
        assert result.methods == ["answerCallbackQuery"]
        assert result.answer.show_alert and result.answer.text == FORGED_BUTTON
    # garbage callback data
    result = await bob.feed(forge(bob, telegram, "da:release"))
    assert result.methods == ["answerCallbackQuery"]
    assert await status_of(app, deal) == DealStatus.PENDING


async def test_an_outdated_card_is_refreshed_with_an_alert(app, pair):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    old_card = bob.last
    await show(alice, deal)
    await alice.press("Cancel deal")
    await alice.press("Yes, cancel the deal")
    result = await bob.press("✅ Accept", message=old_card)
    assert result.methods[0] == "answerCallbackQuery"
    assert (result.answer.text, result.answer.show_alert) == (OUTDATED_CARD, True)
    assert "cancelled" in bob.messages[-2].text or "cancelled" in bob.last.text
    assert await status_of(app, deal) == DealStatus.CANCELLED


async def test_two_presses_of_release_at_once_pay_once(app, pair):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    await bob.press("✅ Accept")
    await alice.press("💰 Fund 100.00 USDT")
    await alice.press("✅ Release payment")
    confirm = alice.last
    first, second = await asyncio.gather(
        alice.press("✅ Yes, release the payment", message=confirm),
        alice.press("✅ Yes, release the payment", message=confirm),
    )
    assert await status_of(app, deal) == DealStatus.RELEASED
    assert await balance(app, bob) == (98_50, 0)
    assert await balance(app, alice) == (400_00, 0)
    # The second press is the same person's move, already made: it shows the
    # success it was (the same card: an edit Telegram finds unchanged, or, had
    # this replica heard of the move before it began, the outdated card's
    # alert), never a warning in place of the success.
    for result in (first, second):
        assert not any("⚠️" in text or "can't" in text for text in result.texts)
    assert any("✅ Payment released to the seller." in t for t in first.texts + second.texts)
    assert alice.chat.messages[confirm.message_id].text.startswith(
        "✅ Payment released to the seller."
    )
    async with app.database.engine.connect() as conn:
        legs = await conn.scalar(
            text("SELECT count(*) FROM ledger_entries WHERE escrow_id = :i AND kind = 'release'"),
            {"i": deal.id},
        )
    assert legs == 2


async def test_a_press_delivered_again_after_its_commit_shows_its_success(app, pair):
    # Bob's Accept committed on a replica that died before answering; Telegram
    # delivers the same press again to a replica that never heard of the move.
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    card = bob.last
    elsewhere = services_elsewhere(app)
    await elsewhere.deals.accept(await actor(app, bob), deal.code)
    told_alice = len(alice.messages)

    await bob.press("✅ Accept", message=card)

    assert bob.last.text.startswith("✅ You accepted the deal.")
    assert "⚠️" not in bob.last.text
    assert await status_of(app, deal) == DealStatus.ACCEPTED
    assert len(alice.messages) == told_alice  # nothing committed now, nobody told again


async def test_the_same_move_made_by_the_other_party_is_still_refused(app, pair):
    # Bob was asked "Yes, cancel the deal"; Alice cancelled it meanwhile through
    # a replica Bob's never heard from. The deal is where Bob's press would take
    # it, but the move was not his: he is told it changed, not that he did it.
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    await bob.press("✅ Accept")
    await bob.press("Cancel deal")
    confirm = bob.last
    elsewhere = services_elsewhere(app)
    await elsewhere.deals.cancel(await actor(app, alice), deal.code)

    await bob.press("Yes, cancel the deal", message=confirm)

    assert "changed since you were asked: it is cancelled now" in bob.last.text
    assert not bob.last.text.startswith("The deal is cancelled.")
    assert await status_of(app, deal) == DealStatus.CANCELLED


async def test_a_confirmation_from_before_an_unheard_move_does_not_refund(app, pair):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    await bob.press("✅ Accept")
    await bob.press("Cancel deal")  # asked while the deal is only accepted
    confirm = bob.last
    assert bob.buttons(confirm)[0] == "Yes, cancel the deal"
    # Alice funds it through another replica whose event this one never hears
    # (lost, or this replica restarted): its DealVersions knows nothing newer.
    elsewhere = services_elsewhere(app)
    await elsewhere.deals.fund(await actor(app, alice), deal.code)
    assert not app.deals_seen.outdated(deal.code, deal.version + 1)

    result = await bob.press("Yes, cancel the deal", message=confirm)
    assert not result.answer.show_alert  # not the outdated-card path: the service refused
    assert await status_of(app, deal) == DealStatus.FUNDED
    assert await balance(app, alice) == (400_00, 100_00)
    assert "changed since you were asked" in bob.last.text
    assert "funded — the money is held in escrow" in bob.last.text
    # the card as it is now offers the refund, asked once more
    assert "↩️ Cancel and refund the buyer" in bob.buttons()


async def test_someone_elses_deal_code(app, pair, people):
    alice, _ = pair
    deal = await open_deal(app, alice)
    mallory = people("Mallory", "mallory_m")
    await mallory.send(f"/deal {deal.code}")
    assert mallory.last.text == "⚠️ No such deal."


# -- order and cost of every press --------------------------------------------------------


class Timeline:
    """Bot API requests, SQL statements and Redis commands, in the order they happen."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.recording = False

    def add(self, kind: str, what: str) -> None:
        if self.recording:
            self.events.append((kind, what))

    def of(self, kind: str) -> list[str]:
        return [what for k, what in self.events if k == kind]


@pytest.fixture
def timeline(app: App, telegram: FakeTelegram, monkeypatch) -> Iterator[Timeline]:
    line = Timeline()

    def on_sql(conn, cursor, statement, *args):
        line.add("sql", statement.split()[0])

    def on_begin(conn):
        line.add("sql", "BEGIN")

    original = Connection.send_packed_command

    async def on_redis(self, command, check_health=True):
        packed = command if isinstance(command, (bytes, bytearray)) else b"".join(command)
        name = packed.split(b"\r\n")[2].decode().upper() if packed.startswith(b"*") else "?"
        if name not in ("PING", "SUBSCRIBE"):  # the invalidation listener's own traffic
            line.add("redis", name)
        return await original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", on_redis)
    telegram.add_listener(lambda request: line.add("telegram", request.method))
    listened = [(engine, "before_cursor_execute", on_sql) for engine in sync_engines(app)]
    listened.append((app.database.engine.sync_engine, "begin", on_begin))
    for engine, name, listener in listened:
        event.listen(engine, name, listener)
    yield line
    for engine, name, listener in listened:
        event.remove(engine, name, listener)


async def press(line: Timeline, user: SimulatedUser, label: str) -> list[tuple[str, str]]:
    line.events.clear()
    line.recording = True
    try:
        await user.press(label)
    finally:
        line.recording = False
    return list(line.events)


async def test_every_press_is_answered_before_the_handlers_io(app, pair, timeline):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    await bob.press("✅ Accept")
    app.cache.cache.clear_local()  # cold: the snapshot is read from Redis and Postgres
    for user, label in [
        (alice, "💰 Fund 100.00 USDT"),
        (alice, "⟳ Refresh"),
        (alice, "📋 My deals"),
        (alice, "« Menu"),
        (alice, "❓ Help"),
        (alice, "« Menu"),
    ]:
        events = await press(timeline, user, label)
        # the answer comes before the snapshot's cache read, SQL, anything
        assert events[0] == ("telegram", "answerCallbackQuery"), (label, events)
        assert events.count(("telegram", "answerCallbackQuery")) == 1


async def test_a_read_only_press_costs_no_sql_and_no_redis_on_a_warm_cache(app, pair, timeline):
    alice, _ = pair
    await alice.send("/start")  # L1 is warm now
    events = await press(timeline, alice, "❓ Help")
    assert timeline.of("sql") == [] and timeline.of("redis") == []
    assert timeline.of("telegram") == ["answerCallbackQuery", "editMessageText"], events
    # with L1 dropped, the same press costs exactly one Redis GET and no SQL
    app.cache.cache.clear_local()
    await press(timeline, alice, "« Menu")
    assert timeline.of("sql") == [] and timeline.of("redis") == ["GET"]


async def test_a_write_is_one_transaction(app, pair, timeline):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    await bob.press("✅ Accept")
    await press(timeline, alice, "💰 Fund 100.00 USDT")
    sql = timeline.of("sql")
    assert sql.count("BEGIN") == 1, sql
    # the lock, the transition, the money: the card needs no extra read
    assert [s for s in sql if s != "BEGIN"] == ["SELECT", "WITH", "WITH"], sql
