"""Registration: wallets for every configured currency, and a snapshot version
that moves exactly when the snapshot does."""

from __future__ import annotations

from sqlalchemy import text

from bot.services.base import ServiceContext
from bot.services.money import Currencies, Currency
from bot.services.users import Profile, UserService
from db.events import UserChanged


async def wallets_of(database, user_id):
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT currency, available, held FROM wallets WHERE user_id = :u ORDER BY 1"),
            {"u": user_id},
        )
        return [tuple(r) for r in rows]


async def test_first_contact_creates_the_user_and_a_wallet_per_currency(services, sql):
    sql.start()
    outcome = await services.users.register(
        Profile(telegram_id=55, first_name="Ann", username="ann_a", language_code="en")
    )
    # the name let go by any earlier holder, upsert, wallets, claim invitations for @ann_a
    assert len(sql.stop()) == 4
    user = outcome.value
    assert user.created and user.version == 1 and not user.is_admin
    assert outcome.events == (UserChanged(user.id, 55, 1),)
    assert await wallets_of(services.ctx.db, user.id) == [
        ("BTC", 0, 0),
        ("TON", 0, 0),
        ("USDT", 0, 0),
    ]


async def test_an_unchanged_profile_writes_nothing(services, sql):
    profile = Profile(telegram_id=56, first_name="Bo", username="bo_b")
    await services.users.register(profile)
    sql.start()
    again = await services.users.register(profile)
    assert len(sql.stop()) == 3  # nobody else holds @bo_b, read back, wallets already there
    assert not again.value.created and again.value.version == 1
    assert again.events == ()


async def test_a_changed_profile_bumps_the_version(services):
    await services.users.register(Profile(telegram_id=57, first_name="Cy", username="cy_old"))
    changed = await services.users.register(
        Profile(telegram_id=57, first_name="Cy", username="cy_new")
    )
    assert changed.value.version == 2 and changed.value.username == "cy_new"
    assert changed.events == (UserChanged(changed.value.id, 57, 2),)


async def test_admins_come_from_config(services):
    admin = await services.admin()
    assert admin.is_admin


async def test_a_newly_configured_currency_gets_a_wallet_on_the_next_visit(services, config):
    user = await services.user("dee_d")
    table = {c.code: c for c in config.currency_table()}
    table["EUR"] = Currency("EUR", 2, 1_00, 10_000_00, 100)
    ctx = ServiceContext(
        db=services.ctx.db, settings=services.ctx.settings, currencies=Currencies(table)
    )
    outcome = await UserService(ctx).register(
        Profile(telegram_id=user.telegram_id, first_name=user.first_name, username="dee_d")
    )
    assert outcome.value.version == user.version + 1
    assert ("EUR", 0, 0) in await wallets_of(services.ctx.db, user.id)
