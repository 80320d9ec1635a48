"""The Crypto Pay client against the fake server: every method, exact amounts,
refusals told apart from unknown outcomes, webhook signatures, and transfers
that happen once per spend_id."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from bot.payments import (
    SIGNATURE_HEADER,
    CryptoPayClient,
    CryptoPayError,
    CryptoPayUnavailable,
    ErrorName,
    InexactAmount,
    InvoiceStatus,
    from_minor_units,
    parse_webhook_update,
    to_minor_units,
    verify_signature,
)
from tests.payments.fake_cryptopay import TOKEN, FakeCryptoPay, Fault, sign

TIMEOUT = 0.5


@pytest.fixture
async def fake() -> AsyncIterator[FakeCryptoPay]:
    async with FakeCryptoPay(balances={"USDT": "100", "BTC": "0.5"}) as server:
        yield server


@pytest.fixture
async def client(fake: FakeCryptoPay) -> AsyncIterator[CryptoPayClient]:
    async with CryptoPayClient(TOKEN, base_url=fake.base_url, timeout=TIMEOUT) as api:
        yield api


# -- methods --------------------------------------------------------------------


async def test_get_me_names_the_app(client, fake):
    app = await client.get_me()
    assert app.app_id == 4242
    assert app.payment_processing_bot_username == "CryptoTestnetBot"
    assert fake.calls_to("getMe")[0].fault is None


async def test_create_invoice_sends_a_decimal_string_and_reads_the_invoice(client, fake):
    invoice = await client.create_invoice(
        "USDT", Decimal("12.50"), payload="deposit:7", expires_in=900, description="Top up"
    )
    assert fake.calls_to("createInvoice")[0].params == {
        "asset": "USDT",
        "amount": "12.50",
        "payload": "deposit:7",
        "expires_in": 900,
        "description": "Top up",
    }
    assert invoice.status == InvoiceStatus.ACTIVE
    assert invoice.asset == "USDT"
    assert invoice.amount == Decimal("12.5")
    assert to_minor_units(invoice.amount, 2) == 1250
    assert invoice.payload == "deposit:7"
    assert invoice.description == "Top up"
    assert invoice.url is not None and invoice.url.startswith("https://t.me/")
    assert invoice.created_at is not None and invoice.expiration_date is not None
    assert (invoice.expiration_date - invoice.created_at).total_seconds() == 900
    assert invoice.paid_amount is None


async def test_create_invoice_refuses_what_it_cannot_send_before_any_call(client, fake):
    with pytest.raises(TypeError):
        await client.create_invoice("USDT", 12.5, payload="p", expires_in=60)  # type: ignore[arg-type]
    with pytest.raises(InexactAmount):
        await client.create_invoice("USDT", "0", payload="p", expires_in=60)
    with pytest.raises(InexactAmount):
        await client.create_invoice("USDT", "NaN", payload="p", expires_in=60)
    with pytest.raises(ValueError):
        await client.create_invoice("USDT", "1", payload="p", expires_in=0)
    assert fake.calls == []


async def test_an_invoice_is_paid_in_its_asset_or_another(client, fake):
    first = await client.create_invoice("USDT", "10", payload="a", expires_in=60)
    second = await client.create_invoice("USDT", "20", payload="b", expires_in=60)
    fake.pay(first.invoice_id)
    fake.pay(second.invoice_id, asset="BTC", amount="0.00031337")

    by_id = {
        i.invoice_id: i
        for i in await client.get_invoices(invoice_ids=[first.invoice_id, second.invoice_id])
    }
    assert by_id[first.invoice_id].status == InvoiceStatus.PAID
    assert by_id[first.invoice_id].paid_asset == "USDT"
    assert to_minor_units(by_id[first.invoice_id].paid_amount, 2) == 10_00
    assert by_id[second.invoice_id].paid_asset == "BTC"
    assert to_minor_units(by_id[second.invoice_id].paid_amount, 8) == 31_337
    assert by_id[second.invoice_id].paid_at is not None
    assert fake.balance("USDT") == Decimal("110")


async def test_invoices_filtered_by_status_and_an_expired_one(client, fake):
    paid = await client.create_invoice("USDT", "1", payload="p", expires_in=60)
    gone = await client.create_invoice("USDT", "2", payload="g", expires_in=60)
    open_ = await client.create_invoice("USDT", "3", payload="o", expires_in=60)
    fake.pay(paid.invoice_id)
    fake.expire(gone.invoice_id)

    assert [i.invoice_id for i in await client.get_invoices(status="paid")] == [paid.invoice_id]
    assert [i.invoice_id for i in await client.get_invoices(status="active")] == [open_.invoice_id]
    [expired] = await client.get_invoices(invoice_ids=[gone.invoice_id])
    assert expired.status == InvoiceStatus.EXPIRED
    assert fake.calls_to("getInvoices")[-1].params == {"invoice_ids": str(gone.invoice_id)}


async def test_an_empty_id_list_asks_nothing_and_finds_nothing(client, fake):
    await client.create_invoice("USDT", "1", payload="p", expires_in=60)
    assert await client.get_invoices(invoice_ids=[]) == []
    assert await client.get_transfers(transfer_ids=[]) == []
    assert fake.calls_to("getInvoices") == fake.calls_to("getTransfers") == []


async def test_transfer_debits_the_balance_and_is_found_by_its_spend_id(client, fake):
    transfer = await client.transfer(
        777, "USDT", from_minor_units(2550, 2), "w-1", comment="Payout"
    )
    assert fake.calls_to("transfer")[0].params == {
        "user_id": 777,
        "asset": "USDT",
        "amount": "25.50",
        "spend_id": "w-1",
        "comment": "Payout",
    }
    assert transfer.status == "completed"
    assert transfer.user_id == 777
    assert transfer.spend_id == "w-1"
    assert to_minor_units(transfer.amount, 2) == 2550
    assert transfer.completed_at is not None
    assert fake.balance("USDT") == Decimal("74.5")

    [found] = await client.get_transfers(spend_id="w-1")
    assert found == transfer
    assert await client.get_transfers(spend_id="w-2") == []
    assert await client.get_transfers(transfer_ids=[transfer.transfer_id]) == [transfer]


async def test_a_spend_id_pays_once(client, fake):
    await client.transfer(777, "USDT", "10", "w-1")
    with pytest.raises(CryptoPayError) as refused:
        await client.transfer(777, "USDT", "10", "w-1")
    assert refused.value.name == ErrorName.SPEND_ID_ALREADY_USED
    assert refused.value.code == 400
    assert fake.balance("USDT") == Decimal("90")
    assert len(await client.get_transfers(spend_id="w-1")) == 1


async def test_a_transfer_beyond_the_balance_is_refused_and_moves_nothing(client, fake):
    with pytest.raises(CryptoPayError) as refused:
        await client.transfer(777, "USDT", "100.01", "w-1")
    assert refused.value.name == ErrorName.INSUFFICIENT_FUNDS
    assert fake.balance("USDT") == Decimal("100")
    assert await client.get_transfers(spend_id="w-1") == []


async def test_get_balance_per_asset_in_exact_minor_units(client, fake):
    balances = {b.currency_code: b for b in await client.get_balance()}
    assert to_minor_units(balances["USDT"].available, 2) == 100_00
    assert to_minor_units(balances["BTC"].available, 8) == 50_000_000
    assert balances["TON"].available == 0
    assert balances["USDT"].onhold == 0


# -- failures -------------------------------------------------------------------


async def test_a_wrong_token_is_a_refusal(fake):
    async with CryptoPayClient("1:wrong", base_url=fake.base_url, timeout=TIMEOUT) as api:
        with pytest.raises(CryptoPayError) as refused:
            await api.get_me()
    assert (refused.value.code, refused.value.name) == (401, ErrorName.UNAUTHORIZED)


@pytest.mark.parametrize("fault", [Fault.ERROR_500, Fault.HANG, Fault.MALFORMED])
async def test_an_answer_that_says_nothing_is_an_unknown_outcome_and_not_retried(
    client, fake, fault
):
    fake.fail_next("transfer", fault)
    started = time.monotonic()
    with pytest.raises(CryptoPayUnavailable):
        await client.transfer(777, "USDT", "1", "w-1")
    assert time.monotonic() - started < TIMEOUT + 1
    assert len(fake.calls_to("transfer")) == 1  # no retry inside the client
    assert fake.transfers == []
    # The fault is spent: the same spend_id goes through now, once.
    await client.transfer(777, "USDT", "1", "w-1")
    assert len(fake.transfers) == 1


async def test_a_transfer_whose_answer_was_lost_is_found_by_its_spend_id(client, fake):
    fake.fail_next("transfer", Fault.LOST_ANSWER)
    with pytest.raises(CryptoPayUnavailable):
        await client.transfer(777, "USDT", "5", "w-1")
    # It happened: reconciling by spend_id finds it, and sending again pays nothing.
    [done] = await client.get_transfers(spend_id="w-1")
    assert to_minor_units(done.amount, 2) == 500
    with pytest.raises(CryptoPayError) as refused:
        await client.transfer(777, "USDT", "5", "w-1")
    assert refused.value.name == ErrorName.SPEND_ID_ALREADY_USED
    assert fake.balance("USDT") == Decimal("95")


async def test_a_faulty_method_leaves_the_others_alone(client, fake):
    fake.fail_next("getBalance", Fault.ERROR_500, times=2)
    for _ in range(2):
        with pytest.raises(CryptoPayUnavailable):
            await client.get_balance()
    assert (await client.get_me()).app_id == 4242
    assert await client.get_balance()


@pytest.mark.parametrize(
    ("status", "body", "refusal"),
    [
        (
            400,
            b'{"ok":false,"error":{"code":400,"name":"AMOUNT_TOO_SMALL"}}',
            (400, "AMOUNT_TOO_SMALL"),
        ),
        (
            400,
            b'{"ok":false,"error":{"code":"400","name":"AMOUNT_TOO_SMALL"}}',
            (400, "AMOUNT_TOO_SMALL"),
        ),
        (
            200,
            b'{"ok":false,"error":{"code":400,"name":"AMOUNT_TOO_SMALL"}}',
            (400, "AMOUNT_TOO_SMALL"),
        ),
        (500, b'{"ok":false,"error":{"code":500,"name":"INTERNAL_ERROR"}}', None),
        (502, b"<html>bad gateway</html>", None),
        (403, b"<html>forbidden</html>", None),  # not Crypto Pay speaking
        (400, b'{"ok":false}', None),
        (200, b'{"ok":true}', None),
        (200, b'{"ok":true,"result":{"transfer_id":1}}', None),
        (
            200,
            b'{"ok":true,"result":{"transfer_id":1,"user_id":7,"asset":"USDT",'
            b'"amount":"x","status":"completed"}}',
            None,
        ),
        (200, b"", None),
    ],
)
async def test_only_crypto_pay_saying_no_is_a_refusal(client, fake, status, body, refusal):
    fake.answer_next("transfer", status, body)
    if refusal is None:
        with pytest.raises(CryptoPayUnavailable):
            await client.transfer(777, "USDT", "1", "w-1")
    else:
        with pytest.raises(CryptoPayError) as refused:
            await client.transfer(777, "USDT", "1", "w-1")
        assert (refused.value.code, refused.value.name) == refusal


async def test_a_server_that_is_not_there_is_an_unknown_outcome(fake):
    url = fake.base_url
    await fake.stop()
    async with CryptoPayClient(TOKEN, base_url=url, timeout=TIMEOUT) as api:
        with pytest.raises(CryptoPayUnavailable):
            await api.get_balance()


async def test_the_token_stays_out_of_reprs_and_errors(fake):
    secret = "98765:SECRET-never-shown"
    async with CryptoPayClient(secret, base_url=fake.base_url, timeout=TIMEOUT) as api:
        with pytest.raises(CryptoPayError) as refused:
            await api.get_me()
        fake.fail_next("getMe", Fault.HANG)
        with pytest.raises(CryptoPayUnavailable) as unknown:
            await api.get_me()
    for shown in (repr(api), str(api), str(refused.value), str(unknown.value)):
        assert "SECRET" not in shown


# -- amounts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "decimals", "minor"),
    [
        ("12.5", 2, 1250),
        ("12.50", 2, 1250),
        ("0.00000001", 8, 1),
        ("1E-8", 8, 1),
        ("21000000", 8, 2_100_000_000_000_000),
        ("100", 0, 100),
        (Decimal("0.1"), 1, 1),
        (3, 2, 300),
    ],
)
def test_amounts_become_exact_minor_units(amount, decimals, minor):
    assert to_minor_units(amount, decimals) == minor


def test_an_amount_finer_than_the_currency_is_refused_or_rounded_down_on_request():
    with pytest.raises(InexactAmount):
        to_minor_units("0.129", 2)
    assert to_minor_units("0.129", 2, round_down=True) == 12
    assert to_minor_units("0.120", 2) == 12
    for not_an_amount in ("abc", "NaN", "Infinity", ""):
        with pytest.raises(InexactAmount):
            to_minor_units(not_an_amount, 2)
    with pytest.raises(TypeError):
        to_minor_units(0.1, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        from_minor_units(1.0, 2)  # type: ignore[arg-type]


def test_long_amounts_are_not_rounded_on_the_way():
    long = "123456789012345678901234567890.12"
    assert to_minor_units(long, 2) == 12345678901234567890123456789012
    assert from_minor_units(12345678901234567890123456789012, 2) == long
    with pytest.raises(InexactAmount):
        to_minor_units("1.00000000000000000000000000000001", 2)
    assert from_minor_units(-5, 2) == "-0.05"
    assert from_minor_units(7, 0) == "7"


@given(minor=st.integers(min_value=-(10**40), max_value=10**40), decimals=st.integers(0, 12))
def test_minor_units_round_trip_through_the_api_string(minor, decimals):
    text = from_minor_units(minor, decimals)
    assert "E" not in text.upper()
    assert to_minor_units(text, decimals) == minor


# -- webhooks -------------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list]]:
    """A bot endpoint that checks the signature and reads the update."""
    received: list = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if not verify_signature(TOKEN, body, request.headers.get(SIGNATURE_HEADER)):
            return web.Response(status=401)
        received.append(parse_webhook_update(body))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/cryptopay", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/cryptopay", received
    finally:
        await runner.cleanup()


async def test_a_signed_invoice_paid_update_is_read(client, fake, receiver):
    url, received = receiver
    invoice = await client.create_invoice("USDT", "7.25", payload="deposit:9", expires_in=60)
    fake.pay(invoice.invoice_id)
    assert await fake.send_webhook(url, invoice.invoice_id) == 200
    [update] = received
    assert update.update_type == "invoice_paid"
    assert update.payload.invoice_id == invoice.invoice_id
    assert update.payload.status == InvoiceStatus.PAID
    assert update.payload.payload == "deposit:9"
    assert to_minor_units(update.payload.paid_amount, 2) == 725


@pytest.mark.parametrize("signature", ["bad", "missing", "", "not-hex"])
async def test_an_unsigned_or_forged_update_is_turned_away(client, fake, receiver, signature):
    url, received = receiver
    invoice = await client.create_invoice("USDT", "1", payload="p", expires_in=60)
    fake.pay(invoice.invoice_id)
    assert await fake.send_webhook(url, invoice.invoice_id, signature=signature) == 401
    assert received == []


def test_signature_covers_the_exact_body():
    body = b'{"update_id":1,"update_type":"invoice_paid","payload":{"amount":"1"}}'
    good = sign(TOKEN, body)
    assert verify_signature(TOKEN, body, good)
    assert verify_signature(TOKEN, body, good.upper())
    assert not verify_signature(TOKEN, body.replace(b'"1"', b'"9"'), good)
    assert not verify_signature(TOKEN, body + b" ", good)
    assert not verify_signature("12345:another-token", body, good)
    assert not verify_signature(TOKEN, body, None)
    assert not verify_signature(TOKEN, body, "")
    assert not verify_signature(TOKEN, body, "é" * 64)


def test_a_body_that_is_not_an_update_is_refused():
    with pytest.raises(ValueError):
        parse_webhook_update(b'{"update_id":1}')
    with pytest.raises(ValueError):
        parse_webhook_update(b"not json")
