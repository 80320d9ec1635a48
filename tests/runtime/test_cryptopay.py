"""Deposits through Crypto Pay, from the wallet's button to the credited
balance, against a fake Crypto Pay server (tests/payments/fake_cryptopay.py):
the webhook (signed; forged, repeated, concurrent, for someone else's invoice,
paid otherwise), the reconciler when no webhook comes, and Crypto Pay failing
to make the invoice. After each test the ledger, the deposits table and the
provider's balance agree."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal

import msgspec
import pytest
from aiohttp import web
from prometheus_client import generate_latest
from sqlalchemy import text

from bot.config import PaymentsSettings
from bot.payments.deposits import CryptoPayDeposits, webhook_handler
from bot.runtime.app import App, build_app
from bot.runtime.run import Replica
from bot.sim import FakeTelegram, SimulatedUser
from bot.telegram.handlers.deposit import invoice_description
from bot.telegram.i18n import Catalogs
from db.sql.notifications import NOTICE_COLUMNS, Notice
from tests.conftest import ADMIN_TELEGRAM_ID
from tests.payments.fake_cryptopay import TOKEN, FakeCryptoPay, Fault
from tests.runtime.test_polling_and_startup import PollingTelegram
from tests.runtime.test_webhook import free_port, start

_ids = itertools.count(95_000)


@pytest.fixture
async def cryptopay() -> AsyncIterator[FakeCryptoPay]:
    async with FakeCryptoPay(TOKEN, hang_seconds=5.0) as fake:
        yield fake


@pytest.fixture
async def app(replica_config, cryptopay: FakeCryptoPay) -> AsyncIterator[App]:
    config = msgspec.structs.replace(
        replica_config,
        telegram=msgspec.structs.replace(replica_config.telegram, token="123456:TEST-cp"),
        escrow=msgspec.structs.replace(replica_config.escrow, admins=(ADMIN_TELEGRAM_ID,)),
        payments=PaymentsSettings(
            provider="cryptopay",
            cryptopay_api_base=cryptopay.base_url,
            cryptopay_token=TOKEN,
            cryptopay_timeout_seconds=1.0,
        ),
    )
    app = await build_app(config, session=FakeTelegram())
    yield app
    await books_agree(app, cryptopay)
    await app.aclose()


@asynccontextmanager
async def serving_webhook(app: App) -> AsyncIterator[str]:
    """Crypto Pay's webhook of `app`, served as the replica serves it (bot/runtime/webhook.py)."""
    deposits = app.deposits
    assert isinstance(deposits, CryptoPayDeposits)
    web_app = web.Application()
    web_app.router.add_post("/cryptopay", webhook_handler(deposits))
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/cryptopay"
    finally:
        await runner.cleanup()


@pytest.fixture
async def webhook_url(app: App) -> AsyncIterator[str]:
    async with serving_webhook(app) as url:
        yield url


