"""A funded deal's clocks through the Telegram double: the automatic release of
a delivered deal nobody acts on, the reminders before it, the delivery
deadline and the buyer's refund past it, and the jobs on several replicas.

The clock is moved by setting a deal's deadline in the database; the jobs
run as a replica's jobs loop runs them, one tick at a time."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from bot.runtime.app import App
from bot.runtime.coordination import JobLock
from bot.runtime.jobs import BackgroundJobs
from bot.services.views import DealView
from bot.sim import SimulatedUser
from bot.telegram.texts import OUTDATED_CARD, when
from cache.keys import CacheKeys
from db.models import DealStatus
from tests.e2e.conftest import balance
from tests.e2e.test_deals import PRICE, open_deal, show, status_of

MINUTE = timedelta(minutes=1)
TICK = 0.05  # a short jobs interval: the job lock is free again after it


def jobs_of(app: App) -> BackgroundJobs:
    """A replica's jobs loop, ticked by hand."""
    keys = CacheKeys(app.config.cache.key_prefix)
    return BackgroundJobs(app.services, app.outbox, JobLock(app.cache.cache.redis, keys), TICK)


async def next_tick() -> None:
    await asyncio.sleep(TICK * 1.5)


async def sql(app: App, statement: str, **params: Any) -> Any:
    async with app.database.engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        return result.first() if result.returns_rows else None


async def clock_runs_out_in(app: App, deal: DealView, column: str, left: timedelta) -> None:
    """Move the deal's `column` clock to `left` from now (negative: past)."""
    await sql(
        app, f"UPDATE escrows SET {column} = now() + :left WHERE id = :d", left=left, d=deal.id
    )


async def funded(app: App, alice: SimulatedUser, bob: SimulatedUser) -> DealView:
    deal = await open_deal(app, alice)
    await show(bob, deal)
    await bob.press("✅ Accept")
    await alice.press(f"💰 Fund {PRICE // 100}.00 USDT")
    return deal


async def delivered(app: App, alice: SimulatedUser, bob: SimulatedUser) -> DealView:
    deal = await funded(app, alice, bob)
    await bob.press("📦 Mark as delivered")
    return deal


async def ledger_legs(app: App, key: str) -> int:
    row = await sql(app, "SELECT count(*) FROM ledger_entries WHERE idempotency_key = :k", k=key)
    return row[0]


# -- the automatic release -----------------------------------------------------------


async def test_a_delivered_deal_nobody_acts_on_is_released_automatically(app, pair):
    alice, bob = pair
    deal = await delivered(app, alice, bob)
    clocks = await sql(
        app, "SELECT delivered_at, release_due_at FROM escrows WHERE id = :d", d=deal.id
    )
    assert clocks.release_due_at - clocks.delivered_at == timedelta(hours=72)  # config.toml
    due = when(clocks.release_due_at)
    # both cards say when, and what stops it
    told = alice.last
    assert told.text.startswith("📦 @bob_sells marked the deal as delivered.")
    assert f"Released to the seller automatically on {due} unless you dispute" in told.text
    assert f"Released to you automatically on {due} unless the buyer disputes" in bob.last.text

    jobs = jobs_of(app)
    assert await jobs.release_due() == 0  # not yet
    await clock_runs_out_in(app, deal, "release_due_at", -MINUTE)
    await next_tick()
    assert await jobs.release_due() == 1
    due = when((await sql(app, "SELECT release_due_at FROM escrows WHERE id = :d", d=deal.id))[0])

    assert await status_of(app, deal) == DealStatus.RELEASED
    assert await balance(app, alice) == (400_00, 0)
    assert await balance(app, bob) == (98_50, 0)
    assert await ledger_legs(app, f"deal:{deal.id}:released") == 3  # held, payout, fee
    last_move = await sql(
        app,
        "SELECT actor_id, from_status, to_status FROM deal_events"
        " WHERE escrow_id = :d ORDER BY id DESC LIMIT 1",
        d=deal.id,
    )
    assert tuple(last_move) == (None, "delivered", "released")  # nobody's: the clock's
    assert alice.last.text.startswith(
        f"⏱ You neither released the payment nor opened a dispute by {due}: it was released "
        "to the seller automatically."
    )
    assert bob.last.text.startswith(
        f"⏱ The buyer neither released the payment nor opened a dispute by {due}: it was "
        "released to you automatically and is in your wallet."
    )
    assert "✅ released — the payment is in your wallet" in bob.last.text  # the card's status
    # completed: the seller may rate the buyer, and nothing else moves it
    assert bob.buttons() == ["1⭐", "2⭐", "3⭐", "4⭐", "5⭐", "⟳ Refresh", "📋 My deals"]
    await bob.send("/start")  # the snapshot was invalidated after the commit
    assert "Balance: 98.50 USDT" in bob.last.text

    # the buyer's release, pressed on the card from before, changes nothing: an
    # alert that the card was out of date, or (a replica that had not heard of
    # the release yet) the question, whose answer is refused
    pressed = await alice.press("✅ Release payment", message=told)
    if "✅ Yes, release the payment" in alice.buttons():
        await alice.press("✅ Yes, release the payment")
        assert "already released to the seller" in alice.last.text
    else:
        assert pressed.answer is not None and pressed.answer.text == OUTDATED_CARD
    assert await balance(app, alice) == (400_00, 0)
    assert await balance(app, bob) == (98_50, 0)
    assert await ledger_legs(app, f"deal:{deal.id}:released") == 3
    await next_tick()
    assert await jobs.release_due() == 0


