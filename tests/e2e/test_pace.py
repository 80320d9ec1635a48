"""Anti-spam through the Telegram double: the deal over a user's hourly limit,
and the invitation over their daily limit of strangers, are refused at
Create with when to try again; nothing is created and nobody is told; the
form is kept, and Create works again once the window has moved on."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import timedelta

import msgspec
import pytest
from sqlalchemy import text

from bot.config import Config
from bot.runtime.app import App, build_app
from bot.sim import FakeTelegram, SimulatedUser
from bot.telegram.texts import FORM_KEPT, when
from cache.settings import RedisSettings
from db import Database
from tests.conftest import ADMIN_TELEGRAM_ID
from tests.e2e.conftest import actor
from tests.e2e.test_wizard import CREATE, on_bot, up_to_summary

DEALS_PER_HOUR = 2
STRANGERS_PER_DAY = 3


@pytest.fixture
async def app(
    config: Config, pg_settings, database: Database, redis_url: str
) -> AsyncIterator[App]:
    """The e2e app with small limits."""
    escrow = msgspec.structs.replace(
        config.escrow,
        admins=(ADMIN_TELEGRAM_ID,),
        deals_per_hour=DEALS_PER_HOUR,
        strangers_per_day=STRANGERS_PER_DAY,
    )
    test_config = msgspec.structs.replace(
        config,
        database=pg_settings,
        redis=RedisSettings(url=redis_url),
        cache=msgspec.structs.replace(config.cache, key_prefix=f"pace{secrets.token_hex(4)}"),
        escrow=escrow,
    )
    app = await build_app(test_config, session=FakeTelegram(), engine=database.engine)
    yield app
    await app.aclose()


async def deals_by(app: App, user: SimulatedUser) -> list[tuple]:
    async with app.database.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT e.created_at, e.to_stranger FROM escrows e"
                " JOIN users u ON u.id = e.creator_id WHERE u.telegram_id = :t ORDER BY e.id"
            ),
            {"t": user.id},
        )
        return [tuple(row) for row in rows]


async def notifications(app: App) -> int:
    async with app.database.engine.connect() as conn:
        return await conn.scalar(text("SELECT count(*) FROM notifications"))


async def age(app: App, user: SimulatedUser, by: timedelta) -> None:
    """Move the user's deals `by` into the past: the window slides on."""
    async with app.database.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE escrows SET created_at = created_at - CAST(:by AS interval)"
                " WHERE creator_id = (SELECT id FROM users WHERE telegram_id = :t)"
            ),
            {"by": by, "t": user.id},
        )


async def test_the_deal_over_the_hourly_limit_is_refused_until_the_hour_has_passed(app, people):
    alice = await on_bot(people, "Alice", "alice_p")
    bob = await on_bot(people, "Bob", "bob_p")
    for _ in range(DEALS_PER_HOUR):
        await up_to_summary(alice, "@bob_p")
        await alice.press(CREATE)
        assert "✅ Deal created." in alice.last.text
    bob_before, told_before = len(bob.messages), await notifications(app)

    await up_to_summary(alice, "@bob_p", description="One too many")
    await alice.press(CREATE)
    first_made = (await deals_by(app, alice))[0][0]
    refused = alice.last.text
    assert refused.startswith(
        f"⚠️ You have opened {DEALS_PER_HOUR} deals in the last hour, the most allowed. You can "
        f"open the next one at {when(first_made + timedelta(hours=1))} (in "
    )
    assert FORM_KEPT in refused and "One too many" in refused
    assert alice.buttons() == [CREATE, "✖️ Cancel"]
    assert len(await deals_by(app, alice)) == DEALS_PER_HOUR  # nothing created
    assert len(bob.messages) == bob_before  # nobody told
    assert await notifications(app) == told_before

    await alice.press(CREATE)  # still within the hour: refused again, nothing made
    assert alice.last.text.startswith("⚠️ You have opened")
    assert len(await deals_by(app, alice)) == DEALS_PER_HOUR

    await age(app, alice, timedelta(hours=1))
    await alice.press(CREATE)  # the hour has passed: the kept form makes its deal
    assert "✅ Deal created. @bob_p can accept it now." in alice.last.text
    assert "One too many" in bob.last.text
    assert len(await deals_by(app, alice)) == DEALS_PER_HOUR + 1


async def test_invitations_to_strangers_over_the_daily_limit_are_refused(app, people):
    alice = await on_bot(people, "Alice", "alice_s")
    kim = await on_bot(people, "Kim", "kim_s")
    strangers = [await on_bot(people, f"S{i}", f"stranger_{i}") for i in range(3)]
    # a first deal with Kim (a stranger then), funded: Kim is no stranger since
    await app.services.wallets.credit_deposit(
        await actor(app, alice), "USDT", 500_00, reference="seed-alice"
    )
    made = await app.services.deals.create(
        await actor(app, alice),
        role="buyer",
        currency="USDT",
        amount=10_00,
        description="earlier deal",
        counterparty=await app.services.users.find_by_username("kim_s"),
    )
    await app.services.deals.accept(await actor(app, kim), made.value.deal.code)
    await app.services.deals.fund(await actor(app, alice), made.value.deal.code)

    for stranger in strangers[:2]:
        await age(app, alice, timedelta(hours=1))  # the hourly limit is not this test's
        await up_to_summary(alice, f"@{stranger.user.username}")
        await alice.press(CREATE)
        assert "✅ Deal created." in alice.last.text
    await age(app, alice, timedelta(hours=1))

    told_before = len(strangers[2].messages)
    await up_to_summary(alice, f"@{strangers[2].user.username}")  # the 4th stranger today
    await alice.press(CREATE)
    assert alice.last.text.startswith(
        f"⚠️ You have opened deals with {STRANGERS_PER_DAY} people you never had a funded deal "
        "with in the last 24 hours, the most allowed."
    )
    assert FORM_KEPT in alice.last.text
    assert len(strangers[2].messages) == told_before  # not told of a deal

    await alice.send("/cancel")
    await up_to_summary(alice, "@kim_s")  # someone Alice traded with: not limited
    await alice.press(CREATE)
    assert "✅ Deal created. @kim_s can accept it now." in alice.last.text
    assert [stranger for _, stranger in await deals_by(app, alice)] == [
        True,  # Kim, before their funded deal
        True,
        True,
        False,  # Kim again
    ]

    await age(app, alice, timedelta(hours=24))
    await up_to_summary(alice, f"@{strangers[2].user.username}")
    await alice.press(CREATE)  # a new day
    assert "✅ Deal created." in alice.last.text
