"""Races against the deals' clocks, over separate connections as in
test_races.py: the buyer's release or dispute against the automatic release,
the job on several replicas at once, a refund pressed many times, and a
refund against the seller's delivery at the deadline. One outcome each, and
the money exactly right."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text

from bot.services.views import DealView
from db import Database
from db.models import DealStatus
from tests.integration.test_races import (
    AMOUNT,
    FEE,
    PAYOUT,
    N,
    fees,
    funded_deal,
    legs,
    race,
    status,
    transitions,
    wallet,
)


async def clock_ran_out(database: Database, deal: DealView, column: str) -> None:
    async with database.engine.begin() as conn:
        await conn.execute(
            text(f"UPDATE escrows SET {column} = now() - CAST(:ago AS interval) WHERE id = :id"),
            {"ago": timedelta(seconds=1), "id": deal.id},
        )


async def delivered_deal(services: Any, buyer: Any, seller: Any) -> DealView:
    deal = await funded_deal(services, buyer, seller)
    return (await services.deals.deliver(seller, deal.code)).value


def released_by_the_job(outcomes: list[Any]) -> int:
    """How many deals the job's runs among `outcomes` released."""
    return sum(len(o.value) for o in outcomes if isinstance(o.value, list))


async def test_the_buyers_release_racing_the_automatic_release_pays_once(services, database):
    buyer = await services.user("buyer", funds={"USDT": AMOUNT})
    seller = await services.user("seller")
    deal = await delivered_deal(services, buyer, seller)
    await clock_ran_out(database, deal, "release_due_at")

    calls = []
    for _ in range(N // 2):
        calls += [services.deals.release(buyer, deal.code), services.deals.release_due()]
    results, errors = await race(calls)

    by_buyer = [r for r in results if not isinstance(r.value, list)]
    by_job = released_by_the_job(results)
    assert len(by_buyer) + by_job == 1  # one release, whoever made it
    assert len(errors) == N // 2 - len(by_buyer)  # the buyer's other presses: refused
    assert await status(database, deal) == DealStatus.RELEASED
    assert await wallet(database, buyer) == (0, 0)
    assert await wallet(database, seller) == (PAYOUT, 0)
    assert await fees(database) == FEE
    assert await legs(database, f"deal:{deal.id}:released") == 3
    assert await transitions(database, deal, DealStatus.RELEASED) == 1


async def test_a_dispute_racing_the_automatic_release_has_one_outcome(services, database):
    buyer = await services.user("buyer", funds={"USDT": 6 * AMOUNT})
    seller = await services.user("seller")
    for _ in range(6):  # either may win; each round ends one way only
        deal = await delivered_deal(services, buyer, seller)
        await clock_ran_out(database, deal, "release_due_at")
        results, errors = await race(
            [
                services.deals.dispute(buyer, deal.code, "Not as described"),
                services.deals.release_due(),
                services.deals.dispute(seller, deal.code, "The buyer went silent"),
                services.deals.release_due(),
            ]
        )
        disputes = [r for r in results if not isinstance(r.value, list)]
        released = released_by_the_job(results)
        assert (len(disputes), released) in ((1, 0), (0, 1))
        assert len(errors) == 2 - len(disputes)
        ended = await status(database, deal)
        if ended == DealStatus.DISPUTED:
            assert await legs(database, f"deal:{deal.id}:released") == 0
        else:
            assert ended == DealStatus.RELEASED
            assert await legs(database, f"deal:{deal.id}:released") == 3
        assert await transitions(database, deal, ended) == 1
    # the money: every released deal paid once, every disputed one still held
    async with database.engine.connect() as conn:
        ended_as = dict(
            (await conn.execute(text("SELECT status, count(*) FROM escrows GROUP BY 1"))).all()
        )
    paid, held = ended_as.get("released", 0), ended_as.get("disputed", 0)
    assert paid + held == 6
    assert await wallet(database, buyer) == (0, held * AMOUNT)
    assert await wallet(database, seller) == (paid * PAYOUT, 0)


async def test_the_job_on_many_replicas_at_once_releases_each_deal_once(services, database):
    buyer = await services.user("buyer", funds={"USDT": 5 * AMOUNT})
    seller = await services.user("seller")
    deals = [await delivered_deal(services, buyer, seller) for _ in range(5)]
    for deal in deals:
        await clock_ran_out(database, deal, "release_due_at")

    results, errors = await race(services.deals.release_due() for _ in range(N))

    assert errors == []
    released = [deal.code for outcome in results for deal in outcome.value]
    assert sorted(released) == sorted(deal.code for deal in deals)
    assert await wallet(database, buyer) == (0, 0)
    assert await wallet(database, seller) == (5 * PAYOUT, 0)
    assert await fees(database) == 5 * FEE
    for deal in deals:
        assert await legs(database, f"deal:{deal.id}:released") == 3
        assert await transitions(database, deal, DealStatus.RELEASED) == 1


async def test_a_refund_pressed_many_times_at_once_refunds_once(services, database):
    buyer = await services.user("buyer", funds={"USDT": AMOUNT})
    seller = await services.user("seller")
    deal = await funded_deal(services, buyer, seller)
    await clock_ran_out(database, deal, "deliver_due_at")

    results, errors = await race(services.deals.refund(buyer, deal.code) for _ in range(N))

    assert len(results) == 1 and results[0].value.status == DealStatus.REFUNDED
    assert len(errors) == N - 1
    assert await wallet(database, buyer) == (AMOUNT, 0)
    assert await legs(database, f"deal:{deal.id}:refunded") == 2
    assert await transitions(database, deal, DealStatus.REFUNDED) == 1


async def test_a_refund_racing_the_delivery_at_the_deadline_has_one_outcome(services, database):
    buyer = await services.user("buyer", funds={"USDT": 6 * AMOUNT})
    seller = await services.user("seller")
    ended = []
    for _ in range(6):
        deal = await funded_deal(services, buyer, seller)
        await clock_ran_out(database, deal, "deliver_due_at")
        results, errors = await race(
            [
                services.deals.refund(buyer, deal.code),
                services.deals.deliver(seller, deal.code),
            ]
        )
        assert len(results) == 1 and len(errors) == 1
        ended.append(await status(database, deal))
        assert ended[-1] in (DealStatus.REFUNDED, DealStatus.DELIVERED)
        refunded = ended[-1] == DealStatus.REFUNDED
        assert await legs(database, f"deal:{deal.id}:refunded") == (2 if refunded else 0)
    refunds = ended.count(DealStatus.REFUNDED)
    assert await wallet(database, buyer) == (refunds * AMOUNT, (6 - refunds) * AMOUNT)
