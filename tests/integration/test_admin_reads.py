"""Admin reads (a deal as an admin sees it, open disputes, pending withdrawals
with every user's destination, stats) are checked like admin writes: the
caller's own row must be an active admin, read in the same statement, never
taken from the caller's (cached) snapshot."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text

from bot.services.errors import NotAllowed, NotFound
from bot.services.reads import ReadService
from bot.services.views import UserView
from tests.conftest import READS_FROM, Services
from tests.postgres_standby import replayed
from tests.refusals import refuses

# Also with a hot standby serving the admin reads.
pytestmark = READS_FROM
PRICE = 40_00


@pytest.fixture
def reads(services: Services) -> ReadService:
    return ReadService(services.ctx)


async def disputed_deal_and_withdrawal(services: Services) -> str:
    buyer = await services.user("rd_buyer", funds={"USDT": 100_00})
    seller = await services.user("rd_seller")
    deal = (
        await services.deals.create(
            buyer,
            role="buyer",
            currency="USDT",
            amount=PRICE,
            description="A lamp",
            counterparty=seller.telegram_id,
        )
    ).value.deal
    await services.deals.accept(seller, deal.code)
    await services.deals.fund(buyer, deal.code)
    await services.deals.dispute(buyer, deal.code, "It never came")
    await services.wallets.request_withdrawal(buyer, "USDT", 10_00, "TXsecretaddress")
    return deal.code


def admin_reads(
    services: Services, reads: ReadService, code: str
) -> dict[str, Callable[[UserView], Awaitable[Any]]]:
    return {
        "deal": lambda actor: services.deals.get(actor, code, as_admin=True),
        "open disputes": lambda actor: reads.open_disputes(actor),
        "pending withdrawals": lambda actor: reads.pending_withdrawals(actor),
        "stats": lambda actor: reads.stats(actor),
    }


async def test_an_admin_reads_each_in_one_statement(services, reads, sql):
    code = await disputed_deal_and_withdrawal(services)
    admin = await services.admin()
    read = admin_reads(services, reads, code)

    sql.start()
    deal = await read["deal"](admin)
    assert sql.stop() and sql.count == 1
    assert (deal.code, deal.status) == (code, "disputed")

    sql.start()
    [dispute] = await read["open disputes"](admin)
    assert sql.stop() and sql.count == 1
    assert (dispute.code, dispute.amount) == (code, PRICE)

    sql.start()
    [withdrawal] = await read["pending withdrawals"](admin)
    assert sql.stop() and sql.count == 1
    assert (withdrawal.destination, withdrawal.amount) == ("TXsecretaddress", 10_00)

    sql.start()
    stats = await read["stats"](admin)
    assert sql.stop() and sql.count == 1
    assert (stats.users, stats.pending_withdrawals) == (3, 1)
    assert stats.deals_by_status == {"disputed": 1}
    assert stats.released == ()


async def test_an_admin_with_nothing_to_see_gets_empty_lists_not_a_refusal(services, reads):
    admin = await services.admin()
    assert await reads.open_disputes(admin) == []
    assert await reads.pending_withdrawals(admin) == []
    assert (await reads.stats(admin)).deals_by_status == {}
    with refuses(NotFound, "No such deal", services.ctx.currencies):
        await services.deals.get(admin, "NOSUCHDL", as_admin=True)


async def demote(services: Services, user: UserView, change: str) -> None:
    async with services.ctx.db.engine.begin() as conn:
        await conn.execute(text(f"UPDATE users SET {change} WHERE id = :id"), {"id": user.id})
    if services.ctx.db.standby is not None:
        # Made outside the bot, so nobody is marked: a standby shows it once
        # replayed (within read_max_lag_ms).
        await replayed(services.ctx.db.standby)


@pytest.mark.parametrize("read", ["deal", "open disputes", "pending withdrawals", "stats"])
@pytest.mark.parametrize(
    "standing",
    [
        "is_admin = false",  # removed from the admins since the snapshot was cached
        "status = 'blocked'",
    ],
)
async def test_a_revoked_admin_whose_snapshot_still_says_admin_sees_nothing(
    services, reads, read, standing, sql
):
    code = await disputed_deal_and_withdrawal(services)
    admin = await services.admin()
    assert admin.is_admin  # what the cached snapshot still says
    await demote(services, admin, standing)
    sql.start()
    with refuses(NotAllowed, "admins only", services.ctx.currencies):
        await admin_reads(services, reads, code)[read](admin)
    assert sql.stop() and sql.count == 1


@pytest.mark.parametrize("read", ["deal", "open disputes", "pending withdrawals", "stats"])
async def test_a_user_who_never_was_an_admin_is_refused(services, reads, read):
    code = await disputed_deal_and_withdrawal(services)
    stranger = await services.user("rd_stranger")
    with refuses(NotAllowed, "admins only", services.ctx.currencies):
        await admin_reads(services, reads, code)[read](stranger)
