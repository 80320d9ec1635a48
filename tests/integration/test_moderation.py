"""Admins blocking and unblocking users on real Postgres: the row, the audit
trail, the user told, the snapshot invalidated, the SQL it costs, and every
refusal changing nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from bot.services.errors import InvalidInput, NotAllowed, NotFound, WrongState
from db.events import UserChanged
from db.models import EvidenceKind
from tests.integration.helpers import world
from tests.refusals import refuses


async def audit(services) -> list[tuple]:
    async with services.ctx.db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT user_id, admin_id, status, reason FROM user_status_changes ORDER BY id")
        )
        return [tuple(row) for row in rows]


async def test_a_block_and_an_unblock_are_recorded_told_and_published(services, sql, events):
    admin = await services.admin()
    carol = await services.user("carol_c")
    events.published.clear()

    sql.start()
    blocked = await services.moderation.block(admin, "@Carol_C", "  Sold a fake watch  ")
    assert len(sql.stop()) == 2  # the user locked, then status + audit + notice
    assert blocked.value.status == "blocked"
    assert blocked.value.version == carol.version + 1
    assert await audit(services) == [(carol.id, admin.id, "blocked", "Sold a fake watch")]
    (told,) = blocked.notices
    assert (told.chat_id, told.kind, told.note) == (
        carol.telegram_id,
        "account_blocked",
        "Sold a fake watch",
    )
    # every replica drops the user's snapshot: their status is read again
    assert events.published == [UserChanged(carol.id, carol.telegram_id, carol.version + 1)]

    seen = await services.moderation.find(admin, str(carol.telegram_id))
    assert (seen.status, seen.reason, seen.changed_by) == (
        "blocked",
        "Sold a fake watch",
        "@the_admin",
    )

    unblocked = await services.moderation.unblock(admin, str(carol.telegram_id))
    assert unblocked.value.status == "active"
    assert [n.kind for n in unblocked.notices] == ["account_unblocked"]
    assert (await audit(services))[-1] == (carol.id, admin.id, "active", None)
    assert (await services.moderation.find(admin, "carol_c")).status == "active"


async def test_refusals_change_nothing(services):
    admin = await services.admin()
    carol = await services.user("carol_c")
    mallory = await services.user("mallory_x")
    currencies = services.ctx.currencies
    await services.moderation.block(admin, "carol_c", "fraud")
    before = await world(services.ctx.db)
    with refuses(WrongState, "@carol_c is already blocked", currencies):
        await services.moderation.block(admin, "carol_c", "again")
    with refuses(WrongState, "@mallory_x is not blocked", currencies):
        await services.moderation.unblock(admin, "mallory_x")
    with refuses(NotAllowed, "Admins can't be blocked", currencies):
        await services.moderation.block(admin, "the_admin", "oops")
    with refuses(NotAllowed, "for admins only", currencies):
        await services.moderation.block(mallory, "carol_c", "I don't like her")
    with refuses(NotAllowed, "for admins only", currencies):
        await services.moderation.find(mallory, "carol_c")
    with refuses(NotFound, "Nobody with that Telegram id or @username", currencies):
        await services.moderation.block(admin, "nobody_here", "x")
    with refuses(NotFound, "Nobody with that Telegram id or @username", currencies):
        await services.moderation.find(admin, "123")
    with refuses(InvalidInput, "doesn't look like a Telegram @username", currencies):
        await services.moderation.block(admin, "not a name", "x")
    with refuses(InvalidInput, "reason can't be empty", currencies):
        await services.moderation.block(admin, "mallory_x", "   ")
    assert await world(services.ctx.db) == before
    assert len(await audit(services)) == 1
    assert carol.id != mallory.id


@pytest.mark.parametrize("who", ["carol_c", "@CAROL_C", "telegram id"])
async def test_a_user_is_found_by_id_or_any_spelling_of_their_name(services, who):
    admin = await services.admin()
    carol = await services.user("Carol_C")
    found = await services.moderation.find(
        admin, str(carol.telegram_id) if who == "telegram id" else who
    )
    assert (found.id, found.name, found.open_deals) == (carol.id, "@Carol_C", 0)


async def test_a_blocked_user_can_do_nothing_but_add_evidence(services):
    admin = await services.admin()
    buyer = await services.user("buyer_b", funds={"USDT": 500_00})
    seller = await services.user("seller_s")
    deal = (
        await services.deals.create(
            buyer, role="buyer", currency="USDT", amount=100_00, description="A lamp",
            counterparty=seller.telegram_id,
        )
    ).value.deal  # fmt: skip
    await services.deals.accept(seller, deal.code)
    await services.deals.fund(buyer, deal.code)
    await services.deals.dispute(seller, deal.code, "not paid for")
    await services.moderation.block(admin, "buyer_b", "chargebacks")
    currencies = services.ctx.currencies
    with refuses(NotAllowed, "blocked by the admins", currencies):
        await services.deals.release(buyer, deal.code)
    with refuses(NotAllowed, "can't withdraw", currencies):
        await services.wallets.request_withdrawal(buyer, "USDT", 10_00, "TXYZ")
    with refuses(NotAllowed, "blocked by the admins", currencies):
        await services.deals.create(
            buyer, role="buyer", currency="USDT", amount=100_00, description="again",
            counterparty=seller.telegram_id,
        )  # fmt: skip
    # their side of the dispute still reaches the admins, who still settle it
    await services.deals.add_evidence(buyer, deal.code, EvidenceKind.TEXT, text="I did pay")
    settled = await services.deals.split(admin, deal.code, 50_00)
    assert settled.value.status == "split"
    # unblocked, they act again
    await services.moderation.unblock(admin, "buyer_b")
    await services.wallets.request_withdrawal(buyer, "USDT", 10_00, "TXYZ")
