"""Disputes through the Telegram double on real Postgres and Redis: who opened
one and why, as the admins see it; the parties' evidence (photos, documents,
texts) relayed to the admins and kept in the dispute's file, within its
limits; and a split settlement, pressed twice or racing another admin's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from aiogram.types import Sticker
from sqlalchemy import text

from bot.runtime.app import App, build_app
from bot.runtime.notifier import Outbox
from bot.services.views import DealView
from bot.sim import SimulatedUser
from bot.telegram.handlers.evidence import NOT_EVIDENCE, THANKS
from bot.telegram.keyboards import EvidenceAdd
from db.models import DealStatus
from tests.e2e.conftest import balance
from tests.e2e.test_admin import forge, ledger_legs, status_of
from tests.e2e.test_deals import open_deal
from tests.e2e.test_outbox import crash_before_sending, make_due
from tests.e2e.test_wallet import on

SECOND_ADMIN = 900_000_003
STICKER = Sticker(
    file_id="CAACAgIAAxkBAAEsticker", file_unique_id="AgADsticker", type="regular",
    width=512, height=512, is_animated=False, is_video=False,
)  # fmt: skip
FILE_BUTTONS = ["✅ Release to seller", "↩️ Refund buyer", "✂️ Split", "🗂 Dispute file", "« Admin"]


@pytest.fixture
async def admin(people) -> SimulatedUser:
    admin = people.admin()
    await admin.start()
    return admin


async def disputed(
    alice: SimulatedUser, bob: SimulatedUser, app: App, by: str = "alice"
) -> DealView:
    """Alice buys from Bob; he accepts, she funds, then one of them disputes it."""
    deal = await open_deal(app, alice)
    await bob.send(f"/deal {deal.code}")
    await bob.press("✅ Accept")
    await alice.press("💰 Fund 100.00 USDT")
    opener = alice if by == "alice" else bob
    await opener.press("⚠️ Open a dispute")
    await opener.send("It never arrived" if by == "alice" else "Paid for nothing, says she")
    return deal


async def evidence_rows(app: App) -> list[tuple]:
    async with app.database.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT u.telegram_id, x.kind, x.file_id, x.file_name, x.text"
                " FROM dispute_evidence x JOIN users u ON u.id = x.sender_id ORDER BY x.id"
            )
        )
        return [tuple(row) for row in rows]


# -- who opened it, and why ---------------------------------------------------------------


async def test_the_admins_see_who_opened_a_dispute_and_why(app, admin, pair):
    alice, bob = pair
    deal = await disputed(alice, bob, app, by="bob")

    told = admin.last
    assert told.text.startswith(
        "🛡 New dispute opened by @bob_sells (the seller).\nReason: Paid for nothing, says she"
    )
    assert admin.buttons() == FILE_BUTTONS
    await admin.press("🗂 Dispute file")
    shown = admin.last.text
    assert f"Deal #{deal.code}" in shown and "in dispute" in shown
    assert "⚠️ Dispute opened by @bob_sells (the seller), " in shown
    assert "Reason: Paid for nothing, says she" in shown
    assert "📎 No evidence yet." in shown
    assert admin.buttons() == [
        "✅ Release to seller",
        "↩️ Refund buyer",
        "✂️ Split",
        "⟳ Refresh",
        "« Admin",
    ]


# -- evidence -----------------------------------------------------------------------------


async def test_both_parties_send_evidence_that_reaches_the_admins_and_the_file(
    app, admin, pair, people, telegram
):
    alice, bob = pair
    deal = await disputed(alice, bob, app)
    assert "📎 Add evidence" in alice.buttons()  # on her card after the dispute
    await alice.press("📎 Add evidence")
    assert alice.last.text.startswith(f"📎 Evidence for the dispute over deal #{deal.code}")
    assert "up to 20 MB each" in alice.last.text and "You may send 10 pieces" in alice.last.text

    photo = (await alice.send_photo("The box, crushed")).update.message.photo[-1]
    assert alice.last.text == "✅ Sent to the admins (1 of 10). Send more, or press ✅ Done."
    relayed = admin.last
    assert relayed.media == ("photo", photo.file_id)  # the very photo, by Telegram's file id
    assert relayed.text == (
        f"📎 Evidence on the dispute over deal #{deal.code}, from @alice_buys (the buyer): "
        "🖼 photo\n\nThe box, crushed"
    )
    assert admin.buttons() == ["🗂 Dispute file"]
    document = (await alice.send_document("tracking.pdf")).update.message.document
    assert admin.last.media == ("document", document.file_id)
    assert "📄 document tracking.pdf" in admin.last.text
    await alice.send("The courier says it was <returned>")
    assert admin.last.text.endswith("💬 text\n\nThe courier says it was <returned>")
    await alice.send_content(sticker=STICKER)
    assert alice.last.text == NOT_EVIDENCE
    await alice.press("✅ Done")
    assert alice.last.text.startswith(THANKS) and f"Deal #{deal.code}" in alice.last.text
    await alice.send("and one more thing")  # the form is over: just text
    assert "didn't understand" in alice.last.text

    await bob.send(f"/deal {deal.code}")
    await bob.press("📎 Add evidence")
    await bob.send("I shipped it on time")
    assert admin.last.text.startswith(
        f"📎 Evidence on the dispute over deal #{deal.code}, from @bob_sells (the seller)"
    )
    # someone else's press of the button learns nothing and adds nothing
    carol = people("Carol", "carol_c")
    await carol.start()
    await carol.feed(forge(carol, telegram, EvidenceAdd(code=deal.code).pack()))
    assert carol.last.text == "⚠️ No such deal."

    assert await evidence_rows(app) == [
        (alice.id, "photo", photo.file_id, None, "The box, crushed"),
        (alice.id, "document", document.file_id, "tracking.pdf", None),
        (alice.id, "text", None, None, "The courier says it was <returned>"),
        (bob.id, "text", None, None, "I shipped it on time"),
    ]

    # the admin opens the file from a relayed photo: a new message, the list in it
    await admin.press("🗂 Dispute file", message=relayed)
    shown = admin.last.text
    assert admin.last.media is None and "📎 Evidence (4):" in shown
    assert "1. the buyer · 🖼 photo · " in shown and "— The box, crushed" in shown
    assert "2. the buyer · 📄 document · " in shown and "— tracking.pdf" in shown
    assert "4. the seller · 💬 text · " in shown and "— I shipped it on time" in shown
    assert admin.buttons()[3:9] == [
        "📎 1",
        "📎 2",
        "📎 3",
        "📎 4",
        "📎 Send all again",
        "⟳ Refresh",
    ]
    file = admin.last
    await admin.press("📎 2")
    assert admin.last.media == ("document", document.file_id)
    sent = len(admin.messages)
    await admin.press("📎 Send all again", message=file)
    again = admin.messages[sent:]
    assert [m.media for m in again] == [
        ("photo", photo.file_id),
        ("document", document.file_id),
        None,
        None,
    ]
    assert again[3].text.endswith("I shipped it on time")


async def test_evidence_limits_and_a_settled_dispute_are_refused_clearly(app, admin, pair):
    alice, bob = pair
    deal = await disputed(alice, bob, app)
    await alice.press("📎 Add evidence")
    await alice.send("x" * 1001)
    assert alice.last.text == "⚠️ The text is too long: 1001 characters, at most 1000."
    await alice.send_document("video.mov", size=21 * 2**20)
    assert alice.last.text == "⚠️ That file is too large: at most 20 MB."
    for number in range(1, 10):
        await alice.send(f"note {number}")
    await alice.send_photo()
    assert alice.last.text == (
        "✅ Sent to the admins (10 of 10). That was the last piece you may send about this dispute."
    )
    await alice.press(
        "📎 Add evidence", message=next(m for m in alice.messages if "📎 Add evidence" in m.buttons)
    )
    await alice.send("one too many")
    assert alice.last.text == "⚠️ You have sent the most evidence one party may send: 10 items."
    assert len(await evidence_rows(app)) == 10

    # Bob is in the form when the admin settles: what he sends then is refused
    await bob.send(f"/deal {deal.code}")
    await bob.press("📎 Add evidence")
    await bob.send("first")
    await admin.press(
        "↩️ Refund buyer", message=next(m for m in admin.messages if "↩️ Refund buyer" in m.buttons)
    )
    await admin.press("↩️ Yes, refund the buyer")
    await bob.send_photo("too late")
    assert bob.last.text.startswith(
        f"⚠️ Deal {deal.code} is already refunded to the buyer: evidence can be added only "
        "while its dispute is open."
    )
    assert "📎 Add evidence" not in bob.buttons()
    await bob.press(
        "📎 Add evidence", message=next(m for m in bob.messages if "📎 Add evidence" in m.buttons)
    )
    assert "evidence can be added only while its dispute is open" in bob.last.text
    assert len(await evidence_rows(app)) == 11

    # /cancel in the form keeps what was sent, and says so
    other = await disputed(alice, bob, app)
    await alice.press("📎 Add evidence")
    await alice.send("kept")
    await alice.send("/cancel")
    assert alice.last.text == "The form is closed. Evidence you already sent stays with the admins."
    assert (await evidence_rows(app))[-1][-1] == "kept" and other.code != deal.code


async def test_evidence_a_crash_kept_from_the_admins_is_relayed_by_the_worker(
    app, admin, pair, monkeypatch
):
    alice, bob = pair
    deal = await disputed(alice, bob, app)
    await alice.press("📎 Add evidence")
    await app.outbox.flush()  # what was sent so far is recorded
    lost = crash_before_sending(monkeypatch)
    photo = (await alice.send_photo("proof")).update.message.photo[-1]
    assert len(lost) == 1 and admin.last.media is None
    monkeypatch.undo()
    await make_due(app)
    worker = Outbox(app.bot, app.services, app.dispatcher["signer"], app.config.runtime)
    await worker.run_once()  # (Bob's invitation, made through the services, is sent too)
    await worker.flush()
    assert admin.last.media == ("photo", photo.file_id)
    async with app.database.engine.connect() as conn:
        status = await conn.scalar(
            text("SELECT status FROM notifications WHERE id = :i"), {"i": lost[0]}
        )
    assert status == "sent"
    assert admin.last.text.startswith(
        f"📎 Evidence on the dispute over deal #{deal.code}, from @alice_buys"
    )


# -- a split --------------------------------------------------------------------------------


async def split_question(admin: SimulatedUser, deal: DealView, part: str) -> None:
    await admin.send("/admin")
    await admin.press("⚠️ Open disputes")
    await admin.press(f"#{deal.code} · 100.00 USDT")
    await admin.press("✂️ Split")
    await admin.send(part)


async def test_an_admin_splits_a_dispute_and_both_parties_hear_their_amounts(app, admin, pair):
    alice, bob = pair
    deal = await disputed(alice, bob, app)
    await admin.send("/admin")
    await admin.press("⚠️ Open disputes")
    await admin.press(f"#{deal.code} · 100.00 USDT")
    await admin.press("✂️ Split")
    assert admin.last.text.startswith(f"✂️ Split deal #{deal.code}")
    assert "How much of 100.00 USDT goes to the seller, @bob_sells?" in admin.last.text
    for typed, said in [
        ("abc", "⚠️ Send the amount as a number, like 1250.50."),
        (
            "0",
            "⚠️ The amount must be more than zero.",
        ),
        (
            "100",
            "⚠️ The seller's part must be more than nothing and less than the deal's 100.00 USDT.",
        ),
        ("60.005", "⚠️ USDT amounts have at most 2 decimal places."),
    ]:
        await admin.send(typed)
        assert admin.last.text == f"{said} Send the seller's part again, or /cancel."
    assert await status_of(app, deal) == DealStatus.DISPUTED
    await admin.send("60")
    assert admin.last.text == (
        f"❓ Split deal #{deal.code}?\n\n"
        "To the seller, @bob_sells: 60.00 USDT less the fee of 0.90 USDT, 59.10 USDT paid.\n"
        "Refunded to the buyer, @alice_buys: 40.00 USDT.\n\nThis can't be undone."
    )
    confirm = admin.last
    first, second = await asyncio.gather(
        admin.press("✅ Yes, split it", message=confirm),
        admin.press("✅ Yes, split it", message=confirm),
    )
    told = " ".join(first.texts + second.texts)
    assert "✂️ Settled by a split." in told and "⚠️" not in told  # the second was its own
    assert "To the seller: 60.00 USDT less the fee of 0.90 USDT, 59.10 USDT paid" in admin.last.text
    assert "Refunded to the buyer: 40.00 USDT" in admin.last.text
    assert await status_of(app, deal) == DealStatus.SPLIT
    assert await balance(app, alice) == (440_00, 0)
    assert await balance(app, bob) == (59_10, 0)
    assert await ledger_legs(app, "idempotency_key = :k", k=f"deal:{deal.id}:split") == 5
    assert alice.last.text.startswith(
        "🛡 An admin split the payment: 40.00 USDT is back in your wallet, and the seller was "
        "paid 60.00 USDT."
    )
    assert bob.last.text.startswith(
        "🛡 An admin split the payment: 59.10 USDT is in your wallet (60.00 USDT less the fee of "
        "0.90 USDT), and the buyer was refunded 40.00 USDT."
    )
    assert "✂️ split by an admin" in bob.last.text
    assert sum("split the payment" in m.text for m in bob.messages) == 1


@pytest.fixture
async def second_admin(app: App, people) -> AsyncIterator[SimulatedUser]:
    """Another admin, on a second replica (whose admin list has them too)."""
    escrow = msgspec.structs.replace(
        app.config.escrow, admins=(*app.config.escrow.admins, SECOND_ADMIN)
    )
    other = await build_app(
        msgspec.structs.replace(app.config, escrow=escrow),
        session=people.telegram,
        engine=app.database.engine,
    )
    bea = on(other, people("Bea", "bea_admin", user_id=SECOND_ADMIN))
    await bea.start()
    yield bea
    await other.aclose()


async def test_a_split_racing_another_admins_release_settles_once(app, admin, pair, second_admin):
    alice, bob = pair
    deal = await disputed(alice, bob, app)
    await split_question(admin, deal, "25")
    split = admin.last
    await second_admin.send("/admin")
    await second_admin.press("⚠️ Open disputes")
    await second_admin.press(f"#{deal.code} · 100.00 USDT")
    await second_admin.press("✅ Release to seller")
    release = second_admin.last
    splitting, releasing = await asyncio.gather(
        admin.press("✅ Yes, split it", message=split),
        second_admin.press("✅ Yes, release to the seller", message=release),
    )
    final = await status_of(app, deal)
    assert final in (DealStatus.SPLIT, DealStatus.RELEASED)
    settled = await ledger_legs(
        app, "escrow_id = :d AND idempotency_key <> :hold", d=deal.id, hold=f"deal:{deal.id}:funded"
    )
    assert settled == (5 if final == DealStatus.SPLIT else 3)  # one movement, whichever won
    loser = releasing if final == DealStatus.SPLIT else splitting
    assert any(t.startswith("⚠️ Deal") for t in loser.texts), loser.texts
    if final == DealStatus.SPLIT:
        assert await balance(app, alice) == (400_00 + 75_00, 0)
        assert await balance(app, bob) == (25_00 - 37, 0)
    else:
        assert await balance(app, alice) == (400_00, 0)
        assert await balance(app, bob) == (98_50, 0)
