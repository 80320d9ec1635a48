"""The admins' notice of a withdrawal request: its destination, and Approve /
Reject right on it, guarded as on the admin panel's queue: a double approval
pays once, an approval racing a rejection has one outcome, and a notice
pressed after a decision shows what became of the withdrawal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from bot.runtime.app import App, build_app
from bot.sim import SimulatedUser
from tests.e2e.conftest import actor, balance
from tests.e2e.test_admin import ledger_legs
from tests.e2e.test_wallet import fund, on, request, withdrawals

DESTINATION = "TXyz <main> & co"


@pytest.fixture
async def alice(app: App, people) -> SimulatedUser:
    alice = people("Alice", "alice_w")
    await alice.start()
    await fund(app, alice, 100_00)
    return alice


@pytest.fixture
async def admin(people) -> SimulatedUser:
    admin = people.admin()
    await admin.start()
    return admin


@pytest.fixture
async def elsewhere(app: App, admin: SimulatedUser) -> AsyncIterator[SimulatedUser]:
    """The admin again, on a second replica: their presses there really race."""
    other = await build_app(app.config, session=admin.telegram, engine=app.database.engine)
    yield on(other, admin)
    await other.aclose()


def both_at_once(monkeypatch, calls: list[tuple[object, str]]) -> None:
    """Each named use case waits until all of them were called (replicas racing)."""
    arrived, all_in = [], asyncio.Event()
    for owner, method in calls:
        original = getattr(owner, method)

        async def gated(*args, _original=original, **kwargs):
            arrived.append(1)
            if len(arrived) == len(calls):
                all_in.set()
            await asyncio.wait_for(all_in.wait(), 5)
            return await _original(*args, **kwargs)

        monkeypatch.setattr(owner, method, gated)


async def test_the_notice_shows_the_destination_and_approves_once(app, alice, admin, elsewhere):
    await request(alice, "40", DESTINATION)
    notice = admin.last
    assert notice.text == (
        f"🛡 New withdrawal request #1 from @alice_w (id {alice.id}): 40.00 USDT\nTo: {DESTINATION}"
    )
    assert admin.buttons() == ["✅ Approve", "✖️ Reject", "🛡 Admin"]

    await admin.press("✅ Approve")  # one tap to the question, as from the queue
    assert admin.last.message_id == notice.message_id
    assert admin.last.text.startswith(
        f"❓ Approve withdrawal #1? Press only once 40.00 USDT has been sent to {DESTINATION}"
    )
    confirm = admin.last
    first, second = await asyncio.gather(
        admin.press("✅ Yes, it was sent", message=confirm),
        elsewhere.press("✅ Yes, it was sent", message=confirm),
    )
    told = first.texts + second.texts
    assert any(t.startswith("✅ Withdrawal #1 approved: 40.00 USDT.") for t in told)
    assert any(t.startswith("⚠️ Withdrawal #1 is already approved.") for t in told)
    assert await withdrawals(app, alice) == [(40_00, "approved")]
    assert await balance(app, alice) == (60_00, 0)
    assert await ledger_legs(app, "idempotency_key = 'withdrawal:1:approved'") == 2
    assert sum("Your withdrawal #1 of 40.00 USDT" in m.text for m in alice.messages) == 1


async def test_an_approval_racing_a_rejection_has_one_outcome(
    app, alice, admin, elsewhere, monkeypatch
):
    await request(alice, "40", DESTINATION)
    notice = admin.last  # as a slow client keeps showing it
    await admin.press("✅ Approve", message=notice)
    confirm = admin.last
    await admin.press("✖️ Reject", message=notice)
    assert "Why is withdrawal #1 rejected?" in admin.last.text
    both_at_once(
        monkeypatch,
        [
            (app.services.wallets, "reject_withdrawal"),
            (elsewhere.dispatcher["services"].wallets, "approve_withdrawal"),
        ],
    )
    rejecting, approving = await asyncio.gather(
        admin.send("Wrong network"),
        elsewhere.press("✅ Yes, it was sent", message=confirm),
    )
    [(amount, outcome)] = await withdrawals(app, alice)
    assert amount == 40_00 and outcome in ("approved", "rejected")
    loser = rejecting if outcome == "approved" else approving
    assert any(t.startswith(f"⚠️ Withdrawal #1 is already {outcome}.") for t in loser.texts)
    assert await balance(app, alice) == ((60_00, 0) if outcome == "approved" else (100_00, 0))
    async with app.database.engine.connect() as conn:
        movements = await conn.scalar(
            text(
                "SELECT count(DISTINCT idempotency_key) FROM ledger_entries WHERE withdrawal_id = 1"
            )
        )
    assert movements == 2  # the hold, and one decision


async def test_a_notice_pressed_after_the_decision_shows_what_became_of_it(app, alice, admin):
    await request(alice, "40", DESTINATION)
    notice = admin.last
    await app.services.wallets.reject_withdrawal(await actor(app, admin), 1, "Wrong network")

    await admin.press("✅ Approve", message=notice)
    assert admin.last.text.startswith("⚠️ Withdrawal #1 is not pending any more: it is rejected.")
    assert "Nothing to decide." in admin.last.text
    await admin.press("✖️ Reject", message=notice)
    assert admin.last.text.startswith("⚠️ Withdrawal #1 is not pending any more: it is rejected.")
    await admin.send("Another reason")  # no reason form was opened
    assert "didn't understand" in admin.last.text
    assert await withdrawals(app, alice) == [(40_00, "rejected")]
    assert await balance(app, alice) == (100_00, 0)


async def test_a_notice_decides_a_withdrawal_past_the_first_page_of_the_queue(app, alice, admin):
    for _ in range(11):
        await app.services.wallets.request_withdrawal(await actor(app, alice), "USDT", 1_00, "x")
    await request(alice, "5", DESTINATION)
    await admin.press("✅ Approve")
    assert admin.last.text.startswith("❓ Approve withdrawal #12?")
    await admin.press("✅ Yes, it was sent")
    assert admin.last.text.startswith("✅ Withdrawal #12 approved: 5.00 USDT.")
