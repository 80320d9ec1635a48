"""The admin panel through the real Dispatcher and the Telegram double:
disputes settled both ways, a double press that pays once, deposits by hand,
stats, and everyone else kept out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from aiogram.types import CallbackQuery, Update
from sqlalchemy import text

from bot.runtime.app import App, build_app
from bot.services.views import DealView
from bot.sim import FakeTelegram, SimulatedUser
from bot.telegram.handlers.admin import (
    AdminCard,
    AdminCredit,
    AdminPanel,
    AdminSplit,
    AdminUser,
    AdminWithdrawal,
)
from bot.telegram.keyboards import AdminDeal, AdminEvidence, Nav
from bot.telegram.texts import NOT_ADMIN
from db.models import DealStatus
from tests.e2e.conftest import actor, balance
from tests.e2e.test_wallet import fund, on

PRICE = 100_00
SETTLE = ["✅ Release to seller", "↩️ Refund buyer", "✂️ Split"]


async def status_of(app: App, deal: DealView) -> str:
    async with app.database.engine.connect() as conn:
        return await conn.scalar(text("SELECT status FROM escrows WHERE id = :i"), {"i": deal.id})


async def ledger_legs(app: App, where: str, **params: object) -> int:
    async with app.database.engine.connect() as conn:
        return await conn.scalar(text(f"SELECT count(*) FROM ledger_entries WHERE {where}"), params)


@pytest.fixture
async def admin(people) -> SimulatedUser:
    admin = people.admin()
    await admin.start()
    return admin


@pytest.fixture
async def pair(app: App, people) -> tuple[SimulatedUser, SimulatedUser]:
    alice, bob = people("Alice", "alice_buys"), people("Bob", "bob_sells")
    await alice.start()
    await bob.start()
    await fund(app, alice, 500_00)
    return alice, bob


async def disputed_deal(app: App, alice: SimulatedUser, bob: SimulatedUser) -> DealView:
    """Alice buys from Bob, funds, and disputes: all through the services."""
    buyer, seller = await actor(app, alice), await actor(app, bob)
    created = await app.services.deals.create(
        buyer,
        role="buyer",
        currency="USDT",
        amount=PRICE,
        description="Vintage <lamp>",
        counterparty=await app.services.users.find_by_username("bob_sells"),
    )
    code = created.value.deal.code
    await app.services.deals.accept(seller, code)
    await app.services.deals.fund(await actor(app, alice), code)
    return (await app.services.deals.dispute(await actor(app, alice), code, "broken")).value


async def open_dispute(admin: SimulatedUser, deal: DealView) -> None:
    await admin.send("/admin")
    assert admin.buttons() == [
        "⚠️ Open disputes",
        "🏦 Pending withdrawals",
        "💰 Credit a deposit",
        "👤 Users",
        "📊 Stats",
        "« Menu",
    ]
    await admin.press("⚠️ Open disputes")
    assert "Open disputes (1)" in admin.last.text
    assert f"#{deal.code} · 100.00 USDT · Vintage <lamp>" in admin.last.text
    await admin.press(f"#{deal.code} · 100.00 USDT")
    assert f"Deal #{deal.code}" in admin.last.text and "in dispute" in admin.last.text
    # who opened it and why, and what they sent (nothing yet)
    assert "⚠️ Dispute opened by @alice_buys (the buyer)" in admin.last.text
    assert "Reason: broken" in admin.last.text and "📎 No evidence yet." in admin.last.text
    assert admin.buttons() == [*SETTLE, "⟳ Refresh", "« Admin"]


# -- disputes ----------------------------------------------------------------------------


async def test_a_dispute_released_to_the_seller(app, admin, pair):
    alice, bob = pair
    deal = await disputed_deal(app, alice, bob)
    await open_dispute(admin, deal)

    await admin.press("✅ Release to seller")
    assert admin.last.text.startswith(
        "❓ Release 98.50 USDT to @bob_sells (fee 1.50 USDT)? This can't be undone."
    )
    assert admin.buttons() == ["✅ Yes, release to the seller", "« Back"]
    assert await status_of(app, deal) == DealStatus.DISPUTED
    await admin.press("✅ Yes, release to the seller")
    assert admin.last.text.startswith("✅ Released to the seller.")
    assert "released to the seller" in admin.last.text
    assert admin.buttons() == ["🗂 Dispute file", "« Admin"]

    assert await status_of(app, deal) == DealStatus.RELEASED
    assert await balance(app, alice) == (400_00, 0)
    assert await balance(app, bob) == (98_50, 0)
    # both parties hear it, each on their own card
    settled = "🛡 An admin settled the dispute: the payment is released to the seller."
    assert alice.last.text.startswith(settled) and "you are the buyer" in alice.last.text
    assert bob.last.text.startswith(settled) and "you are the seller" in bob.last.text
    # and the seller's wallet shows it
    await bob.send("/wallet")
    assert "USDT: 98.50 USDT available · 0.00 USDT held" in bob.last.text


async def test_a_dispute_refunded_from_the_admins_notification(app, admin, pair):
    alice, bob = pair
    deal = (
        await app.services.deals.create(
            await actor(app, alice),
            role="buyer",
            currency="USDT",
            amount=PRICE,
            description="Lamp",
            counterparty=await app.services.users.find_by_username("bob_sells"),
        )
    ).value.deal
    await bob.send(f"/deal {deal.code}")
    await bob.press("✅ Accept")
    await alice.press("💰 Fund 100.00 USDT")
    await alice.press("⚠️ Open a dispute")
    await alice.send("Never arrived")
    assert admin.last.text.startswith("🛡 New dispute opened by @alice_buys (the buyer).")

    # the notification's own buttons lead to the same confirmation
    await admin.press("↩️ Refund buyer")
    assert admin.last.text.startswith("❓ Refund 100.00 USDT to @alice_buys?")
    await admin.press("« Back")
    assert admin.buttons() == [*SETTLE, "⟳ Refresh", "« Admin"]
    await admin.press("↩️ Refund buyer")
    await admin.press("↩️ Yes, refund the buyer")
    assert admin.last.text.startswith("↩️ Refunded to the buyer.")
    assert await status_of(app, deal) == DealStatus.REFUNDED
    assert await balance(app, alice) == (500_00, 0)
    assert await balance(app, bob) == (0, 0)
    settled = "🛡 An admin settled the dispute: the buyer is refunded."
    assert alice.last.text.startswith(settled) and bob.last.text.startswith(settled)

    # the list is empty now
    await admin.press("« Admin")
    await admin.press("⚠️ Open disputes")
    assert "Open disputes (0)" in admin.last.text and "No open disputes." in admin.last.text


@pytest.fixture(params=["one replica", "two replicas"])
async def admin_elsewhere(request, app: App, admin: SimulatedUser) -> AsyncIterator[SimulatedUser]:
    """The admin again, on this replica or on a second one (same Postgres,
    Redis and Telegram). On one replica a user's presses run in turn; on two
    they really race."""
    if request.param == "one replica":
        yield admin
        return
    other = await build_app(app.config, session=admin.telegram, engine=app.database.engine)
    yield on(other, admin)
    await other.aclose()


async def test_two_presses_of_release_at_once_pay_once(app, admin, pair, admin_elsewhere):
    alice, bob = pair
    deal = await disputed_deal(app, alice, bob)
    await open_dispute(admin, deal)
    await admin.press("✅ Release to seller")
    confirm = admin.last
    first, second = await asyncio.gather(
        admin.press("✅ Yes, release to the seller", message=confirm),
        admin_elsewhere.press("✅ Yes, release to the seller", message=confirm),
    )
    assert await status_of(app, deal) == DealStatus.RELEASED
    assert await balance(app, bob) == (98_50, 0)
    assert await balance(app, alice) == (400_00, 0)
    told = " ".join(first.texts + second.texts)
    assert "✅ Released to the seller." in told
    # the second press was this admin's own settlement already made: no warning
    assert "⚠️" not in told
    assert await ledger_legs(app, "escrow_id = :i AND kind = 'release'", i=deal.id) == 2
    # each party is told once
    assert sum("settled the dispute" in m.text for m in bob.messages) == 1

    # a confirmation pressed again later shows the settlement it made
    await admin.press("✅ Yes, release to the seller", message=confirm)
    assert admin.chat.messages[confirm.message_id].text.startswith("✅ Released to the seller.")
    assert await balance(app, bob) == (98_50, 0)
    assert await ledger_legs(app, "escrow_id = :i AND kind = 'release'", i=deal.id) == 2


# -- deposits by hand ----------------------------------------------------------------------


async def test_the_admin_credits_a_deposit_once(app, admin, people):
    carol = people("Carol", "carol_c")
    await carol.start()
    await admin.send("/admin")
    await admin.press("💰 Credit a deposit")
    assert "Send the user's Telegram id" in admin.last.text
    await admin.send("@carol_c")
    assert "Send the Telegram id as a number" in admin.last.text
    await admin.send("123")
    assert "No user with that Telegram id has used the bot." in admin.last.text
    await admin.send(str(carol.id))
    assert admin.last.text == f"💰 Credit @carol_c (id {carol.id}): which currency?"
    await admin.press("USDT")
    assert "How much USDT" in admin.last.text
    await admin.send("1.005")
    assert "at most 2 decimal places" in admin.last.text
    await admin.send("250")
    assert admin.last.text.startswith(f"❓ Credit 250.00 USDT to @carol_c (id {carol.id})?")
    assert await balance(app, carol) == (0, 0)

    confirm = admin.last
    first, second = await asyncio.gather(
        admin.press("✅ Credit 250.00 USDT", message=confirm),
        admin.press("✅ Credit 250.00 USDT", message=confirm),
    )
    assert await balance(app, carol) == (250_00, 0)
    told = " ".join(first.texts + second.texts)
    assert f"✅ Credited 250.00 USDT to @carol_c (id {carol.id})." in told
    assert "⚠️ This deposit was already credited; nothing changed." in told
    assert await ledger_legs(app, "kind = 'deposit' AND user_id IS NOT NULL") == 1
    assert carol.last.text.startswith("💰 An admin credited 250.00 USDT.")
    assert "USDT: 250.00 USDT available · 0.00 USDT held" in carol.last.text


# -- stats ---------------------------------------------------------------------------------


async def test_stats(app, admin, pair):
    alice, bob = pair
    deal = await disputed_deal(app, alice, bob)
    await app.services.deals.resolve(await actor(app, admin), deal.code, "release")
    await app.services.wallets.request_withdrawal(await actor(app, alice), "USDT", 50_00, "acct")
    await admin.send("/admin")
    await admin.press("📊 Stats")
    shown = admin.last.text
    assert "Users: 3" in shown
    assert "Deals: 1\n    released: 1" in shown
    assert "USDT: 1 deal · 100.00 USDT · fees 1.50 USDT" in shown
    assert "Pending withdrawals: 1" in shown
    assert admin.buttons() == ["⟳ Refresh", "« Admin"]


# -- everyone else ----------------------------------------------------------------------


def forge(user: SimulatedUser, telegram: FakeTelegram, data: str) -> Update:
    """A press of a button the bot never showed this user."""
    query = CallbackQuery(
        id=telegram.open_callback_query(user.id),
        from_user=user.user,
        chat_instance="forged",
        message=user.last.message,
        data=data,
    ).as_(user.bot)
    return Update(update_id=telegram.next_update_id(), callback_query=query).as_(user.bot)


async def test_non_admins_are_kept_out(app, admin, pair, telegram):
    alice, bob = pair
    deal = await disputed_deal(app, alice, bob)
    withdrawal = (
        await app.services.wallets.request_withdrawal(await actor(app, alice), "USDT", 50_00, "x")
    ).value
    mallory = alice  # a party to the dispute, not an admin
    await mallory.send("/start")
    assert "🛡 Admin" not in mallory.buttons()
    await admin.send("/start")
    assert "🛡 Admin" in admin.buttons()

    await mallory.send("/admin")
    assert mallory.last.text == NOT_ADMIN
    await mallory.send(f"/block {bob.id} I dislike him")
    assert mallory.last.text == NOT_ADMIN

    for data in [
        Nav(to="admin"),
        AdminPanel(screen="stats"),
        AdminPanel(screen="disputes"),
        AdminPanel(screen="withdrawals"),
        AdminPanel(screen="credit"),
        AdminCard(code=deal.code),
        AdminDeal(outcome="refund", code=deal.code, v=deal.version, ok=True),
        AdminWithdrawal(action="approve", id=withdrawal.id, ok=True),
        AdminWithdrawal(action="reject", id=withdrawal.id),
        AdminCredit(telegram_id=mallory.id, currency="USDT", amount=1_000_00),
        AdminPanel(screen="users"),
        AdminDeal(outcome="split", code=deal.code, v=deal.version),
        AdminSplit(code=deal.code, v=deal.version, part=1_00),
        AdminEvidence(code=deal.code, id=0),
        AdminUser(action="block", telegram_id=bob.id),
        AdminUser(action="unblock", telegram_id=mallory.id),
    ]:
        result = await mallory.feed(forge(mallory, telegram, data.pack()))
        assert result.methods == ["answerCallbackQuery"], data
        assert (result.answer.text, result.answer.show_alert) == (NOT_ADMIN, True)

    assert await status_of(app, deal) == DealStatus.DISPUTED
    assert await balance(app, alice) == (350_00, 150_00)
    async with app.database.engine.connect() as conn:
        assert await conn.scalar(text("SELECT status FROM withdrawals")) == "pending"
        assert await conn.scalar(text("SELECT count(*) FROM users WHERE status <> 'active'")) == 0
    # no form was started either: text is just text
    await mallory.send("1000")
    assert "didn't understand" in mallory.last.text


class NotAdminYet:
    """The caller's stored account as a replica would read it before the
    account says admin (the flag off), whatever the admin list says."""

    def __init__(self, cache) -> None:
        self.cache = cache

    async def get(self, telegram_id: int):
        snapshot = await self.cache.get(telegram_id)
        return msgspec.structs.replace(snapshot, is_admin=False) if snapshot else None


async def test_a_configured_admin_whose_account_is_not_admin_is_shown_nothing(app, admin, pair):
    alice, bob = pair
    await disputed_deal(app, alice, bob)
    await admin.send("/admin")
    panel = admin.last
    shown = panel.text
    other = await build_app(
        app.config,
        session=admin.telegram,
        engine=app.database.engine,
        snapshot_source=NotAdminYet(app.cache.cache),
    )
    try:
        elsewhere = on(other, admin)
        for button in ("⚠️ Open disputes", "🏦 Pending withdrawals", "💰 Credit a deposit"):
            reply = await elsewhere.press(button, message=panel)
            assert reply.methods == ["answerCallbackQuery", "sendMessage"], button
            assert not reply.answer.show_alert
            assert reply.texts == [NOT_ADMIN], button
        await elsewhere.send("/admin")
        assert elsewhere.last.text == NOT_ADMIN
        assert elsewhere.buttons() == ["« Menu"]
    finally:
        await other.aclose()
    assert admin.chat.messages[panel.message_id].text == shown  # no screen was shown
    await admin.send(str(admin.id))  # and no form was started
    assert "didn't understand" in admin.last.text


async def test_an_admin_taken_off_the_list_during_a_form_is_let_out_of_it(app, admin):
    await admin.send("/admin")
    await admin.press("💰 Credit a deposit")
    # a replica whose admin list no longer has them
    escrow = msgspec.structs.replace(app.config.escrow, admins=())
    config = msgspec.structs.replace(app.config, escrow=escrow)
    other = await build_app(config, session=admin.telegram, engine=app.database.engine)
    try:
        former = on(other, admin)
        await former.send(str(admin.id))
        assert former.last.text == NOT_ADMIN
        await former.send(str(admin.id))
        assert "didn't understand" in former.last.text  # the form was left
        await former.send("/admin")
        assert former.last.text == NOT_ADMIN
        assert former.buttons() == ["« Menu"]
    finally:
        await other.aclose()
