"""Races over separate connections: the same operation pressed many times at once.

Every service call opens its own pooled connection and transaction, so
`asyncio.gather` of N calls is N transactions racing in Postgres, as N bot
replicas would. Exactly one must take effect; the others are refused with a
domain error and change nothing; the money is exactly right afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

import pytest
from sqlalchemy import text

from bot.services.errors import EscrowError, Refusal, WrongState
from bot.services.users import Profile
from bot.services.views import DealView, UserView
from db import Database
from db.models import DealStatus, EvidenceKind, WithdrawalStatus
from tests.conftest import UNPACED

N = 20
AMOUNT = 100_00  # 100.00 USDT
FEE = 1_50  # 150 bps of AMOUNT
PAYOUT = AMOUNT - FEE


# -- helpers ---------------------------------------------------------------------------


async def race(calls: Iterable[Awaitable[Any]]) -> tuple[list[Any], list[BaseException]]:
    """Run every call at once; split what came back into results and exceptions."""
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    results = [o for o in outcomes if not isinstance(o, BaseException)]
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    unexpected = [e for e in errors if not isinstance(e, EscrowError)]
    if unexpected:
        raise unexpected[0]
    return results, errors


async def scalar(database: Database, sql: str, **params: Any) -> Any:
    async with database.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def wallet(database: Database, user: UserView, currency: str = "USDT") -> tuple[int, int]:
    async with database.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT available, held FROM wallets WHERE user_id = :u AND currency = :c"),
                {"u": user.id, "c": currency},
            )
        ).one()
    return row.available, row.held


async def fees(database: Database, currency: str = "USDT") -> int:
    return await scalar(
        database,
        "SELECT coalesce(sum(fees), 0) FROM platform_accounts WHERE currency = :c",
        c=currency,
    )


async def legs(database: Database, key: str) -> int:
    return await scalar(
        database, "SELECT count(*) FROM ledger_entries WHERE idempotency_key = :k", k=key
    )


async def transitions(database: Database, deal: DealView, to_status: str) -> int:
    return await scalar(
        database,
        "SELECT count(*) FROM deal_events WHERE escrow_id = :d AND to_status = :s",
        d=deal.id,
        s=to_status,
    )


async def status(database: Database, deal: DealView) -> str:
    return await scalar(database, "SELECT status FROM escrows WHERE id = :d", d=deal.id)


async def open_deal(services: Any, buyer: UserView, seller: UserView, amount: int = AMOUNT):
    """An accepted deal: `buyer` opened it, `seller` accepted."""
    created = await services.deals.create(
        buyer,
        role="buyer",
        currency="USDT",
        amount=amount,
        description="a used bicycle",
        counterparty=seller.telegram_id,
    )
    deal = created.value.deal
    await services.deals.accept(seller, deal.code)
    return deal


async def funded_deal(services: Any, buyer: UserView, seller: UserView, amount: int = AMOUNT):
    deal = await open_deal(services, buyer, seller, amount)
    return (await services.deals.fund(buyer, deal.code)).value


def assert_refused(errors: list[BaseException], count: int, kind: type = WrongState) -> None:
    assert len(errors) == count
    assert all(isinstance(e, kind) for e in errors), errors


# -- deals -----------------------------------------------------------------------------


async def test_concurrent_funding_holds_once(services, database):
    buyer = await services.user("buyer", funds={"USDT": 10 * AMOUNT})
    seller = await services.user("seller")
    deal = await open_deal(services, buyer, seller)

    results, errors = await race(services.deals.fund(buyer, deal.code) for _ in range(N))

    assert len(results) == 1
    assert results[0].value.status == DealStatus.FUNDED
    assert_refused(errors, N - 1)
    assert all(e.current.status == DealStatus.FUNDED for e in errors)
    assert await wallet(database, buyer) == (9 * AMOUNT, AMOUNT)
    assert await wallet(database, seller) == (0, 0)
    assert await legs(database, f"deal:{deal.id}:funded") == 2
    assert await transitions(database, deal, DealStatus.FUNDED) == 1
    assert await status(database, deal) == DealStatus.FUNDED


async def test_concurrent_creates_with_one_key_make_one_deal(services, database):
    # Without the user's lock (two replicas, a lost lock), the key alone keeps
    # a repeated Create from making a second deal.
    buyer = await services.user("buyer")
    seller = await services.user("seller")
    create = dict(
        role="buyer",
        currency="USDT",
        amount=AMOUNT,
        description="a used bicycle",
        counterparty=seller.telegram_id,
        create_key="wizard-race",
    )

    results, errors = await race(services.deals.create(buyer, **create) for _ in range(N))

    assert errors == []
    assert len({result.value.deal.id for result in results}) == 1
    assert sum(len(result.notices) for result in results) == 1  # the seller is told once
    deal = results[0].value.deal
    mine = "SELECT count(*) FROM escrows WHERE creator_id = :id"
    assert await scalar(database, mine, id=buyer.id) == 1
    told = "SELECT count(*) FROM notifications WHERE escrow_id = :id"
    assert await scalar(database, told, id=deal.id) == 1


async def test_concurrent_releases_pay_the_seller_once(services, database):
    buyer = await services.user("buyer", funds={"USDT": 3 * AMOUNT})
    seller = await services.user("seller")
    deal = await funded_deal(services, buyer, seller)
    await services.deals.deliver(seller, deal.code)

    results, errors = await race(services.deals.release(buyer, deal.code) for _ in range(N))

    assert len(results) == 1
    assert results[0].value.status == DealStatus.RELEASED
    assert_refused(errors, N - 1)
    assert all(e.current.status == DealStatus.RELEASED for e in errors)
    assert await wallet(database, buyer) == (2 * AMOUNT, 0)
    assert await wallet(database, seller) == (PAYOUT, 0)
    assert await fees(database) == FEE
    assert await legs(database, f"deal:{deal.id}:released") == 3
    assert await transitions(database, deal, DealStatus.RELEASED) == 1


async def test_release_racing_cancel_settles_one_way(services, database):
    buyer = await services.user("buyer", funds={"USDT": AMOUNT})
    seller = await services.user("seller")
    deal = await funded_deal(services, buyer, seller)

    calls = []
    for _ in range(N // 2):
        calls += [
            services.deals.release(buyer, deal.code),
            services.deals.cancel(seller, deal.code),
        ]
    results, errors = await race(calls)

    assert len(results) == 1
    assert_refused(errors, N - 1)
    final = results[0].value.status
    assert all(e.current.status == final for e in errors)
    assert await status(database, deal) == final
    released = await legs(database, f"deal:{deal.id}:released")
    refunded = await legs(database, f"deal:{deal.id}:refunded")
    if final == DealStatus.RELEASED:
        assert await wallet(database, buyer) == (0, 0)
        assert await wallet(database, seller) == (PAYOUT, 0)
        assert await fees(database) == FEE
        assert (released, refunded) == (3, 0)
    else:
        assert final == DealStatus.REFUNDED
        assert await wallet(database, buyer) == (AMOUNT, 0)
        assert await wallet(database, seller) == (0, 0)
        assert await fees(database) == 0
        assert (released, refunded) == (0, 2)
    assert await transitions(database, deal, DealStatus.RELEASED) == (final == "released")
    assert await transitions(database, deal, DealStatus.REFUNDED) == (final == "refunded")


async def test_concurrent_resolutions_settle_a_dispute_once(services, database):
    admin = await services.admin()
    buyer = await services.user("buyer", funds={"USDT": AMOUNT})
    seller = await services.user("seller")
    deal = await funded_deal(services, buyer, seller)
    await services.deals.dispute(buyer, deal.code, "never arrived")

    outcomes = ["release" if i % 2 else "refund" for i in range(N)]
    results, errors = await race(services.deals.resolve(admin, deal.code, o) for o in outcomes)

    assert len(results) == 1
    assert_refused(errors, N - 1)
    final = results[0].value.status
    assert final in (DealStatus.RELEASED, DealStatus.REFUNDED)
    assert all(e.current.status == final for e in errors)
    assert await status(database, deal) == final
    if final == DealStatus.RELEASED:
        assert await wallet(database, buyer) == (0, 0)
        assert await wallet(database, seller) == (PAYOUT, 0)
        assert await fees(database) == FEE
    else:
        assert await wallet(database, buyer) == (AMOUNT, 0)
        assert await wallet(database, seller) == (0, 0)
        assert await fees(database) == 0
    assert await legs(database, f"deal:{deal.id}:released") == (3 if final == "released" else 0)
    assert await legs(database, f"deal:{deal.id}:refunded") == (2 if final == "refunded" else 0)
    assert await transitions(database, deal, DealStatus.RELEASED) == (final == "released")
    assert await transitions(database, deal, DealStatus.REFUNDED) == (final == "refunded")


# -- wallets ---------------------------------------------------------------------------


async def test_one_deposit_reference_credited_once(services, database):
    user = await services.user("depositor")

    results, errors = await race(
        services.wallets.credit_deposit(user, "USDT", AMOUNT, reference="chain:tx-1")
        for _ in range(N)
    )

    assert errors == []
    assert len(results) == N
    assert sum(r.value.credited for r in results) == 1
    assert await wallet(database, user) == (AMOUNT, 0)
    assert await legs(database, "deposit:chain:tx-1") == 2


async def test_concurrent_approvals_pay_out_once(services, database):
    admin = await services.admin()
    user = await services.user("withdrawer", funds={"USDT": 3 * AMOUNT})
    withdrawal = (
        await services.wallets.request_withdrawal(user, "USDT", AMOUNT, "TXYZ-address")
    ).value
    assert await wallet(database, user) == (2 * AMOUNT, AMOUNT)

    results, errors = await race(
        services.wallets.approve_withdrawal(admin, withdrawal.id) for _ in range(N)
    )

    assert len(results) == 1
    assert results[0].value.status == WithdrawalStatus.APPROVED
    assert_refused(errors, N - 1)
    assert all(e.current.status == WithdrawalStatus.APPROVED for e in errors)
    assert await wallet(database, user) == (2 * AMOUNT, 0)
    assert await legs(database, f"withdrawal:{withdrawal.id}:approved") == 2
    assert await legs(database, f"withdrawal:{withdrawal.id}:rejected") == 0
    assert (
        await scalar(database, "SELECT status FROM withdrawals WHERE id = :w", w=withdrawal.id)
        == WithdrawalStatus.APPROVED
    )


@pytest.mark.parametrize("escrow_settings", [UNPACED])  # 50 deals each in seconds
async def test_crossed_releases_between_two_users_never_deadlock(services, database, caplog):
    """X buys from Y while Y buys from X: every release touches both wallets, debiting
    one and crediting the other in opposite orders. Round after round, several of
    each at once must all succeed, without a deadlock even retried inside."""
    rounds, pairs = 10, 5
    x = await services.user("user_x", funds={"USDT": rounds * pairs * AMOUNT})
    y = await services.user("user_y", funds={"USDT": rounds * pairs * AMOUNT})

    caplog.set_level(logging.INFO, logger="bot.services.base")
    for _ in range(rounds):
        x_buys = [await funded_deal(services, x, y) for _ in range(pairs)]
        y_buys = [await funded_deal(services, y, x) for _ in range(pairs)]
        calls = []
        for a, b in zip(x_buys, y_buys, strict=True):
            calls += [services.deals.release(x, a.code), services.deals.release(y, b.code)]
        results, errors = await race(calls)
        assert errors == []
        assert [r.value.status for r in results] == [DealStatus.RELEASED] * 2 * pairs

    retried = [r.getMessage() for r in caplog.records if "retried" in r.getMessage()]
    assert retried == []
    # Each side paid for rounds * pairs deals and was paid for as many, less the fee.
    expected = rounds * pairs * (AMOUNT - FEE)
    assert await wallet(database, x) == (expected, 0)
    assert await wallet(database, y) == (expected, 0)
    assert await fees(database) == 2 * rounds * pairs * FEE
    assert await scalar(
        database, "SELECT count(*) FROM deal_events WHERE to_status = 'released'"
    ) == (2 * rounds * pairs)
    assert await scalar(
        database, "SELECT count(*) FROM ledger_entries WHERE kind IN ('release', 'fee')"
    ) == (3 * 2 * rounds * pairs)


async def test_registrations_racing_money_movements_never_deadlock(services, database, caplog):
    """A user's /start (which locks the user row, then makes sure every wallet
    exists) while money moves in their wallets must not deadlock either."""
    user = await services.user("busy_user")
    caplog.set_level(logging.INFO, logger="bot.services.base")
    for round_ in range(5):
        calls = []
        for i in range(10):
            calls += [
                services.wallets.credit_deposit(
                    user, "USDT", AMOUNT, reference=f"busy:{round_}:{i}"
                ),
                services.users.register(
                    Profile(telegram_id=user.telegram_id, first_name=f"Busy {round_}.{i}")
                ),
            ]
        _, errors = await race(calls)
        assert errors == []

    assert [r.getMessage() for r in caplog.records if "retried" in r.getMessage()] == []
    assert await wallet(database, user) == (5 * 10 * AMOUNT, 0)


# -- disputes: splits, evidence ----------------------------------------------------------


async def test_splits_racing_releases_and_refunds_settle_a_dispute_once(services, database):
    admin = await services.admin()
    other_admin = await services.user("second_admin", telegram_id=900_000_002)
    async with database.engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET is_admin = true WHERE id = :id"), {"id": other_admin.id}
        )
    buyer = await services.user("buyer", funds={"USDT": AMOUNT})
    seller = await services.user("seller")
    deal = await funded_deal(services, buyer, seller)
    await services.deals.dispute(buyer, deal.code, "half of it arrived")

    def settle(i: int) -> Awaitable[Any]:
        who = admin if i % 2 else other_admin
        match i % 3:
            case 0:
                return services.deals.split(who, deal.code, AMOUNT // 2)
            case 1:
                return services.deals.resolve(who, deal.code, "release")
            case _:
                return services.deals.resolve(who, deal.code, "refund")

    results, errors = await race(settle(i) for i in range(N))

    assert len(results) == 1
    final = results[0].value.status
    assert all(isinstance(e, WrongState) and e.current.status == final for e in errors)
    assert len(errors) == N - 1
    assert await status(database, deal) == final
    moved = {
        DealStatus.SPLIT: ((AMOUNT // 2, 0), (AMOUNT // 2 - 75, 0), 75),
        DealStatus.RELEASED: ((0, 0), (PAYOUT, 0), FEE),
        DealStatus.REFUNDED: ((AMOUNT, 0), (0, 0), 0),
    }[DealStatus(final)]
    assert (await wallet(database, buyer), await wallet(database, seller)) == moved[:2]
    assert await fees(database) == moved[2]
    settled = await scalar(
        database,
        "SELECT count(DISTINCT idempotency_key) FROM ledger_entries WHERE escrow_id = :d"
        " AND idempotency_key <> :hold",
        d=deal.id,
        hold=f"deal:{deal.id}:funded",
    )
    assert settled == 1  # one movement out of the escrow, whichever won


async def test_evidence_sent_at_once_stops_at_the_partys_limit(services, database):
    limit = services.ctx.settings.evidence_per_party
    buyer = await services.user("buyer", funds={"USDT": AMOUNT})
    seller = await services.user("seller")
    deal = await funded_deal(services, buyer, seller)
    await services.deals.dispute(buyer, deal.code, "never arrived")

    results, errors = await race(
        services.deals.add_evidence(buyer, deal.code, EvidenceKind.TEXT, text=f"note {i}")
        for i in range(limit + 5)
    )

    assert len(results) == limit
    assert len(errors) == 5 and all(e.code is Refusal.EVIDENCE_LIMIT for e in errors)
    assert sorted(r.value.sent for r in results) == list(range(1, limit + 1))
    assert (
        await scalar(
            database, "SELECT count(*) FROM dispute_evidence WHERE escrow_id = :d", d=deal.id
        )
        == limit
    )
    # the other party's own allowance is untouched
    await services.deals.add_evidence(seller, deal.code, EvidenceKind.TEXT, text="sent it")


async def test_evidence_racing_a_settlement_is_kept_only_while_the_dispute_is_open(
    services, database
):
    admin = await services.admin()
    buyer = await services.user("buyer", funds={"USDT": AMOUNT})
    seller = await services.user("seller")
    deal = await funded_deal(services, buyer, seller)
    await services.deals.dispute(buyer, deal.code, "never arrived")

    calls = [
        services.deals.add_evidence(seller, deal.code, EvidenceKind.TEXT, text=f"proof {i}")
        for i in range(8)
    ]
    calls.insert(4, services.deals.resolve(admin, deal.code, "release"))
    results, errors = await race(calls)

    # the settlement went through; every piece either went in before it (kept,
    # and told to the admins) or found the dispute closed (refused, not kept)
    assert await status(database, deal) == DealStatus.RELEASED
    assert all(isinstance(e, WrongState) and e.code is Refusal.DISPUTE_CLOSED for e in errors)
    added = [r for r in results if r.value is not None and hasattr(r.value, "evidence")]
    assert len(added) + len(errors) == 8
    kept = await scalar(
        database, "SELECT count(*) FROM dispute_evidence WHERE escrow_id = :d", d=deal.id
    )
    assert kept == len(added)


# -- blocking ---------------------------------------------------------------------------


async def test_a_block_racing_funding_either_funds_before_or_refuses(services, database):
    admin = await services.admin()
    for round_ in range(5):
        buyer = await services.user(f"buyer_{round_}", funds={"USDT": AMOUNT})
        seller = await services.user(f"seller_{round_}")
        deal = await open_deal(services, buyer, seller)
        results, errors = await race(
            [
                services.deals.fund(buyer, deal.code),
                services.moderation.block(admin, str(seller.telegram_id), "fraud"),
            ]
        )
        funded = await status(database, deal) == DealStatus.FUNDED
        assert len(results) == 2 - len(errors)
        if funded:
            assert await wallet(database, buyer) == (0, AMOUNT)
        else:
            assert [e.code for e in errors] == [Refusal.PARTY_BLOCKED]
            assert await wallet(database, buyer) == (AMOUNT, 0)
        assert (
            await scalar(database, "SELECT status FROM users WHERE id = :u", u=seller.id)
            == "blocked"
        )
