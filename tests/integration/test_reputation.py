"""Reputation on real Postgres: the counters a completion, a dispute and a
rating move (in the statement that makes the change, no statement added),
ratings once per party and deal whatever the presses, refusals that change
nothing, and counters that always equal what the deals and ratings say."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from sqlalchemy import text

from bot.services.errors import InvalidInput, NotFound, UserBlocked, WrongState
from bot.services.views import DealView, UserView
from cache.loader import PostgresSnapshotLoader
from cache.snapshots import ReputationSnapshot
from db.events import UserChanged
from db.models import DealStatus
from tests.conftest import Services
from tests.integration.helpers import world
from tests.integration.test_lifecycle import PRICE, Cast, cast, deal_in
from tests.refusals import refuses

__all__ = ["cast"]

# reputations rows: (deals, volume, disputes opened, disputes lost, ratings, stars)
NOTHING = (0, 0, 0, 0, 0, 0)


async def counters(services: Services, user: UserView, currency: str = "USDT") -> tuple:
    async with services.ctx.db.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT deals, volume, disputes_opened, disputes_lost, ratings, stars"
                    " FROM reputations WHERE user_id = :u AND currency = :c"
                ),
                {"u": user.id, "c": currency},
            )
        ).first()
    return tuple(row) if row is not None else NOTHING


async def record(services: Services, user: UserView) -> ReputationSnapshot:
    """The record as the cache's loader reads it (one statement)."""
    snapshot = await PostgresSnapshotLoader(services.ctx.db.engine)(user.telegram_id)
    assert snapshot is not None
    return snapshot.reputation


async def ratings_table(services: Services) -> list[tuple[Any, ...]]:
    async with services.ctx.db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT escrow_id, rater_id, rated_id, stars, review FROM ratings ORDER BY id")
        )
        return [tuple(row) for row in rows]


def versions_published(events: Any) -> dict[int, int]:
    return {e.telegram_id: e.version for e in events if isinstance(e, UserChanged)}


async def versions_now(services: Services, *users: UserView) -> dict[int, int]:
    async with services.ctx.db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT telegram_id, version FROM users WHERE id = ANY(:ids)"),
            {"ids": [u.id for u in users]},
        )
        return dict(rows.all())


# -- what each move counts ----------------------------------------------------------


async def test_a_release_completes_the_deal_for_both_with_its_volume(services, cast, sql):
    deal = await deal_in(services, cast, DealStatus.DELIVERED)
    sql.start()
    outcome = await services.deals.release(cast.buyer, deal.code)
    assert len(sql.stop()) == 3  # the lock, the transition (which counts), the money
    for party in (cast.buyer, cast.seller):
        assert await counters(services, party) == (1, PRICE, 0, 0, 0, 0)
    # both snapshots moved on, and the versions published are the committed ones
    published = versions_published(outcome.events)
    assert published == await versions_now(services, cast.buyer, cast.seller)
    mine = await record(services, cast.seller)
    assert (mine.deals, mine.volumes, mine.ratings) == (1, (("USDT", PRICE),), 0)


async def test_a_dispute_counts_for_its_opener_and_the_settlement_for_the_loser(
    services, cast, sql
):
    deal = await deal_in(services, cast, DealStatus.FUNDED)
    sql.start()
    opened = await services.deals.dispute(cast.seller, deal.code, "Paid with a forged note")
    assert len(sql.stop()) == 2  # no statement added for the count
    assert await counters(services, cast.seller) == (0, 0, 1, 0, 0, 0)
    assert await counters(services, cast.buyer) == NOTHING
    # the opener's snapshot is bumped by the transition itself (no money moved)
    assert versions_published(opened.events) == await versions_now(services, cast.seller)

    sql.start()
    settled = await services.deals.resolve(cast.admin, deal.code, "refund")
    assert len(sql.stop()) == 3
    # refunded by a settlement: completed for both, nothing released, the seller lost
    assert await counters(services, cast.seller) == (1, 0, 1, 1, 0, 0)
    assert await counters(services, cast.buyer) == (1, 0, 0, 0, 0, 0)
    # the seller's money did not move, yet their snapshot did
    assert versions_published(settled.events) == await versions_now(
        services, cast.buyer, cast.seller
    )
    assert (await record(services, cast.seller)).disputes_lost == 1