async def test_a_dispute_or_a_release_in_time_stops_the_automatic_release(app, pair, people):
    alice, bob = pair
    admin = people.admin()
    await admin.start()
    disputed = await delivered(app, alice, bob)
    await alice.press("⚠️ Open a dispute")
    await alice.send("It does not work")
    released = await delivered(app, alice, bob)
    await alice.press("✅ Release payment")
    await alice.press("✅ Yes, release the payment")
    for deal in (disputed, released):
        await clock_runs_out_in(app, deal, "release_due_at", -MINUTE)

    assert await jobs_of(app).release_due() == 0
    assert await status_of(app, disputed) == DealStatus.DISPUTED
    assert await balance(app, alice) == (300_00, 100_00)  # one paid, one held in dispute
    assert await balance(app, bob) == (98_50, 0)


async def test_the_buyer_is_reminded_before_the_automatic_release(app, pair):
    alice, bob = pair
    deal = await delivered(app, alice, bob)
    jobs = jobs_of(app)
    bob_before = len(bob.messages)
    assert await jobs.remind_clocks() == 0  # 72 hours to go: not yet

    await clock_runs_out_in(app, deal, "release_due_at", timedelta(hours=20))
    await next_tick()
    assert await jobs.remind_clocks() == 1
    due = when((await sql(app, "SELECT release_due_at FROM escrows WHERE id = :d", d=deal.id))[0])
    assert alice.last.text.startswith(
        f"⏰ Reminder: the payment is released to the seller automatically in 20 h (on {due}) "
        "unless you open a dispute."
    )
    assert alice.buttons()[:2] == ["✅ Release payment", "⚠️ Open a dispute"]
    await next_tick()
    assert await jobs.remind_clocks() == 0  # once

    await clock_runs_out_in(app, deal, "release_due_at", timedelta(minutes=30))
    await next_tick()
    assert await jobs.remind_clocks() == 1  # the last one
    assert alice.last.text.startswith(
        "⏰ Reminder: the payment is released to the seller automatically in 30 min"
    )
    await next_tick()
    assert await jobs.remind_clocks() == 0
    assert len(bob.messages) == bob_before  # the seller has nothing to do


# -- the delivery deadline -----------------------------------------------------------


