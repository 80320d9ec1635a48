"""Payments, safe by default: with a Telegram token nobody can raise their own
balance unless the operator says so. "none" offers no self-service deposit
and says how funds arrive; "demo" with a token refuses to start unless
allowed, and then every balance screen says it is play money."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator

import msgspec
import pytest
from sqlalchemy import text

from bot.config import Config, PaymentsSettings, load_config
from bot.runtime.app import App, build_app
from bot.runtime.run import Replica
from bot.sim import FakeTelegram, SimulatedUser
from tests.conftest import ADMIN_TELEGRAM_ID
from tests.runtime.test_polling_and_startup import PollingTelegram

_ids = itertools.count(90_000)
PLAY_MONEY = "🎲 Demo: balances here are play money, not real funds."  # as shown (no tags)
TOKEN = "123456:TEST-payments"


def with_token(config: Config, **payments: object) -> Config:
    return msgspec.structs.replace(
        config,
        telegram=msgspec.structs.replace(config.telegram, token=TOKEN),
        escrow=msgspec.structs.replace(config.escrow, admins=(ADMIN_TELEGRAM_ID,)),
        payments=PaymentsSettings(**payments),  # type: ignore[arg-type]
    )


@pytest.fixture
async def token_app(request, replica_config) -> AsyncIterator[App]:
    app = await build_app(with_token(replica_config, **request.param), session=FakeTelegram())
    yield app
    await app.aclose()


def person(app: App) -> SimulatedUser:
    telegram = app.bot.session
    assert isinstance(telegram, FakeTelegram)
    return SimulatedUser(telegram, app.bot, app.dispatcher, user_id=next(_ids), first_name="Pat")


async def ledger_deposits(app: App) -> int:
    async with app.database.engine.connect() as conn:
        count = await conn.scalar(
            text(
                "SELECT count(DISTINCT idempotency_key) FROM ledger_entries WHERE kind = 'deposit'"
            )
        )
    return int(count or 0)


def test_the_shipped_configuration_takes_no_self_service_deposits():
    config = load_config(environ={})
    assert config.payments.provider == "none"
    assert config.payments.allow_demo is False


@pytest.mark.parametrize("token_app", [{}], indirect=True)
async def test_with_a_token_and_no_payments_nobody_can_raise_their_own_balance(token_app):
    pat = person(token_app)
    await pat.send("/wallet")
    assert PLAY_MONEY not in pat.last.text
    await pat.press("➕ Deposit")
    await pat.press("USDT")
    assert "takes no USDT deposits by itself" in pat.last.text
    assert "admins" in pat.last.text
    assert pat.buttons() == ["« Wallet"]  # no amount form to type into
    typed = await pat.send("1000")
    assert "didn't understand" in typed.texts[0]
    assert await ledger_deposits(token_app) == 0


@pytest.mark.parametrize("token_app", [{"provider": "demo", "allow_demo": True}], indirect=True)
async def test_demo_allowed_with_a_token_says_play_money_on_every_balance_screen(token_app):
    pat = person(token_app)
    await pat.send("/start")
    assert PLAY_MONEY in pat.last.text
    await pat.send("/wallet")
    assert PLAY_MONEY in pat.last.text
    await pat.press("➕ Deposit")
    await pat.press("USDT")
    assert "Demo mode" in pat.last.text and "No real money" in pat.last.text
    await pat.send("10")
    assert PLAY_MONEY in pat.last.text  # the wallet under the credited result
    assert await ledger_deposits(token_app) == 1


async def test_demo_with_a_token_refuses_to_start_and_says_what_to_set(replica_config, caplog):
    config = with_token(replica_config, provider="demo")
    session = PollingTelegram()
    replica = Replica(config, session=session)
    with caplog.at_level(logging.ERROR, logger="bot.runtime.run"):
        assert await asyncio.wait_for(replica.run(), 20) == 1
    (refusal,) = [r.getMessage() for r in caplog.records if r.name == "bot.runtime.run"]
    assert refusal.startswith('cannot start: payments: provider = "demo"')
    assert "ESCROW__PAYMENTS__ALLOW_DEMO=true" in refusal and 'provider = "none"' in refusal
    assert session.requests == [] and replica.app is None


async def test_demo_allowed_with_a_token_starts_with_a_loud_warning(replica_config, caplog):
    config = with_token(replica_config, provider="demo", allow_demo=True)
    replica = Replica(config, session=PollingTelegram())
    with caplog.at_level(logging.WARNING, logger="bot.runtime.run"):
        task = asyncio.create_task(replica.run())
        try:
            await asyncio.wait_for(replica.ready.wait(), 20)
        finally:
            replica.stop()
            assert await asyncio.wait_for(task, 20) == 0
    assert any("DEMO PAYMENTS with a real Telegram token" in r.getMessage() for r in caplog.records)
