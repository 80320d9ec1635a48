"""Admins blocking and unblocking users, through the Telegram double on real
Postgres and Redis: from the panel and by command, the reason told to the
user, every replica seeing the new status, a blocked user's deals stopped
(nobody accepts or funds them) and everything back on unblocking."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from bot.runtime.app import App, build_app
from bot.sim import SimulatedUser
from db.events import UserChanged
from tests.e2e.conftest import balance
from tests.e2e.test_deals import open_deal
from tests.e2e.test_wallet import on

REASON = "Sold a fake <watch>"


@pytest.fixture
async def admin(people) -> SimulatedUser:
    admin = people.admin()
    await admin.start()
    return admin


@pytest.fixture
async def replica(app: App, people) -> AsyncIterator[App]:
    other = await build_app(app.config, session=people.telegram, engine=app.database.engine)
    yield other
    await other.aclose()


async def audit(app: App) -> list[tuple]:
    async with app.database.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT u.telegram_id, a.telegram_id, c.status, c.reason"
                " FROM user_status_changes c JOIN users u ON u.id = c.user_id"
                " JOIN users a ON a.id = c.admin_id ORDER BY c.id"
            )
        )
        return [tuple(row) for row in rows]


async def test_an_admin_blocks_and_unblocks_a_user_from_the_panel(
    app, admin, pair, replica, people
):
    alice, bob = pair
    pending = await open_deal(app, alice)  # Bob is to accept it
    accepted = await open_deal(app, alice)
    await bob.send(f"/deal {accepted.code}")
    await bob.press("✅ Accept")
    bob_there = on(replica, bob)
    await bob_there.send("/start")  # the other replica holds Bob's snapshot now
    assert "blocked" not in bob_there.last.text
    heard = asyncio.Event()
    replica.cache.listener.on_event.append(
        lambda e: heard.set() if isinstance(e, UserChanged) and e.telegram_id == bob.id else None
    )

    await admin.send("/admin")
    await admin.press("👤 Users")
    assert admin.last.text.startswith("👤 Users")
    await admin.send("@nobody_here")
    assert admin.last.text == (
        "⚠️ Nobody with that Telegram id or @username has used the bot. Send an id or "
        "@username, or /cancel."
    )
    await admin.send("@Bob_Sells")
    shown = admin.last.text
    assert shown.startswith(f"👤 @bob_sells (Bob) · id {bob.id}\nStatus: ✅ active")
    assert "Unfinished deals: 2" in shown
    assert admin.buttons() == ["🚫 Block", "⟳ Refresh", "« Admin"]
    await admin.press("🚫 Block")
    assert f"Why is user {bob.id} blocked?" in admin.last.text
    await admin.send(REASON)
    shown = admin.last.text
    assert shown.startswith("🚫 @bob_sells is blocked: they were told why.")
    assert "Status: 🚫 blocked" in shown
    assert "Blocked by @ada_admin, " in shown and f": {REASON}" in shown
    assert admin.buttons() == ["✅ Unblock", "⟳ Refresh", "« Admin"]
    assert bob.last.text.startswith(f"🚫 Your account was blocked by the admins: {REASON}\n")
    assert await audit(app) == [(bob.id, admin.id, "blocked", REASON)]

    # every replica reads Bob's new status (the same invalidation as any change)
    async with asyncio.timeout(5):
        await heard.wait()
    await bob_there.send("/start")
    assert "🚫 Your account is blocked by the admins" in bob_there.last.text

    # Bob can't act; Alice can't take their deal forward, and is told why
    await bob.send(f"/deal {pending.code}")
    await bob.press("✅ Accept")
    assert bob.last.text.startswith(
        "⚠️ Your account is blocked by the admins, so you can't do that."
    )
    await alice.press("💰 Fund 100.00 USDT")
    assert alice.last.text == (
        "⚠️ This deal can't go ahead while one of its parties is blocked. It can still be cancelled."
    )
    assert await balance(app, alice) == (500_00, 0)
    # nor starts what they could not finish: told at once
    blocked = "⚠️ Your account is blocked by the admins, so you can't do that."
    await bob.send("/new")
    assert bob.last.text.startswith(blocked)
    await bob.send("/wallet")
    await bob.press("➖ Withdraw")
    assert bob.last.text.startswith(blocked)
    await bob.send("/start")
    await bob.press("➕ New deal")
    assert bob.last.text.startswith(blocked)
    await bob.send("/deals")  # and still sees their deals
    assert f"#{pending.code}" in bob.last.text

    # unblocked, all of it works again
    await admin.press("✅ Unblock")
    assert admin.last.text.startswith("✅ @bob_sells is unblocked: they were told.")
    assert bob.last.text.startswith("✅ Your account was unblocked: you can use the bot again.")
    await alice.press("💰 Fund 100.00 USDT")
    assert await balance(app, alice) == (400_00, 100_00)
    await bob.send(f"/deal {pending.code}")
    await bob.press("✅ Accept")
    assert bob.last.text.startswith("✅ You accepted the deal.")
    assert await audit(app) == [
        (bob.id, admin.id, "blocked", REASON),
        (bob.id, admin.id, "active", None),
    ]


async def test_blocking_and_unblocking_by_command(app, admin, pair):
    alice, bob = pair
    usage = "⚠️ Send /block ID_OR_@USERNAME REASON (the user reads the reason) or /unblock"
    for typed, said in [
        ("/block", usage),
        ("/block @bob_sells", usage),
        ("/block @nobody_here spam", "⚠️ Nobody with that Telegram id or @username"),
        ("/block @ada_admin testing", "⚠️ Admins can't be blocked."),
        (f"/block {bob.id} Chargebacks", "🚫 @bob_sells is blocked: they were told why."),
        ("/block @bob_sells again", "⚠️ @bob_sells is already blocked."),
    ]:
        await admin.send(typed)
        assert admin.last.text.startswith(said), typed
    assert bob.last.text.startswith("🚫 Your account was blocked by the admins: Chargebacks")
    await alice.send("/block @bob_sells I said so")  # not an admin
    assert alice.last.text == "That is for admins only."
    await admin.send("/unblock bob_sells")
    assert admin.last.text.startswith("✅ @bob_sells is unblocked: they were told.")
    await admin.send("/unblock bob_sells")
    assert admin.last.text == "⚠️ @bob_sells is not blocked."
    assert [row[2:] for row in await audit(app)] == [("blocked", "Chargebacks"), ("active", None)]