async def test_past_the_delivery_deadline_the_buyer_may_cancel_and_is_refunded(app, pair):
    alice, bob = pair
    deal = await funded(app, alice, bob)
    clocks = await sql(
        app, "SELECT funded_at, deliver_due_at FROM escrows WHERE id = :d", d=deal.id
    )
    assert clocks.deliver_due_at - clocks.funded_at == timedelta(hours=168)  # config.toml
    due = when(clocks.deliver_due_at)
    assert f"Deliver by {due}: after that the buyer may cancel and get a refund" in bob.last.text
    assert f"To be delivered by {due}; if it isn't, you may cancel" in alice.last.text
    assert "↩️ Cancel and get a refund" not in alice.buttons()
    jobs = jobs_of(app)

    # the seller is reminded, the buyer has nothing to do yet
    await clock_runs_out_in(app, deal, "deliver_due_at", timedelta(hours=5))
    alice_before = len(alice.messages)
    assert await jobs.remind_clocks() == 1
    assert bob.last.text.startswith("⏰ Reminder: mark the deal as delivered within 5 h (by ")
    assert "📦 Mark as delivered" in bob.buttons()
    assert len(alice.messages) == alice_before

    # the deadline passes: the buyer is told, with the button
    await clock_runs_out_in(app, deal, "deliver_due_at", -MINUTE)
    await next_tick()
    assert await jobs.remind_clocks() == 1
    due = when((await sql(app, "SELECT deliver_due_at FROM escrows WHERE id = :d", d=deal.id))[0])
    assert alice.last.text.startswith(
        f"⌛ @bob_sells did not mark the deal as delivered by {due}. You may cancel it now"
    )
    assert f"⌛ Not delivered by {due}: you may cancel and get a refund" in alice.last.text
    await alice.press("↩️ Cancel and get a refund")
    assert "Cancel the deal and get 100.00 USDT back?" in alice.last.text
    question = alice.last
    await alice.press("↩️ Yes, cancel and refund me")
    assert alice.last.text.startswith("↩️ Cancelled: your money is back in your wallet.")
    assert await status_of(app, deal) == DealStatus.REFUNDED
    assert await balance(app, alice) == (500_00, 0)
    assert bob.last.text.startswith(
        f"↩️ @alice_buys cancelled the deal: it was not marked as delivered by {due}, so the "
        "money went back to the buyer."
    )

    # pressed again (a double tap): its success shown, nothing moved twice
    bob_before = len(bob.messages)
    await alice.press("↩️ Yes, cancel and refund me", message=question)
    assert alice.last.text.startswith("↩️ Cancelled: your money is back in your wallet.")
    assert await balance(app, alice) == (500_00, 0)
    assert await ledger_legs(app, f"deal:{deal.id}:refunded") == 2
    assert len(bob.messages) == bob_before
    await next_tick()
    assert await jobs.remind_clocks() == 0  # nothing left to tell


async def test_a_delivery_in_time_leaves_the_buyer_no_refund_button(app, pair):
    alice, bob = pair
    deal = await funded(app, alice, bob)
    await bob.press("📦 Mark as delivered")
    await clock_runs_out_in(app, deal, "deliver_due_at", -MINUTE)  # passed after delivery
    await show(alice, deal)
    assert "↩️ Cancel and get a refund" not in alice.buttons()
    assert await jobs_of(app).remind_clocks() == 0  # and no word of a missed deadline


# -- several replicas ----------------------------------------------------------------


async def test_the_automatic_release_runs_once_across_replicas(app, pair):
    alice, bob = pair
    deals = [await delivered(app, alice, bob) for _ in range(4)]
    alice_before, bob_before = len(alice.messages), len(bob.messages)

    # three replicas' jobs loops on one tick: one of them runs the job
    for deal in deals[:2]:
        await clock_runs_out_in(app, deal, "release_due_at", -MINUTE)
    replicas = [jobs_of(app) for _ in range(3)]
    released = await asyncio.gather(*(jobs.release_due() for jobs in replicas))
    assert sorted(released) == [0, 0, 2]
    # the job itself on three replicas at once (the lock lost: expired, Redis
    # failed over): each deal is still released once
    for deal in deals[2:]:
        await clock_runs_out_in(app, deal, "release_due_at", -MINUTE)
    outcomes = await asyncio.gather(*(app.services.deals.release_due() for _ in range(3)))
    assert sorted(deal.code for o in outcomes for deal in o.value) == sorted(
        deal.code for deal in deals[2:]
    )
    for outcome in outcomes:
        await app.outbox.send(outcome.notices, *outcome.value)

    assert await balance(app, alice) == (100_00, 0)
    assert await balance(app, bob) == (4 * 98_50, 0)
    for deal in deals:
        assert await status_of(app, deal) == DealStatus.RELEASED
        assert await ledger_legs(app, f"deal:{deal.id}:released") == 3
    auto = "⏱ You neither released the payment nor opened a dispute"
    assert sum(m.text.startswith(auto) for m in alice.messages[alice_before:]) == 4
    assert len(bob.messages) - bob_before == 4  # each once