async def books_agree(app: App, cryptopay: FakeCryptoPay) -> None:
    """Once the reconciler has run (a webhook may have been refused, or never
    come): ledger deposits = deposits paid here = what reached the provider
    as invoiced on our invoices; ledger payouts = the provider's transfers."""
    deposits = app.deposits
    assert isinstance(deposits, CryptoPayDeposits)
    await deposits.reconcile()
    async with app.database.engine.connect() as conn:
        in_ledger = await conn.scalar(
            text(
                "SELECT coalesce(sum(amount), 0) FROM ledger_entries"
                " WHERE kind = 'deposit' AND account = 'available' AND currency = 'USDT'"
            )
        )
        paid_here = await conn.scalar(
            text("SELECT coalesce(sum(amount - fee), 0) FROM deposits WHERE status = 'paid'")
        )
    paid_at_provider = sum(
        Decimal(i["paid_amount"]) - Decimal(i["fee_amount"])
        for i in cryptopay.invoices.values()
        if i["status"] == "paid"
        and i.get("payload") is not None  # ours: the payload is our deposit's id
        and i.get("paid_asset") == "USDT"
        and i["amount"] == i["paid_amount"]
    )
    assert in_ledger == paid_here == int(paid_at_provider * 100)
    # and out: what the ledger paid out is what Crypto Pay transferred, once each
    async with app.database.engine.connect() as conn:
        paid_out = await conn.scalar(
            text(
                "SELECT coalesce(sum(amount), 0) FROM ledger_entries"
                " WHERE kind = 'withdrawal' AND account = 'external' AND currency = 'USDT'"
            )
        )
    transferred = sum(Decimal(t["amount"]) for t in cryptopay.transfers if t["asset"] == "USDT")
    assert paid_out == int(transferred * 100)
    assert len({t["spend_id"] for t in cryptopay.transfers}) == len(cryptopay.transfers)
    # and the provider's balance is what users hold through it, plus what was
    # paid in but not credited (not as invoiced, or not our invoice)
    uncredited = sum(
        Decimal(i["paid_amount"]) - Decimal(i["fee_amount"])
        for i in cryptopay.invoices.values()
        if i["status"] == "paid"
        and i.get("paid_asset") == "USDT"
        and (i.get("payload") is None or i["amount"] != i["paid_amount"])
    )
    assert cryptopay.balance("USDT") == Decimal(in_ledger - paid_out) / 100 + uncredited


def person(app: App) -> SimulatedUser:
    telegram = app.bot.session
    assert isinstance(telegram, FakeTelegram)
    return SimulatedUser(telegram, app.bot, app.dispatcher, user_id=next(_ids), first_name="Dee")


async def invoice_for(user: SimulatedUser, cryptopay: FakeCryptoPay, amount: str = "25") -> int:
    """Through the wallet's buttons to a payment link; the invoice behind it."""
    await user.send("/wallet")
    await user.press("➕ Deposit")
    await user.press("USDT")
    assert "@CryptoBot" in user.last.text
    await user.send(amount)
    assert f"pay {amount}.00 USDT" in user.last.text
    markup = user.last.message.reply_markup
    assert markup is not None
    pay = markup.inline_keyboard[0][0]
    assert pay.text == f"💳 Pay {amount}.00 USDT"
    newest = max(cryptopay.invoices)
    assert pay.url == cryptopay.invoices[newest]["bot_invoice_url"]
    return newest


async def available(app: App, user: SimulatedUser) -> int:
    async with app.database.engine.connect() as conn:
        return int(
            await conn.scalar(
                text(
                    "SELECT w.available FROM wallets w JOIN users u ON u.id = w.user_id"
                    " WHERE u.telegram_id = :t AND w.currency = 'USDT'"
                ),
                {"t": user.id},
            )
            or 0
        )


async def test_a_paid_invoice_is_credited_through_the_webhook_and_the_owner_told(
    app, cryptopay, webhook_url
):
    dee = person(app)
    invoice = await invoice_for(dee, cryptopay)
    made = cryptopay.invoices[invoice]  # what @CryptoBot shows the payer: its deposit
    assert made["description"] == f"Deposit #{made['payload']} to your escrow wallet"
    assert await available(app, dee) == 0  # nothing before it is paid
    cryptopay.pay(invoice)

    assert await cryptopay.send_webhook(webhook_url, invoice) == 200

    assert await available(app, dee) == 25_00
    assert dee.last.text.startswith("✅ Your deposit of 25.00 USDT has arrived")
    await dee.send("/wallet")
    assert "25.00 USDT available" in dee.last.text  # the snapshot was invalidated


