"""A funded deal's clocks on real Postgres: set when funded and when delivered,
the buyer's refund only past the delivery deadline (the database's clock
decides), the automatic release as the buyer's release would be, and who is
reminded of what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from bot.services.deals.timers import reminder_due
from bot.services.errors import NotAllowed, WrongState
from bot.services.notifications import OutboxService
from bot.services.rules import Action, allowed_actions
from bot.services.settings import EscrowSettings
from bot.services.views import DealView
from db.events import DealChanged, UserChanged
from db.models import DealStatus
from tests.conftest import ADMIN_TELEGRAM_ID, Services
from tests.integration.helpers import balance, fees, history, ledger, world
from tests.integration.test_lifecycle import FEE, PRICE, Cast, deal_in
from tests.refusals import refuses

START = 10 * PRICE


@pytest.fixture(name="cast")
async def the_cast(services: Services) -> Cast:
    return Cast(
        buyer=await services.user("alice_buyer", funds={"USDT": START}),
        seller=await services.user("bob_seller"),
        stranger=await services.user("mallory_x"),
        admin=await services.admin(),
    )


async def move(services: Services, deal: DealView, column: str, left: timedelta) -> None:
    """Set the deal's `column` clock to `left` from now (negative: past)."""
    async with services.ctx.db.engine.begin() as conn:
        await conn.execute(
            text(f"UPDATE escrows SET {column} = now() + :left WHERE id = :id"),
            {"left": left, "id": deal.id},
        )


async def clocks(services: Services, deal: DealView) -> tuple[datetime | None, ...]:
    async with services.ctx.db.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT funded_at, deliver_due_at, delivered_at, release_due_at"
                    " FROM escrows WHERE id = :id"
                ),
                {"id": deal.id},
            )
        ).one()
    return tuple(row)


async def test_funding_and_delivery_start_the_clocks(services, cast):
    funded = await deal_in(services, cast, DealStatus.FUNDED)
    funded_at, deliver_due, delivered_at, release_due = await clocks(services, funded)
    assert deliver_due - funded_at == timedelta(hours=168)
    assert (delivered_at, release_due) == (None, None)
    assert funded.deliver_due_at == deliver_due  # the deal as the parties see it

    delivered = (await services.deals.deliver(cast.seller, funded.code)).value
    _, still_due, delivered_at, release_due = await clocks(services, delivered)
    assert still_due == deliver_due
    assert release_due - delivered_at == timedelta(hours=72)
    assert delivered.release_due_at == release_due


@pytest.mark.parametrize(
    "escrow_settings",
    [
        EscrowSettings(
            admins=(ADMIN_TELEGRAM_ID,), deliver_within_hours=0, auto_release_after_hours=0
        )
    ],
)
async def test_a_clock_set_to_zero_never_runs(services, cast):
    funded = await deal_in(services, cast, DealStatus.FUNDED)
    assert (await clocks(services, funded))[1] is None
    with refuses(WrongState, "you can't cancel it for a refund now", services.ctx.currencies):
        await services.deals.refund(cast.buyer, funded.code)
    delivered = (await services.deals.deliver(cast.seller, funded.code)).value
    assert (await clocks(services, delivered))[3] is None
    assert (await services.deals.release_due()).value == []
    assert await services.deals.clock_reminders() == []


async def test_the_buyers_refund_waits_for_the_delivery_deadline(services, cast, sql, events):
    deal = await deal_in(services, cast, DealStatus.FUNDED)
    assert Action.REFUND not in allowed_actions(deal, cast.buyer.id)
    before = await world(services.ctx.db)
    sql.start()
    with refuses(WrongState, f"Deal {deal.code} may be delivered until", services.ctx.currencies):
        await services.deals.refund(cast.buyer, deal.code)
    assert len(sql.stop()) == 2  # the lock, the guarded transition that found it early
    assert await world(services.ctx.db) == before

    await move(services, deal, "deliver_due_at", timedelta(minutes=-1))
    deal = await services.deals.get(cast.buyer, deal.code)
    assert allowed_actions(deal, cast.buyer.id) == (Action.RELEASE, Action.DISPUTE, Action.REFUND)
    assert Action.REFUND not in allowed_actions(deal, cast.seller.id)
    with refuses(NotAllowed, "Only the buyer can cancel it for a refund", services.ctx.currencies):
        await services.deals.refund(cast.seller, deal.code)
    events.published.clear()
    sql.start()
    refunded = (await services.deals.refund(cast.buyer, deal.code)).value
    assert len(sql.stop()) == 3  # lock, transition + history + notification, movement
    assert refunded.status == DealStatus.REFUNDED
    assert await balance(services.ctx.db, cast.buyer.id) == (START, 0)
    assert (await history(services.ctx.db, deal))[-1][:3] == (
        cast.buyer.id,
        "funded",
        "refunded",
    )
    assert await ledger(services.ctx.db, f"deal:{deal.id}:refunded") == [
        ("refund", "held", cast.buyer.id, -PRICE),
        ("refund", "available", cast.buyer.id, PRICE),
    ]
    assert {e.telegram_id for e in events.published if isinstance(e, UserChanged)} == {
        cast.buyer.telegram_id
    }


