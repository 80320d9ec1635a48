"""Anti-spam on real Postgres: the deals one user may open in an hour and
those addressed to strangers in a day, counted by Postgres in the creating
transaction; over a limit nothing is created and the refusal says when."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text

from bot.services.errors import Paced, Refusal
from bot.services.settings import EscrowSettings
from bot.services.views import UserView
from db import Database
from tests.conftest import ADMIN_TELEGRAM_ID, Services
from tests.integration.helpers import world
from tests.refusals import refuses

PRICE = 10_00


def paced(deals_per_hour: int = 0, strangers_per_day: int = 0) -> EscrowSettings:
    return EscrowSettings(
        admins=(ADMIN_TELEGRAM_ID,),
        deals_per_hour=deals_per_hour,
        strangers_per_day=strangers_per_day,
    )


async def open_deal(services: Services, creator: UserView, counterparty, key: str | None = None):
    return await services.deals.create(
        creator,
        role="buyer",
        currency="USDT",
        amount=PRICE,
        description="a lamp",
        counterparty=counterparty,
        create_key=key,
    )


async def age(database: Database, creator: UserView, by: timedelta) -> None:
    """Move the creator's deals `by` into the past (the window slides on)."""
    async with database.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE escrows SET created_at = created_at - CAST(:by AS interval)"
                " WHERE creator_id = :c"
            ),
            {"by": by, "c": creator.id},
        )


async def deals_of(database: Database, creator: UserView) -> list[tuple]:
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT created_at, to_stranger FROM escrows WHERE creator_id = :c ORDER BY id"),
            {"c": creator.id},
        )
        return [tuple(row) for row in rows]


@pytest.mark.parametrize("escrow_settings", [paced(deals_per_hour=3)])
async def test_the_deal_over_the_hourly_limit_is_refused_until_the_window_moves_on(
    services, database
):
    alice = await services.user("alice")
    bob = await services.user("bob")
    for _ in range(3):
        await open_deal(services, alice, bob.telegram_id)
    before = await world(database)
    with refuses(Paced, "You have opened 3 deals in the last hour", services.ctx.currencies) as no:
        await open_deal(services, alice, bob.telegram_id)
    assert await world(database) == before  # nothing created, nobody told
    first_made = (await deals_of(database, alice))[0][0]
    assert no.value.code is Refusal.TOO_MANY_DEALS
    assert no.value.data["until"] == first_made + timedelta(hours=1)  # when it leaves the window
    assert timedelta(minutes=59) < no.value.data["wait"] <= timedelta(hours=1)
    # someone else is not limited by Alice's pace
    await open_deal(services, bob, alice.telegram_id)

    await age(database, alice, timedelta(minutes=61))
    await open_deal(services, alice, bob.telegram_id)  # the window moved on
    assert len(await deals_of(database, alice)) == 4


@pytest.mark.parametrize("escrow_settings", [paced(deals_per_hour=3)])
async def test_creates_at_once_are_counted_one_after_the_other(services, database):
    alice = await services.user("alice")
    bob = await services.user("bob")
    outcomes = await asyncio.gather(
        *(open_deal(services, alice, bob.telegram_id, key=f"wizard-{i}") for i in range(10)),
        return_exceptions=True,
    )
    made = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(made) == 3 and len(refused) == 7, refused
    assert all(isinstance(e, Paced) for e in refused), refused
    assert len(await deals_of(database, alice)) == 3


@pytest.mark.parametrize("escrow_settings", [paced(deals_per_hour=3)])
async def test_a_limit_that_is_off_counts_no_deal_committed_after_the_create_began(
    services, database
):
    """Creates at once wait for the creator's row: the one waiting began
    before the deal it then sees was made, so that deal's created_at is later
    than its now(). The strangers' limit is off and must stay so."""
    alice = await services.user("alice")
    bob = await services.user("bob")
    await open_deal(services, alice, bob.telegram_id)
    await age(database, alice, timedelta(seconds=-5))  # as if made after now()
    await open_deal(services, alice, bob.telegram_id)
    assert len(await deals_of(database, alice)) == 2


@pytest.mark.parametrize("escrow_settings", [paced(deals_per_hour=1)])
async def test_a_create_made_already_is_found_by_its_key_over_the_limit(services, database):
    alice = await services.user("alice")
    bob = await services.user("bob")
    made = await open_deal(services, alice, bob.telegram_id, key="wizard-1")
    again = await open_deal(services, alice, bob.telegram_id, key="wizard-1")
    assert again.value.deal.code == made.value.deal.code  # made is made, never refused


@pytest.mark.parametrize("escrow_settings", [paced(deals_per_hour=20, strangers_per_day=2)])
async def test_deals_addressed_to_strangers_are_limited_by_day(services, database):
    alice = await services.user("alice", funds={"USDT": 10 * PRICE})
    bob = await services.user("bob")
    carol = await services.user("carol")
    dave = await services.user("dave")
    first = (await open_deal(services, alice, bob.telegram_id)).value.deal
    await open_deal(services, alice, "@not_on_the_bot")  # an invitation by @username
    before = await world(database)
    for stranger in (carol.telegram_id, bob.telegram_id, 777_000_001, "@someone_else"):
        with refuses(
            Paced, "deals with 2 people you never had a funded deal with", services.ctx.currencies
        ):
            await open_deal(services, alice, stranger)
    assert await world(database) == before
    # an invitation link is addressed to nobody
    link = (await open_deal(services, alice, None)).value
    assert link.invitation is not None

    # once Bob and Alice had a funded deal, Bob is no stranger
    await services.deals.accept(bob, first.code)
    await services.deals.fund(alice, first.code)
    await open_deal(services, alice, bob.telegram_id)
    assert [stranger for _, stranger in await deals_of(database, alice)] == [
        True,
        True,
        False,
        False,
    ]

    await age(database, alice, timedelta(hours=24, minutes=1))
    await open_deal(services, alice, dave.telegram_id)  # a new day