async def test_the_same_webhook_five_times_and_at_once_credits_once(app, cryptopay, webhook_url):
    dee = person(app)
    invoice = await invoice_for(dee, cryptopay)
    cryptopay.pay(invoice)
    statuses = await asyncio.gather(
        *(cryptopay.send_webhook(webhook_url, invoice) for _ in range(5))
    )
    assert statuses == [200] * 5
    assert await cryptopay.send_webhook(webhook_url, invoice) == 200
    assert await available(app, dee) == 25_00
    told = [m for m in dee.messages if m.text.startswith("✅ Your deposit")]
    assert len(told) == 1
    scrape = generate_latest(app.metrics.registry).decode()
    assert 'escrow_cryptopay_deposits_total{outcome="credited"} 1.0' in scrape
    assert 'escrow_cryptopay_deposits_total{outcome="unchanged"} 5.0' in scrape


async def test_the_webhook_and_the_reconciler_crediting_at_once_credit_once(
    app, cryptopay, webhook_url
):
    dee = person(app)
    invoice = await invoice_for(dee, cryptopay)
    cryptopay.pay(invoice)
    deposits = app.deposits
    assert isinstance(deposits, CryptoPayDeposits)
    status, _ = await asyncio.gather(
        cryptopay.send_webhook(webhook_url, invoice), deposits.reconcile()
    )
    assert status == 200
    assert await available(app, dee) == 25_00
    assert deposits.counts.get("credited") == 1


@pytest.mark.parametrize("signature", ["bad", "missing"])
async def test_a_forged_or_unsigned_webhook_is_refused_and_changes_nothing(
    app, cryptopay, webhook_url, signature
):
    dee = person(app)
    invoice = await invoice_for(dee, cryptopay)
    cryptopay.pay(invoice)
    assert await cryptopay.send_webhook(webhook_url, invoice, signature=signature) == 401
    assert await available(app, dee) == 0
    async with app.database.engine.connect() as conn:
        status = await conn.scalar(text("SELECT status FROM deposits"))
    assert status == "active"


async def test_a_webhook_for_an_invoice_we_never_created_changes_nothing(
    app, cryptopay, webhook_url
):
    dee = person(app)
    await invoice_for(dee, cryptopay)
    stranger = cryptopay._create_invoice({"asset": "USDT", "amount": "50"})["invoice_id"]
    cryptopay.pay(stranger)
    assert await cryptopay.send_webhook(webhook_url, stranger) == 200  # acknowledged, ignored
    assert await available(app, dee) == 0
    deposits = app.deposits
    assert isinstance(deposits, CryptoPayDeposits) and deposits.counts.get("unknown") == 1


@pytest.mark.parametrize(("asset", "amount"), [("TON", "25"), ("USDT", "24.99")], ids=str)
async def test_paid_otherwise_is_not_credited_and_the_admins_are_told(
    app, cryptopay, webhook_url, asset, amount
):
    dee = person(app)
    invoice = await invoice_for(dee, cryptopay)
    cryptopay.pay(invoice, asset=asset, amount=amount)
    assert await cryptopay.send_webhook(webhook_url, invoice) == 200
    assert await available(app, dee) == 0
    async with app.database.engine.connect() as conn:
        status = await conn.scalar(text("SELECT status FROM deposits"))
        alert = await conn.scalar(
            text("SELECT chat_id FROM notifications WHERE kind = 'deposit_mismatch'")
        )
    assert status == "mismatched" and alert == ADMIN_TELEGRAM_ID
    # the alert, as the outbox worker renders it for the admins
    async with app.database.engine.connect() as conn:
        row = (
            await conn.execute(
                text(f"SELECT {NOTICE_COLUMNS} FROM notifications WHERE kind = 'deposit_mismatch'")
            )
        ).one()
    notice = msgspec.convert(dict(row._mapping), Notice)
    chat, said, _ = app.outbox.notices.render(notice, await app.services.outbox.subjects([notice]))
    assert chat == ADMIN_TELEGRAM_ID
    assert f"was paid as {amount} {asset}, not the invoiced 25.00 USDT" in said
    assert "Dee" in said and str(dee.id) in said and "not credited" in said