async def test_the_automatic_release_is_the_buyers_release_made_by_nobody(
    services, cast, sql, events
):
    deal = await deal_in(services, cast, DealStatus.DELIVERED)
    assert (await services.deals.release_due()).value == []  # not due yet
    await move(services, deal, "release_due_at", timedelta(minutes=-1))
    fees_before = await fees(services.ctx.db)
    events.published.clear()
    sql.start()
    outcome = await services.deals.release_due()
    # lock the due deal, transition + history + notifications, movement; then
    # one more look finds nothing left
    assert len(sql.stop()) == 4
    (released,) = outcome.value
    assert released.status == DealStatus.RELEASED
    assert await balance(services.ctx.db, cast.buyer.id) == (START - PRICE, 0)
    assert await balance(services.ctx.db, cast.seller.id) == (PRICE - FEE, 0)
    assert await fees(services.ctx.db) == fees_before + FEE
    assert (await history(services.ctx.db, deal))[-1][:3] == (None, "delivered", "released")
    # both parties are told (nobody made the move), and both snapshots change
    assert sorted(n.chat_id for n in outcome.notices) == sorted(
        [cast.buyer.telegram_id, cast.seller.telegram_id]
    )
    assert {n.kind for n in outcome.notices} == {"release"}
    assert all(n.actor_id is None for n in outcome.notices)
    assert {e.telegram_id for e in events.published if isinstance(e, UserChanged)} == {
        cast.buyer.telegram_id,
        cast.seller.telegram_id,
    }
    assert [e.mover for e in events.published if isinstance(e, DealChanged)] == [None]
    # the buyer's release afterwards is refused, not taken for their own move
    with refuses(WrongState, "already released to the seller", services.ctx.currencies):
        await services.deals.release(cast.buyer, deal.code)


async def test_only_delivered_deals_past_their_clock_are_released(services, cast):
    due = await deal_in(services, cast, DealStatus.DELIVERED)
    not_yet = await deal_in(services, cast, DealStatus.DELIVERED)
    disputed = await deal_in(services, cast, DealStatus.DELIVERED)
    await services.deals.dispute(cast.buyer, disputed.code, "Broken")
    funded = await deal_in(services, cast, DealStatus.FUNDED)
    for deal in (due, disputed, funded):
        await move(services, deal, "release_due_at", timedelta(minutes=-1))
    await move(services, not_yet, "release_due_at", timedelta(minutes=1))
    released = (await services.deals.release_due()).value
    assert [deal.code for deal in released] == [due.code]


@pytest.mark.parametrize(
    ("left", "marks", "clock", "due"),
    [
        (timedelta(hours=30), (24, 1), 72, None),
        (timedelta(hours=20), (24, 1), 72, 24),
        (timedelta(minutes=30), (24, 1), 72, 1),  # only the nearest, if the first was missed
        (timedelta(hours=20), (24, 1), 12, None),  # a mark longer than the clock never fires
        (timedelta(hours=0.5), (24, 1), 12, 1),
        (timedelta(hours=5), (), 72, None),
    ],
)
def test_the_reminder_due_is_the_nearest_mark_reached(left, marks, clock, due):
    assert reminder_due(left, marks, clock) == due


async def test_who_is_reminded_of_which_clock(services, cast):
    release_soon = await deal_in(services, cast, DealStatus.DELIVERED)
    deliver_soon = await deal_in(services, cast, DealStatus.FUNDED)
    overdue = await deal_in(services, cast, DealStatus.FUNDED)
    long_overdue = await deal_in(services, cast, DealStatus.FUNDED)
    far = await deal_in(services, cast, DealStatus.FUNDED)
    await move(services, release_soon, "release_due_at", timedelta(hours=10))
    await move(services, deliver_soon, "deliver_due_at", timedelta(hours=10))
    await move(services, overdue, "deliver_due_at", timedelta(hours=-1))
    await move(services, long_overdue, "deliver_due_at", timedelta(days=-2))
    await move(services, far, "deliver_due_at", timedelta(days=2))

    due = await services.deals.clock_reminders(now=datetime.now(UTC))
    assert sorted((deal.code, user, note) for _, user, deal, note in due) == sorted(
        [
            (release_soon.code, cast.buyer.id, "delivered:24h"),
            (deliver_soon.code, cast.seller.id, "funded:24h"),
            (overdue.code, cast.buyer.id, "funded:overdue"),
        ]
    )
    # written once per deal, party and note, however often the job asks
    outbox = OutboxService(services.ctx)
    assert len(await outbox.remind_of(due)) == 3
    assert await outbox.remind_of(due) == []
