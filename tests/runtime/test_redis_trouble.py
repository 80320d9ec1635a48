"""Redis stopped, or hung (a proxy that accepts and never answers), under the
whole bot: presses are still answered, screens that only show something work
from Postgres, a typed wizard step is politely asked for again, a form can't
be opened, nothing is half-written; when Redis is back the wizard goes on
where it was. One replica, and two sharing the update stream (the user's lock
and the update dedup are in Redis too)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import msgspec
import pytest
from prometheus_client import generate_latest
from sqlalchemy import text

from bot.runtime.app import App, build_app
from bot.runtime.coordination import RedisUserLock
from bot.sim import FakeTelegram, SimulatedUser
from bot.telegram import texts
from bot.telegram.handlers.errors import UNEXPECTED
from cache.settings import RedisSettings
from tests.cache.proxy import TcpProxy

_ids = itertools.count(70_000)
SOMETHING_WENT_WRONG = UNEXPECTED.split(".")[0]
# Every update below is done within this, Redis or not (a hung Redis costs a
# command timeout, never a hang).
LIVELY = 3.0


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    upstream = urlsplit(redis_url)
    proxy = TcpProxy(upstream.hostname or "127.0.0.1", upstream.port or 6379)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture(params=[False, True], ids=["one-replica", "replicas"])
async def app(request, replica_config, proxy: TcpProxy, redis_url: str) -> AsyncIterator[App]:
    db = urlsplit(redis_url).path or "/0"
    config = msgspec.structs.replace(
        replica_config,
        redis=RedisSettings(url=f"redis://127.0.0.1:{proxy.port}{db}"),
        cache=msgspec.structs.replace(
            replica_config.cache, redis_timeout_ms=100, breaker_open_seconds=0.2
        ),
    )
    app = await build_app(config, session=FakeTelegram(), replicas=request.param)
    yield app
    await app.aclose()


async def deals(app: App) -> int:
    async with app.database.engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM escrows")) or 0)


async def lively(user: SimulatedUser, action: str, *, send: bool = False):
    async with asyncio.timeout(LIVELY):
        return await (user.send(action) if send else user.press(action))


@pytest.mark.parametrize("trouble", ["stopped", "hung"])
async def test_redis_trouble_keeps_the_bot_polite_and_changes_nothing(
    app: App, proxy: TcpProxy, trouble: str
) -> None:
    telegram = app.bot.session
    assert isinstance(telegram, FakeTelegram)
    person = SimulatedUser(telegram, app.bot, app.dispatcher, user_id=next(_ids), first_name="Ann")
    await person.send("/start")
    await person.send("/new")
    await person.press("I'm buying")
    if app.update_dedup is not None:  # its lease given back (after its reply) first
        await app.update_dedup.settled()

    if trouble == "stopped":
        await proxy.stop()
    else:
        proxy.blackhole()

    # a typed wizard step: not guessed, asked again; in one process, whose copy
    # of the form says which step it is, answered (this answer writes nothing)
    typed = await lively(person, "@nobody_here", send=True)
    if app.update_dedup is None:
        assert "Nobody on the bot is @nobody_here yet" in person.last.text
        # leaving the form is a write: said so, nothing written
        cancel = await lively(person, "✖️ Cancel")
        assert cancel.texts == [texts.FORM_UNAVAILABLE] and person.buttons() == ["« Menu"]
    else:
        assert typed.texts == [texts.MESSAGE_NOT_READ]
        assert person.buttons() == ["« Menu"]
    # presses are answered, and read-only screens come from Postgres
    menu = await lively(person, "« Menu")
    assert menu.answer is not None
    assert "Balance" in person.last.text
    wallet = await lively(person, "👛 Wallet")
    assert wallet.answer is not None
    assert "USDT" in person.last.text
    # a form can't be opened: said so, nothing written
    new = await lively(person, "➕ New deal")
    assert new.answer is not None
    assert person.last.text == texts.FORM_UNAVAILABLE
    for result in (typed, menu, wallet, new):
        assert not any(SOMETHING_WENT_WRONG in t for t in result.texts)
    assert await deals(app) == 0
    if isinstance(app.dispatcher.fsm.events_isolation, RedisUserLock):  # counted for operators
        scrape = generate_latest(app.metrics.registry).decode()
        assert 'escrow_user_lock_skipped_total{reason="unavailable_or_held"} 0.0' not in scrape
        assert "escrow_user_lock_skipped_total" in scrape

    if trouble == "stopped":
        await proxy.start()
    else:  # the partition heals: connections that hung are closed
        await proxy.stop()
        await proxy.start()
    await asyncio.sleep(0.3)  # past the breaker's open time

    # the wizard is where it was: the typed step is taken now
    retry = await lively(person, "@nobody_here", send=True)
    assert texts.MESSAGE_NOT_READ not in retry.texts
    assert not any(SOMETHING_WENT_WRONG in t for t in retry.texts)
    assert "Nobody on the bot is @nobody_here yet" in person.last.text  # the wizard's step
    assert person.buttons() == ["🔗 Invite them with a link", "✏️ Retype", "✖️ Cancel"]


async def test_connections_lost_while_idle_fail_no_update_once_redis_is_back(
    app: App, proxy: TcpProxy
) -> None:
    """Redis's host rebooted while nobody wrote to the bot: every pooled
    connection (cache, form state, locks) is dead without knowing it. The next
    updates are handled as if nothing happened."""
    telegram = app.bot.session
    assert isinstance(telegram, FakeTelegram)
    person = SimulatedUser(telegram, app.bot, app.dispatcher, user_id=next(_ids), first_name="Bo")
    await person.send("/start")
    await person.send("/new")
    await person.press("I'm buying")

    await proxy.forget()

    typed = await lively(person, "@nobody_here", send=True)
    assert "Nobody on the bot is @nobody_here yet" in person.last.text  # the wizard's step
    started = await lively(person, "/start", send=True)
    wallet = await lively(person, "👛 Wallet")
    assert "USDT" in person.last.text
    menu = await lively(person, "« Menu")
    assert "Balance" in person.last.text
    for result in (typed, started, wallet, menu):
        assert not any(SOMETHING_WENT_WRONG in t for t in result.texts)
        assert texts.MESSAGE_NOT_READ not in result.texts