async def test_without_a_webhook_the_reconciler_credits_a_paid_invoice_and_closes_an_expired_one(
    app, cryptopay
):
    dee, eve = person(app), person(app)
    paid = await invoice_for(dee, cryptopay)
    expired = await invoice_for(eve, cryptopay, "30")
    cryptopay.pay(paid)
    cryptopay.expire(expired)
    deposits = app.deposits
    assert isinstance(deposits, CryptoPayDeposits)

    settled = await deposits.reconcile()

    assert sorted(s.value.outcome for s in settled) == ["credited", "expired"]
    assert await available(app, dee) == 25_00 and await available(app, eve) == 0
    assert dee.last.text.startswith("✅ Your deposit of 25.00 USDT has arrived")
    assert [s.value.outcome for s in await deposits.reconcile()] == []  # nothing open


@pytest.mark.parametrize("fault", [Fault.ERROR_500, Fault.HANG, Fault.MALFORMED])
async def test_crypto_pay_failing_to_make_the_invoice_is_said_and_the_form_stays(
    app, cryptopay, fault
):
    dee = person(app)
    await dee.send("/wallet")
    await dee.press("➕ Deposit")
    await dee.press("USDT")
    cryptopay.fail_next("createInvoice", fault)
    failed = await dee.send("25")
    assert any("could not create the payment link" in t for t in failed.texts)
    assert any("Nothing was charged" in t for t in failed.texts)
    async with app.database.engine.connect() as conn:
        statuses = (await conn.execute(text("SELECT status FROM deposits"))).scalars().all()
    assert statuses == ["failed"]
    await dee.send("25")  # the form is still open: typed again, it works
    markup = dee.last.message.reply_markup
    assert markup is not None and markup.inline_keyboard[0][0].text == "💳 Pay 25.00 USDT"


async def test_an_amount_outside_the_bounds_asks_again_and_makes_no_invoice(app, cryptopay):
    dee = person(app)
    await dee.send("/wallet")
    await dee.press("➕ Deposit")
    await dee.press("USDT")
    await dee.send("0.001")
    assert cryptopay.calls_to("createInvoice") == []
    await dee.send("abc")
    assert cryptopay.calls_to("createInvoice") == []
    await dee.send("2000000")
    assert "The maximum is 1,000,000.00 USDT" in dee.last.text
    assert cryptopay.calls_to("createInvoice") == []


async def test_a_webhook_replica_serves_crypto_pay_on_its_own_path(replica_config, cryptopay):
    """The whole replica: Crypto Pay's signed webhook on the webhook listener,
    next to Telegram's (whose secret it does not need)."""
    config = msgspec.structs.replace(
        replica_config,
        payments=PaymentsSettings(
            provider="cryptopay",
            cryptopay_api_base=cryptopay.base_url,
            cryptopay_token=TOKEN,
            cryptopay_webhook_path="/cp-hook",
        ),
    )
    running = await start(config, FakeTelegram())
    try:
        app = running.replica.app
        assert app is not None
        dee = person(app)
        invoice = await invoice_for(dee, cryptopay)
        cryptopay.pay(invoice)
        url = f"{running.url}/cp-hook"
        assert await cryptopay.send_webhook(url, invoice, signature="bad") == 401
        assert await available(app, dee) == 0
        assert await cryptopay.send_webhook(url, invoice) == 200
        assert await available(app, dee) == 25_00
        await books_agree(app, cryptopay)
    finally:
        running.replica.stop()
        assert await running.task == 0


