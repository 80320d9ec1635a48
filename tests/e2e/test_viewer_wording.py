"""A deal speaks to whoever looks at it: on the same deal, at every step, the
buyer reads "waiting for you to fund" where the seller reads "waiting for the
buyer to fund", on the card and in "My deals"; an admin reads the neutral
words. The viewer is known from the snapshot: the wording costs no statement."""

from __future__ import annotations

from bot.sim import SimulatedUser
from tests.e2e.conftest import actor
from tests.e2e.test_deals import open_deal, press, show, timeline  # noqa: F401 - a fixture


async def card_and_list(user: SimulatedUser, code: str) -> tuple[str, str]:
    """The status line of the deal's card, and its line in "My deals"."""
    await user.send(f"/deal {code}")
    card = user.last.text.splitlines()[1]
    await user.send("/deals")
    [line] = [line for line in user.last.text.splitlines() if line.startswith(f"#{code}")]
    return card, line


async def test_buyer_and_seller_each_read_their_own_wording_at_every_step(app, pair, people):
    alice, bob = pair  # Alice buys, Bob sells
    deal = await open_deal(app, alice)
    code = deal.code

    async def reads(buyer_card: str, buyer_list: str, seller_card: str, seller_list: str):
        card, line = await card_and_list(alice, code)
        assert card == buyer_card and f"· {buyer_list} · with @bob_sells" in line
        card, line = await card_and_list(bob, code)
        assert card == seller_card and f"· {seller_list} · with @alice_buys" in line

    await reads(
        "⏳ waiting for the seller to accept",
        "waiting for the seller to accept",
        "⏳ waiting for you to accept",
        "waiting for you to accept",
    )
    await show(bob, deal)
    await bob.press("✅ Accept")
    await reads(
        "🤝 accepted — waiting for you to fund",
        "waiting for you to fund",
        "🤝 accepted — waiting for the buyer to fund",
        "waiting for the buyer to fund",
    )
    await show(alice, deal)
    await alice.press("💰 Fund 100.00 USDT")
    # each sees their own card at once: hers edited, his notification
    assert "waiting for the seller to deliver" in alice.last.text
    assert "🔒 funded — the money is held in escrow; waiting for you to deliver" in bob.last.text
    await reads(
        "🔒 funded — the money is held in escrow; waiting for the seller to deliver",
        "waiting for the seller to deliver",
        "🔒 funded — the money is held in escrow; waiting for you to deliver",
        "waiting for you to deliver",
    )
    await show(bob, deal)
    await bob.press("📦 Mark as delivered")
    await reads(
        "📦 delivered — waiting for you to release the payment",
        "waiting for you to release",
        "📦 delivered — waiting for the buyer to release the payment",
        "waiting for the buyer to release",
    )
    await show(alice, deal)
    await alice.press("⚠️ Open a dispute")
    admin = people.admin()
    await admin.start()
    await alice.send("It does not work")
    # the admin's card (the dispute's notification) has the neutral words
    assert "⚠️ in dispute — waiting for an admin to decide" in admin.last.text
    await reads(
        "⚠️ in dispute — waiting for an admin to decide",
        "in dispute",
        "⚠️ in dispute — waiting for an admin to decide",
        "in dispute",
    )
    await app.services.deals.resolve(await actor(app, admin), code, "release")
    await alice.send("/deal " + code)
    assert alice.last.text.splitlines()[1] == "✅ released to the seller"
    await bob.send("/deal " + code)
    assert bob.last.text.splitlines()[1] == "✅ released — the payment is in your wallet"


async def test_the_admin_reads_the_neutral_wording(app, pair, people):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await app.services.deals.accept(await actor(app, bob), deal.code)
    await app.services.deals.fund(await actor(app, alice), deal.code)
    admin = people.admin()
    await admin.start()
    await app.services.deals.dispute(await actor(app, bob), deal.code, "Paid late")
    await admin.send("/admin")
    await admin.press("⚠️ Open disputes")
    await admin.press(admin.buttons()[0])
    assert "⚠️ in dispute — waiting for an admin to decide" in admin.last.text
    assert "waiting for you" not in admin.last.text


async def test_the_wording_costs_no_statement(app, pair, timeline):  # noqa: F811
    alice, bob = pair
    deal = await open_deal(app, alice)
    counts = []
    for user in (alice, bob):
        await show(user, deal)
        events = await press(timeline, user, "⟳ Refresh")
        counts.append(timeline.of("sql"))
        assert events
    # the card's one read, for either viewer: who is looking comes from the snapshot
    assert counts[0] == counts[1] and counts[0].count("SELECT") == 1, counts
    await alice.send("/start")  # and a read-only press on a warm cache: still no SQL
    await press(timeline, alice, "❓ Help")
    assert timeline.of("sql") == []
