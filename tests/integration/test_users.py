"""Registration: wallets for every configured currency, and a snapshot version
that moves exactly when the snapshot does."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from bot.services.base import ServiceContext
from bot.services.errors import InvalidInput
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


# -- who holds an @username ------------------------------------------------------------


async def holders_of(database, name: str) -> list[int]:
    async with database.engine.connect() as conn:
        rows = await conn.scalars(
            text("SELECT id FROM users WHERE lower(username) = :u ORDER BY id"), {"u": name}
        )
        return list(rows)


async def test_a_name_that_changed_hands_is_found_with_its_new_holder(services, events, sql):
    """Telegram gave @shared_name to Bob after Alice dropped it; Alice has not
    written to the bot since, but her money moved after Bob registered (which
    bumps updated_at, what the lookup used to prefer). The deal goes to Bob."""
    alice = await services.user("shared_name", telegram_id=101)
    bob = await services.user("Shared_Name", telegram_id=102)
    await services.wallets.credit_deposit(alice, "USDT", 5_00, reference="after-bob")
    buyer = await services.user("the_buyer", funds={"USDT": 100_00})

    assert await holders_of(services.ctx.db, "shared_name") == [bob.id]
    # Alice's snapshot changed (she lost the name): her cached entries are invalidated
    assert UserChanged(alice.id, 101, 2) in events.published

    sql.start()
    found = await services.users.find_by_username("@SHARED_name")
    assert sql.stop() and sql.count == 1
    assert found is not None
    assert (found.id, found.telegram_id, found.username, found.first_name) == (
        bob.id,
        102,
        "Shared_Name",
        "User 102",
    )
    deal = (
        await services.deals.create(
            buyer,
            role="buyer",
            currency="USDT",
            amount=10_00,
            description="A lamp",
            counterparty=found,
        )
    ).value.deal
    assert (deal.seller_id, deal.seller_telegram_id) == (bob.id, 102)


async def test_nobody_holds_an_unknown_name(services):
    await services.user("someone_x")
    assert await services.users.find_by_username("nobody_here") is None
    assert await services.users.find_by_username("@someone") is None  # no prefix matching


async def test_profile_at_moves_only_when_the_name_or_username_does(services):
    async def profile_at(telegram_id: int):
        async with services.ctx.db.engine.connect() as conn:
            return await conn.scalar(
                text("SELECT profile_at FROM users WHERE telegram_id = :t"), {"t": telegram_id}
            )

    async def backdate() -> None:
        async with services.ctx.db.engine.begin() as conn:
            await conn.execute(text("UPDATE users SET profile_at = now() - interval '30 days'"))

    await services.users.register(Profile(telegram_id=58, first_name="Di", username="di_d"))
    await backdate()
    reported = await profile_at(58)
    # a new language is not a new name: "as Telegram reported them" keeps its date
    await services.users.register(
        Profile(telegram_id=58, first_name="Di", username="di_d", language_code="de")
    )
    assert await profile_at(58) == reported
    found = await services.users.find_by_username("di_d")
    assert found is not None and found.profile_at == reported
    await services.users.register(Profile(telegram_id=58, first_name="Diana", username="di_d"))
    assert await profile_at(58) > reported


async def test_a_chosen_language_is_one_statement_and_moves_the_snapshot(services, events, sql):
    user = await services.user("lena_l", telegram_id=58)
    events.published.clear()
    sql.start()
    chosen = await services.users.set_locale(user, "ru")
    assert len(sql.stop()) == 1
    assert chosen.value and chosen.events == (UserChanged(user.id, 58, 2),)
    assert events.published == [UserChanged(user.id, 58, 2)]  # published after the commit
    async with services.ctx.db.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT locale, version FROM users WHERE id = :u"), {"u": user.id}
            )
        ).one()
    assert tuple(row) == ("ru", 2)
    # the same again writes nothing and tells nobody; None follows Telegram again
    again = await services.users.set_locale(user, "ru")
    assert not again.value and again.events == ()
    back = await services.users.set_locale(user, None)
    assert back.value and back.events == (UserChanged(user.id, 58, 3),)


async def test_a_language_tag_that_is_not_one_is_refused(services):
    user = await services.user("mira_m", telegram_id=59)
    with pytest.raises(InvalidInput):
        await services.users.set_locale(user, "ru; DROP TABLE users")