async def test_crypto_pay_without_its_token_refuses_to_start_and_says_what_to_set(
    replica_config, caplog
):
    config = msgspec.structs.replace(
        replica_config,
        telegram=msgspec.structs.replace(replica_config.telegram, token="123456:TEST-cp"),
        escrow=msgspec.structs.replace(replica_config.escrow, admins=(ADMIN_TELEGRAM_ID,)),
        payments=PaymentsSettings(provider="cryptopay"),
    )
    replica = Replica(config, session=PollingTelegram())
    with caplog.at_level(logging.ERROR, logger="bot.runtime.run"):
        assert await asyncio.wait_for(replica.run(), 20) == 1
    (refusal,) = [r.getMessage() for r in caplog.records if r.name == "bot.runtime.run"]
    assert "ESCROW__PAYMENTS__CRYPTOPAY_TOKEN" in refusal
    assert replica.app is None


# -- payouts ----------------------------------------------------------------------------


def admin_of(app: App) -> SimulatedUser:
    telegram = app.bot.session
    assert isinstance(telegram, FakeTelegram)
    return SimulatedUser(
        telegram, app.bot, app.dispatcher, user_id=ADMIN_TELEGRAM_ID, first_name="Ada"
    )


async def funded(app: App, cryptopay: FakeCryptoPay, amount: str = "25") -> SimulatedUser:
    """A user with `amount` USDT deposited through Crypto Pay."""
    dee = person(app)
    invoice = await invoice_for(dee, cryptopay, amount)
    cryptopay.pay(invoice)
    deposits = app.deposits
    assert isinstance(deposits, CryptoPayDeposits)
    await deposits.reconcile()
    return dee


async def requested(app: App, dee: SimulatedUser, amount: str = "10") -> int:
    """Through the wallet's buttons (no address asked: it is paid to the user's
    @CryptoBot wallet); the withdrawal's id."""
    await dee.send("/wallet")
    await dee.press("➖ Withdraw")
    left = await available(app, dee)
    await dee.press(f"USDT · {left // 100}.{left % 100:02d} USDT")  # with what is available
    await dee.send(amount)
    assert "your @CryptoBot wallet" in dee.last.text
    await dee.press("✅ Confirm withdrawal")
    async with app.database.engine.connect() as conn:
        return int(await conn.scalar(text("SELECT max(id) FROM withdrawals")))


async def withdrawal_status(app: App, withdrawal_id: int) -> tuple[str, int, int]:
    async with app.database.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT w.status, wa.available, wa.held FROM withdrawals w"
                    " JOIN wallets wa ON wa.user_id = w.user_id AND wa.currency = w.currency"
                    " WHERE w.id = :i"
                ),
                {"i": withdrawal_id},
            )
        ).one()
    return row.status, row.available, row.held


async def approve(admin: SimulatedUser, withdrawal_id: int) -> str:
    await admin.send("/admin")
    await admin.press("🏦 Pending withdrawals")
    await admin.press(f"✅ Approve #{withdrawal_id}")
    assert "sent now from the Crypto Pay app's balance" in admin.last.text
    result = await admin.press("✅ Yes, pay it through @CryptoBot")
    return "\n".join(result.texts)  # the decision, and any alert it raised


async def test_an_approved_withdrawal_is_paid_by_transfer_to_the_users_cryptobot_wallet(
    app, cryptopay
):
    dee = await funded(app, cryptopay)
    withdrawal_id = await requested(app, dee)
    assert await withdrawal_status(app, withdrawal_id) == ("pending", 15_00, 10_00)

    said = await approve(admin_of(app), withdrawal_id)

    assert f"✅ Withdrawal #{withdrawal_id} paid: 10.00 USDT" in said
    (transfer,) = cryptopay.transfers
    assert transfer["user_id"] == dee.id and transfer["asset"] == "USDT"
    assert Decimal(transfer["amount"]) == Decimal("10")
    assert transfer["spend_id"] == f"withdrawal-{withdrawal_id}"
    assert await withdrawal_status(app, withdrawal_id) == ("paid", 15_00, 0)
    assert dee.last.text.startswith(f"✅ Your withdrawal #{withdrawal_id} of 10.00 USDT was sent")
    assert cryptopay.balance("USDT") == Decimal("15")  # 25 paid in, 10 sent out


