"""The admin panel's reads through the real Dispatcher: an admin whose rights
were taken away in the database, while every cached snapshot (and this
replica's config) still says admin, is shown nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from bot.runtime.app import App
from bot.sim import SimulatedUser
from tests.conftest import READS_FROM
from tests.e2e.test_admin import disputed_deal
from tests.postgres_standby import replayed

# Also with a hot standby serving the admin reads.
pytestmark = READS_FROM


@pytest.fixture
async def admin(people) -> SimulatedUser:
    admin = people.admin()
    await admin.start()
    return admin


async def test_the_panel_shows_nothing_to_an_admin_whose_row_is_no_longer_admin(
    app: App, admin, pair
) -> None:
    alice, bob = pair
    deal = await disputed_deal(app, alice, bob)
    await admin.send("/admin")
    await admin.press("⚠️ Open disputes")
    assert f"#{deal.code}" in admin.last.text
    disputes = admin.last

    # revoked in the database only (as another replica with a newer admin list
    # does): neither the cache nor this replica's settings know yet
    async with app.database.engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET is_admin = false WHERE telegram_id = :t"), {"t": admin.id}
        )
    if app.database.standby is not None:  # made outside the bot: shown once replayed
        await replayed(app.database.standby)
    for button in ("⟳ Refresh", f"#{deal.code} · 100.00 USDT"):
        reply = await admin.press(button, message=disputes)
        assert reply.texts == ["⚠️ That is for admins only."], button
    await admin.press("« Admin", message=disputes)
    for screen in ("🏦 Pending withdrawals", "📊 Stats"):
        reply = await admin.press(screen)
        assert reply.texts == ["⚠️ That is for admins only."], screen
    assert "Stats" not in admin.last.text and "Pending withdrawals (" not in admin.last.text
