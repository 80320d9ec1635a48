"""Deposits and withdrawals: money entering and leaving, exactly once."""

from __future__ import annotations

import pytest

from bot.services.errors import (
    AlreadyDone,
    InsufficientFunds,
    InvalidInput,
    NotAllowed,
    NotFound,
    WrongState,
)
from bot.services.wallets import DemoDepositProvider
from bot.telegram.texts import deposit_instructions
from db.events import UserChanged
from db.models import WithdrawalStatus
from tests.integration.helpers import balance, ledger, world
from tests.refusals import refuses


async def test_a_deposit_is_credited_once_per_reference(services, sql):
    user = await services.user("dep_user")
    sql.start()
    first = await services.wallets.credit_deposit(user, "USDT", 75_00, reference="tx-1")
    assert len(sql.stop()) == 1
    assert first.value.credited
    assert first.events == (UserChanged(user.id, user.telegram_id, user.version + 1),)
    again = await services.wallets.credit_deposit(user, "USDT", 75_00, reference="tx-1")
    assert not again.value.credited and again.events == ()
    assert await balance(services.ctx.db, user.id) == (75_00, 0)
    assert await ledger(services.ctx.db, "deposit:tx-1") == [
        ("deposit", "external", None, -75_00),
        ("deposit", "available", user.id, 75_00),
    ]


async def test_the_demo_provider_credits_at_once(services):
    user = await services.user("demo_user")
    provider = DemoDepositProvider(services.wallets)
    assert "Demo mode" in deposit_instructions(provider.name, "TON")
    await provider.deposit(user, "TON", 2 * 10**9, reference="r1")
    assert await balance(services.ctx.db, user.id, "TON") == (2 * 10**9, 0)


async def test_admin_credit(services, sql):
    admin = await services.admin()
    user = await services.user("bank_user")
    sql.start()
    await services.wallets.admin_credit(admin, user.telegram_id, "USDT", 10_00, reference="wire-9")
    assert len(sql.stop()) == 3  # admin's standing, the user, the movement
    assert await balance(services.ctx.db, user.id) == (10_00, 0)
    before = await world(services.ctx.db)
    with pytest.raises(NotAllowed):
        await services.wallets.admin_credit(user, user.telegram_id, "USDT", 10_00, reference="x")
    with pytest.raises(NotFound):
        await services.wallets.admin_credit(admin, 123456789, "USDT", 10_00, reference="y")
    again = await services.wallets.admin_credit(
        admin, user.telegram_id, "USDT", 10_00, reference="wire-9"
    )
    assert not again.value.credited
    assert await world(services.ctx.db) == before


@pytest.mark.parametrize(
    ("currency", "amount", "destination", "error"),
    [
        ("USDT", 0, "TXYZ", InvalidInput),
        ("USDT", 99, "TXYZ", InvalidInput),
        ("USDT", 2_000_000_00, "TXYZ", InvalidInput),
        ("USDT", 10_00, "", InvalidInput),
        ("USDT", 10_00, "x" * 201, InvalidInput),
        ("XXX", 10_00, "TXYZ", InvalidInput),
        ("USDT", 100_01, "TXYZ", InsufficientFunds),
    ],
)
async def test_bad_withdrawals_change_nothing(services, currency, amount, destination, error):
    user = await services.user("wd_bad", funds={"USDT": 100_00})
    before = await world(services.ctx.db)
    with pytest.raises(error):
        await services.wallets.request_withdrawal(user, currency, amount, destination)
    assert await world(services.ctx.db) == before


async def test_withdrawal_approved(services, sql):
    admin = await services.admin()
    user = await services.user("wd_user", funds={"USDT": 100_00})
    sql.start()
    request = (await services.wallets.request_withdrawal(user, "USDT", 60_00, "TRC20 TXyz")).value
    assert len(sql.stop()) == 2
    assert request.status == WithdrawalStatus.PENDING
    assert await balance(services.ctx.db, user.id) == (40_00, 60_00)
    sql.start()
    approved = (await services.wallets.approve_withdrawal(admin, request.id)).value
    assert len(sql.stop()) == 3
    assert approved.status == WithdrawalStatus.APPROVED
    assert approved.telegram_id == user.telegram_id
    assert await balance(services.ctx.db, user.id) == (40_00, 0)
    with refuses(WrongState, "already approved", services.ctx.currencies):
        await services.wallets.reject_withdrawal(admin, request.id)


async def test_a_withdrawal_requested_twice_with_one_reference_is_held_once(services, sql):
    user = await services.user("twice_user", funds={"USDT": 100_00})
    first = (
        await services.wallets.request_withdrawal(user, "USDT", 30_00, "acct", reference="c:7")
    ).value
    before = await world(services.ctx.db)
    sql.start()
    with refuses(AlreadyDone, "already requested", services.ctx.currencies) as again:
        await services.wallets.request_withdrawal(user, "USDT", 30_00, "acct", reference="c:7")
    # the request rolled back, then the first one found by its hold's key
    assert "FROM ledger_entries l JOIN withdrawals w" in sql.stop()[-1]
    assert again.value.current == first
    assert await world(services.ctx.db) == before
    assert await balance(services.ctx.db, user.id) == (70_00, 30_00)
    assert await services.wallets.requested_with(user, "c:7") == first
    assert await services.wallets.requested_with(user, "c:8") is None
    other = await services.user("other_user")
    assert await services.wallets.requested_with(other, "c:7") is None  # only the owner's


async def test_withdrawal_rejected_returns_the_money(services):
    admin = await services.admin()
    user = await services.user("wd_rej", funds={"USDT": 100_00})
    request = (await services.wallets.request_withdrawal(user, "USDT", 60_00, "addr")).value
    rejected = (await services.wallets.reject_withdrawal(admin, request.id, "Bad address")).value
    assert rejected.status == WithdrawalStatus.REJECTED and rejected.note == "Bad address"
    assert await balance(services.ctx.db, user.id) == (100_00, 0)
    assert [leg[:2] for leg in await ledger(services.ctx.db, f"withdrawal:{request.id}:")] == [
        ("hold", "available"),
        ("hold", "held"),
        ("refund", "held"),
        ("refund", "available"),
    ]


async def test_only_admins_decide_withdrawals(services):
    user = await services.user("wd_self", funds={"USDT": 100_00})
    request = (await services.wallets.request_withdrawal(user, "USDT", 60_00, "addr")).value
    before = await world(services.ctx.db)
    with pytest.raises(NotAllowed):
        await services.wallets.approve_withdrawal(user, request.id)
    with pytest.raises(NotAllowed):
        await services.wallets.approve_withdrawal(user, 999_999)
    assert await world(services.ctx.db) == before


async def test_held_funds_cannot_fund_a_deal(services):
    buyer = await services.user("wd_buyer", funds={"USDT": 100_00})
    seller = await services.user("wd_seller")
    await services.wallets.request_withdrawal(buyer, "USDT", 80_00, "addr")
    deal = (
        await services.deals.create(
            buyer,
            role="buyer",
            currency="USDT",
            amount=50_00,
            description="desk",
            counterparty=seller.telegram_id,
        )
    ).value.deal
    await services.deals.accept(seller, deal.code)
    with pytest.raises(InsufficientFunds):
        await services.deals.fund(buyer, deal.code)