async def test_a_transfer_whose_answer_was_lost_is_settled_without_paying_twice(app, cryptopay):
    dee = await funded(app, cryptopay)
    withdrawal_id = await requested(app, dee)
    cryptopay.fail_next("transfer", Fault.LOST_ANSWER)

    said = await approve(admin_of(app), withdrawal_id)

    assert "did not confirm the transfer yet" in said
    assert await withdrawal_status(app, withdrawal_id) == ("sending", 15_00, 10_00)
    payouts = app.payouts
    assert payouts is not None
    assert await payouts.reconcile(min_age=timedelta(0)) == 1  # type: ignore[attr-defined]
    assert len(cryptopay.transfers) == 1  # found by its spend id, not sent again
    assert await withdrawal_status(app, withdrawal_id) == ("paid", 15_00, 0)
    assert await payouts.reconcile(min_age=timedelta(0)) == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("fault", [Fault.ERROR_500, Fault.HANG, Fault.MALFORMED])
async def test_a_transfer_that_failed_before_sending_is_sent_once_by_the_reconciler(
    app, cryptopay, fault
):
    dee = await funded(app, cryptopay)
    withdrawal_id = await requested(app, dee)
    cryptopay.fail_next("transfer", fault)
    assert "did not confirm" in await approve(admin_of(app), withdrawal_id)
    assert cryptopay.transfers == []
    payouts = app.payouts
    assert payouts is not None
    assert await payouts.reconcile(min_age=timedelta(0)) == 1  # type: ignore[attr-defined]
    assert len(cryptopay.transfers) == 1
    assert await withdrawal_status(app, withdrawal_id) == ("paid", 15_00, 0)


async def test_a_refused_transfer_fails_the_withdrawal_and_gives_the_money_back(app, cryptopay):
    dee = await funded(app, cryptopay)
    withdrawal_id = await requested(app, dee)
    cryptopay.set_balance("USDT", "5")  # the app's balance ran short

    said = await approve(admin_of(app), withdrawal_id)

    assert f"Crypto Pay refused withdrawal #{withdrawal_id}" in said  # the admin's screen
    assert "INSUFFICIENT_FUNDS" in said  # and the alert to the admins
    assert cryptopay.transfers == []
    assert await withdrawal_status(app, withdrawal_id) == ("failed", 25_00, 0)
    assert dee.last.text.startswith(f"↩️ Your withdrawal #{withdrawal_id} of 10.00 USDT could not")
    async with app.database.engine.connect() as conn:
        alert = await conn.scalar(
            text("SELECT note FROM notifications WHERE kind = 'payout_failed'")
        )
    assert alert == "INSUFFICIENT_FUNDS"
    cryptopay.set_balance("USDT", "25")  # the operator tops the app up again


async def test_two_replicas_paying_one_withdrawal_pay_it_once(app, cryptopay):
    dee = await funded(app, cryptopay)
    withdrawal_id = await requested(app, dee)
    payouts = app.payouts
    assert payouts is not None
    approved = await payouts.approve(await admin_snapshot(app), withdrawal_id)
    results = await asyncio.gather(
        payouts.pay(approved),
        payouts.pay(approved),
        payouts.reconcile(min_age=timedelta(0)),  # type: ignore[attr-defined]
    )
    assert len(cryptopay.transfers) == 1
    assert await withdrawal_status(app, withdrawal_id) == ("paid", 15_00, 0)
    # settled by exactly one of them (whichever came first); the others found it done
    assert sum(r is not None for r in results[:2]) + results[2] == 1


async def admin_snapshot(app: App):
    await admin_of(app).send("/start")
    snapshot = await app.cache.cache.get(ADMIN_TELEGRAM_ID)
    assert snapshot is not None
    return snapshot


