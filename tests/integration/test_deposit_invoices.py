"""Deposits by invoice: a paid invoice is credited once however often and
however concurrently the provider's report arrives; one paid otherwise is not
credited and the admins are told; an expired one is closed; one nobody here
created changes nothing."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from sqlalchemy import text

from bot.services.deposits import Payment
from bot.services.errors import InvalidInput
from tests.conftest import ADMIN_TELEGRAM_ID, Services
from tests.refusals import refuses

PROVIDER = "cryptopay"


async def balance(services: Services, user_id: int, currency: str = "USDT") -> int:
    async with services.ctx.db.engine.connect() as conn:
        return int(
            await conn.scalar(
                text("SELECT available FROM wallets WHERE user_id = :u AND currency = :c"),
                {"u": user_id, "c": currency},
            )
        )


async def status_of(services: Services, deposit_id: int) -> str:
    async with services.ctx.db.engine.connect() as conn:
        return str(
            await conn.scalar(text("SELECT status FROM deposits WHERE id = :i"), {"i": deposit_id})
        )


async def notices(services: Services, kind: str) -> list[tuple[int, int | None]]:
    async with services.ctx.db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT chat_id, deposit_id FROM notifications WHERE kind = :k ORDER BY id"),
            {"k": kind},
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def invoiced(services: Services, user, amount: int = 25_00, invoice_id: int = 501):
    deposit = await services.deposits.open(user, "USDT", amount, PROVIDER)
    assert deposit.status == "creating"
    active = await services.deposits.activate(deposit.id, invoice_id, "https://t.me/pay", None)
    assert active is not None and active.status == "active"
    return active


async def test_a_paid_invoice_reported_many_times_at_once_is_credited_once(services: Services):
    alice = await services.user("alice_dep")
    deposit = await invoiced(services, alice)
    paid = Payment(deposit.invoice_id, "paid", "USDT", 25_00, "25")  # type: ignore[arg-type]

    outcomes = await asyncio.gather(*(services.deposits.settle(PROVIDER, paid) for _ in range(5)))

    assert sorted(o.value.outcome for o in outcomes) == ["credited"] + ["unchanged"] * 4
    assert await balance(services, alice.id) == 25_00
    assert await status_of(services, deposit.id) == "paid"
    assert await notices(services, "deposit_credited") == [(alice.telegram_id, deposit.id)]
    again = await services.deposits.settle(PROVIDER, paid)
    assert again.value.outcome == "unchanged" and await balance(services, alice.id) == 25_00


@pytest.mark.parametrize(
    ("asset", "amount"), [("TON", 25_00), ("USDT", 24_99), ("USDT", None)], ids=str
)
async def test_a_payment_not_as_invoiced_is_not_credited_and_the_admins_are_told(
    services: Services, asset, amount
):
    alice = await services.user("alice_mis")
    deposit = await invoiced(services, alice)
    paid = Payment(deposit.invoice_id, "paid", asset, amount, "24.99")  # type: ignore[arg-type]

    settled = await services.deposits.settle(PROVIDER, paid)

    assert settled.value.outcome == "mismatched"
    assert await balance(services, alice.id) == 0
    assert await status_of(services, deposit.id) == "mismatched"
    assert await notices(services, "deposit_mismatch") == [(ADMIN_TELEGRAM_ID, deposit.id)]
    assert await notices(services, "deposit_credited") == []


async def test_an_invoice_nobody_here_created_changes_nothing(services: Services):
    alice = await services.user("alice_unk")
    await invoiced(services, alice, invoice_id=777)
    settled = await services.deposits.settle(PROVIDER, Payment(778, "paid", "USDT", 25_00, "25"))
    assert settled.value == settled.value.__class__(None, "unknown")
    assert await balance(services, alice.id) == 0


async def test_an_expired_invoice_is_closed_and_a_late_payment_report_changes_nothing(
    services: Services,
):
    alice = await services.user("alice_exp")
    deposit = await invoiced(services, alice)
    expired = await services.deposits.settle(
        PROVIDER,
        Payment(deposit.invoice_id, "expired"),  # type: ignore[arg-type]
    )
    assert expired.value.outcome == "expired"
    assert await status_of(services, deposit.id) == "expired"
    late = await services.deposits.settle(
        PROVIDER,
        Payment(deposit.invoice_id, "paid", "USDT", 25_00, "25"),  # type: ignore[arg-type]
    )
    assert late.value.outcome == "unchanged" and await balance(services, alice.id) == 0


async def test_an_invoice_the_provider_refused_to_create_is_closed(services: Services):
    alice = await services.user("alice_ref")
    deposit = await services.deposits.open(alice, "USDT", 10_00, PROVIDER)
    await services.deposits.abandon(deposit.id)
    assert await status_of(services, deposit.id) == "failed"
    assert await services.deposits.unsettled(PROVIDER) == []


async def test_amounts_outside_the_currency_bounds_open_nothing(services: Services):
    alice = await services.user("alice_bad")
    with refuses(Exception, "The amount must be between", services.ctx.currencies):
        await services.deposits.open(alice, "USDT", 0, PROVIDER)
    assert await services.deposits.unsettled(PROVIDER) == []


@pytest.fixture
def limited(services: Services):
    """USDT limited to 50.00 deposited and 30.00 withdrawn per user and day."""
    code = "USDT"
    money = services.ctx.currencies[code]
    capped = msgspec.structs.replace(
        money, deposit_limit_per_day=50_00, withdrawal_limit_per_day=30_00
    )
    table = services.ctx.currencies._by_code  # the services share this table
    table[code] = capped
    yield capped
    table[code] = money


async def test_deposits_over_the_daily_limit_are_refused_and_open_nothing(
    services: Services, limited
):
    alice = await services.user("alice_cap")
    await services.deposits.open(alice, "USDT", 30_00, PROVIDER)
    with refuses(
        InvalidInput, r"limit of 50.00 USDT a day: 20.00 USDT left", services.ctx.currencies
    ):
        await services.deposits.open(alice, "USDT", 20_01, PROVIDER)
    opened = await services.deposits.open(alice, "USDT", 20_00, PROVIDER)  # exactly the rest
    await services.deposits.abandon(opened.id)  # refused by the provider: not counted
    await services.deposits.open(alice, "USDT", 20_00, PROVIDER)
    assert len(await services.deposits.unsettled(PROVIDER)) == 2


async def test_withdrawals_over_the_daily_limit_are_refused_and_hold_nothing(
    services: Services, limited
):
    alice = await services.user("alice_wcap", funds={"USDT": 100_00})
    await services.wallets.request_withdrawal(alice, "USDT", 25_00, "addr")
    with refuses(
        InvalidInput, r"limit of 30.00 USDT a day: 5.00 USDT left", services.ctx.currencies
    ):
        await services.wallets.request_withdrawal(alice, "USDT", 6_00, "addr")
    assert await balance(services, alice.id) == 75_00


async def test_withdrawals_at_once_cannot_pass_the_daily_limit_together(
    services: Services, limited
):
    """Ten requests of 10.00 at once against 30.00 a day: three are held."""
    alice = await services.user("alice_wrace", funds={"USDT": 200_00})
    results = await asyncio.gather(
        *(services.wallets.request_withdrawal(alice, "USDT", 10_00, f"addr{i}") for i in range(10)),
        return_exceptions=True,
    )
    held = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, InvalidInput)]
    assert (len(held), len(refused)) == (3, 7), results
    assert await balance(services, alice.id) == 170_00


async def test_deposits_at_once_cannot_pass_the_daily_limit_together(services: Services, limited):
    """Ten deposit forms of 10.00 at once against 50.00 a day: five open."""
    alice = await services.user("alice_drace")
    results = await asyncio.gather(
        *(services.deposits.open(alice, "USDT", 10_00, PROVIDER) for _ in range(10)),
        return_exceptions=True,
    )
    opened = [r for r in results if not isinstance(r, BaseException)]
    assert len(opened) == 5, results
    assert len(await services.deposits.unsettled(PROVIDER)) == 5