async def test_a_settled_release_goes_against_the_buyer(services, cast):
    deal = await deal_in(services, cast, DealStatus.DISPUTED)  # opened by the buyer
    await services.deals.resolve(cast.admin, deal.code, "release")
    assert await counters(services, cast.buyer) == (1, PRICE, 1, 1, 0, 0)
    assert await counters(services, cast.seller) == (1, PRICE, 0, 0, 0, 0)


@pytest.mark.parametrize(
    "status",
    [DealStatus.REFUNDED, DealStatus.CANCELLED, DealStatus.DECLINED, DealStatus.EXPIRED],
)
async def test_deals_that_end_otherwise_count_nothing(services, cast, status):
    await deal_in(services, cast, status)
    for party in (cast.buyer, cast.seller):
        assert await counters(services, party) == NOTHING


# -- rating ---------------------------------------------------------------------------


async def test_a_rating_moves_the_rated_users_record_once(services, cast, sql):
    deal = await deal_in(services, cast, DealStatus.RELEASED)
    sql.start()
    outcome = await services.ratings.rate(cast.buyer, deal.code, 4)
    assert len(sql.stop()) == 1  # rating, counters and version in one statement
    rating = outcome.value
    assert (rating.stars, rating.new, rating.rated_id) == (4, True, cast.seller.id)
    assert rating.rated_name == "@bob_seller"
    assert await counters(services, cast.seller) == (1, PRICE, 0, 0, 1, 4)
    assert versions_published(outcome.events) == await versions_now(services, cast.seller)
    seller = await record(services, cast.seller)
    assert (seller.ratings, seller.average) == (1, 4.0)

    # rated again, with other stars: the first rating, shown as given, nothing changed
    before = await world(services.ctx.db)
    again = await services.ratings.rate(cast.buyer, deal.code, 1)
    assert (again.value.stars, again.value.new, again.events) == (4, False, ())
    assert await world(services.ctx.db) == before
    assert await counters(services, cast.seller) == (1, PRICE, 0, 0, 1, 4)

    # the other party rates too: their own rating, of the buyer
    back = await services.ratings.rate(cast.seller, deal.code, 5)
    assert (back.value.rated_id, back.value.new) == (cast.buyer.id, True)
    assert await counters(services, cast.buyer) == (1, PRICE, 0, 0, 1, 5)


async def test_presses_at_once_rate_once(services, cast):
    deal = await deal_in(services, cast, DealStatus.RELEASED)
    outcomes = await asyncio.gather(
        *(services.ratings.rate(cast.buyer, deal.code, 1 + n % 5) for n in range(10))
    )
    assert sum(o.value.new for o in outcomes) == 1
    given = next(o.value.stars for o in outcomes if o.value.new)
    assert {o.value.stars for o in outcomes} == {given}  # every press shows the one rating
    assert len(await ratings_table(services)) == 1
    assert await counters(services, cast.seller) == (1, PRICE, 0, 0, 1, given)


async def test_a_settled_refund_can_be_rated_and_open_deals_cannot(services, cast):
    refunded = await deal_in(services, cast, DealStatus.DISPUTED)
    await services.deals.resolve(cast.admin, refunded.code, "refund")
    assert (await services.ratings.rate(cast.seller, refunded.code, 2)).value.new

    currencies = services.ctx.currencies
    for status in (DealStatus.FUNDED, DealStatus.REFUNDED, DealStatus.CANCELLED):
        deal = await deal_in(services, cast, status)
        before = await world(services.ctx.db)
        with refuses(WrongState, "can be rated once it is completed", currencies):
            await services.ratings.rate(cast.buyer, deal.code, 5)
        assert await world(services.ctx.db) == before
    assert len(await ratings_table(services)) == 1


async def test_strangers_bad_stars_and_blocked_raters_are_refused(services, cast):
    deal = await deal_in(services, cast, DealStatus.RELEASED)
    currencies = services.ctx.currencies
    with refuses(NotFound, "No such deal", currencies):
        await services.ratings.rate(cast.stranger, deal.code, 5)
    with refuses(NotFound, "No such deal", currencies):
        await services.ratings.rate(cast.buyer, "NOSUCHXX", 5)
    for stars in (0, 6, -1):
        with refuses(InvalidInput, "1 to 5 stars", currencies):
            await services.ratings.rate(cast.buyer, deal.code, stars)
    async with services.ctx.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET status = 'blocked' WHERE id = :id"), {"id": cast.buyer.id}
        )
    with refuses(UserBlocked, "blocked", currencies):
        await services.ratings.rate(cast.buyer, deal.code, 5)
    assert await ratings_table(services) == []
    assert await counters(services, cast.seller) == (1, PRICE, 0, 0, 0, 0)