async def test_a_deposit_over_the_daily_limit_is_refused_before_any_invoice(app, cryptopay):
    table = app.services.ctx.currencies._by_code  # what handlers and services read
    usdt = table["USDT"]
    table["USDT"] = msgspec.structs.replace(usdt, deposit_limit_per_day=40_00)
    try:
        dee = person(app)
        await invoice_for(dee, cryptopay, "25")  # the form closes with its invoice
        await dee.send("/wallet")
        await dee.press("➕ Deposit")
        await dee.press("USDT")
        refused = await dee.send("20")
        assert any(
            "over your deposit limit of 40.00 USDT a day: 15.00 USDT left" in t
            for t in refused.texts
        )
        assert len(cryptopay.calls_to("createInvoice")) == 1
        await dee.send("15")  # what is left, in the same form
        assert len(cryptopay.calls_to("createInvoice")) == 2
    finally:
        table["USDT"] = usdt


async def test_one_invoice_reported_to_two_replicas_at_once_is_credited_once(
    app, cryptopay, webhook_url
):
    other = await build_app(app.config, session=app.bot.session)  # a second replica
    try:
        async with serving_webhook(other) as other_url:
            dee = person(app)
            invoice = await invoice_for(dee, cryptopay)
            cryptopay.pay(invoice)
            urls = [webhook_url, other_url] * 3
            statuses = await asyncio.gather(*(cryptopay.send_webhook(u, invoice) for u in urls))
            assert statuses == [200] * 6
            assert await available(app, dee) == 25_00
            told = [m for m in dee.messages if m.text.startswith("✅ Your deposit")]
            assert len(told) == 1
    finally:
        await other.aclose()


async def test_a_withdrawal_up_to_the_auto_payout_amount_is_paid_without_an_admin(app, cryptopay):
    table = app.services.ctx.currencies._by_code
    usdt = table["USDT"]
    table["USDT"] = msgspec.structs.replace(usdt, auto_payout_up_to=10_00)
    try:
        dee = await funded(app, cryptopay)
        small = await requested(app, dee, "10")
        assert await withdrawal_status(app, small) == ("paid", 15_00, 0)
        told = [m.text for m in dee.messages if f"#{small}" in m.text]
        assert any("Status: ✅ sent to your @CryptoBot wallet" in t for t in told)
        assert any(
            t.startswith(f"✅ Your withdrawal #{small} of 10.00 USDT was sent") for t in told
        )
        large = await requested(app, dee, "10.01")
        assert await withdrawal_status(app, large) == ("pending", 4_99, 10_01)  # an admin's
        assert len(cryptopay.transfers) == 1
        async with app.database.engine.connect() as conn:
            decided_by = await conn.scalar(
                text("SELECT decided_by FROM withdrawals WHERE id = :i"), {"i": small}
            )
        assert decided_by is None  # nobody: the configured amount did
    finally:
        table["USDT"] = usdt


async def test_crypto_pays_fee_is_the_payers_the_wallet_gets_what_the_provider_holds(
    app, cryptopay, webhook_url
):
    dee = person(app)
    invoice = await invoice_for(dee, cryptopay)
    cryptopay.pay(invoice, fee="0.25")
    assert await cryptopay.send_webhook(webhook_url, invoice) == 200
    assert await available(app, dee) == 24_75
    assert dee.last.text == (
        "✅ Your deposit of 24.75 USDT has arrived: it is in your wallet."
        " (25.00 USDT paid, less Crypto Pay's fee of 0.25 USDT.)"
    )
    assert cryptopay.balance("USDT") == Decimal("24.75")  # the books agree (teardown too)


def test_the_invoice_is_described_in_the_payers_language() -> None:
    i18n = Catalogs()
    with i18n.context(), i18n.use_locale("ru"):
        assert invoice_description(7) == "Пополнение #7 вашего кошелька в эскроу-боте"
    assert invoice_description(7) == "Deposit #7 to your escrow wallet"  # English by default