async def test_a_review_is_added_once_and_a_long_one_is_not_stored(services, cast):
    deal = await deal_in(services, cast, DealStatus.RELEASED)
    currencies = services.ctx.currencies
    with refuses(WrongState, "Rate deal .* with stars first", currencies):
        await services.ratings.review(cast.buyer, deal.code, "Quick and friendly")
    await services.ratings.rate(cast.buyer, deal.code, 5)
    with refuses(InvalidInput, "review is too long: 201 characters, at most 200", currencies):
        await services.ratings.review(cast.buyer, deal.code, "x" * 201)
    assert (await ratings_table(services))[0][4] is None  # nothing stored

    saved = await services.ratings.review(cast.buyer, deal.code, "  Quick and friendly  ")
    assert (saved.value.review, saved.value.new, saved.events) == ("Quick and friendly", True, ())
    again = await services.ratings.review(cast.buyer, deal.code, "Changed my mind")
    assert (again.value.review, again.value.new) == ("Quick and friendly", False)
    reviews = await services.ratings.reviews_of(cast.seller)
    assert [(r.stars, r.review, r.rater_name) for r in reviews] == [
        (5, "Quick and friendly", "@alice_buyer")
    ]


# -- kept counters equal counted ones -----------------------------------------------


COUNTED = """
SELECT p.user_id, e.currency,
       count(*) FILTER (WHERE e.status = 'released'
                        OR (e.status = 'refunded' AND e.status_before_dispute IS NOT NULL)),
       coalesce(sum(e.amount) FILTER (WHERE e.status = 'released'), 0),
       (SELECT count(*) FROM deal_events h JOIN escrows x ON x.id = h.escrow_id
        WHERE h.to_status = 'disputed' AND h.actor_id = p.user_id AND x.currency = e.currency),
       count(*) FILTER (WHERE e.status_before_dispute IS NOT NULL AND e.status IN
                        ('released', 'refunded') AND p.user_id = CASE e.status
                            WHEN 'released' THEN e.buyer_id ELSE e.seller_id END),
       (SELECT count(*) FROM ratings g JOIN escrows x ON x.id = g.escrow_id
        WHERE g.rated_id = p.user_id AND x.currency = e.currency),
       (SELECT coalesce(sum(g.stars), 0) FROM ratings g JOIN escrows x ON x.id = g.escrow_id
        WHERE g.rated_id = p.user_id AND x.currency = e.currency)
FROM escrows e CROSS JOIN LATERAL (VALUES (e.buyer_id), (e.seller_id)) p(user_id)
WHERE p.user_id IS NOT NULL
GROUP BY p.user_id, e.currency
"""
KEPT = """
SELECT user_id, currency, deals, volume, disputes_opened, disputes_lost, ratings, stars
FROM reputations
"""


async def test_the_kept_counters_are_what_the_deals_and_ratings_count(services, cast: Cast):
    deals: list[DealView] = []
    for status in (DealStatus.RELEASED, DealStatus.REFUNDED, DealStatus.CANCELLED):
        deals.append(await deal_in(services, cast, status))
    for outcome in ("release", "refund"):
        disputed = await deal_in(services, cast, DealStatus.DISPUTED)
        deals.append((await services.deals.resolve(cast.admin, disputed.code, outcome)).value)
    await deal_in(services, cast, DealStatus.DISPUTED)  # still open
    for deal in deals:
        for rater, stars in ((cast.buyer, 5), (cast.seller, 3)):
            with contextlib.suppress(WrongState):  # not completed
                await services.ratings.rate(rater, deal.code, stars)
    async with services.ctx.db.engine.connect() as conn:
        counted = {tuple(row) for row in await conn.execute(text(COUNTED))}
        kept = {tuple(row) for row in await conn.execute(text(KEPT))}
    # a party with nothing to count has no row, or a row of zeros
    counted_nonzero = {row for row in counted if any(row[2:])}
    assert kept == counted_nonzero
    assert len(kept) == 2
