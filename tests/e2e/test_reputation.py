"""Reputation through the real Dispatcher and the Telegram double: the other
party's record before accepting or funding (and what it costs), the stars on
a completed deal's card and notification, once per party whatever the
presses, the review, the menu line and the profile, and the refusals."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from bot.runtime.app import App
from bot.services.views import DealView
from bot.sim import SimulatedUser
from bot.telegram.keyboards import RateDeal
from bot.telegram.texts import FORGED_BUTTON
from tests.e2e.conftest import actor
from tests.e2e.test_deals import PRICE, Timeline, forge, open_deal, press, show, timeline
from tests.e2e.test_outbox import make_due

__all__ = ["timeline"]

SINCE = f"📅 On the bot since {datetime.now(UTC):%b %Y}"
STARS = ["1⭐", "2⭐", "3⭐", "4⭐", "5⭐"]


async def ratings(app: App) -> list[tuple]:
    async with app.database.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT e.code, r.telegram_id, g.stars, g.review FROM ratings g"
                " JOIN escrows e ON e.id = g.escrow_id JOIN users r ON r.id = g.rater_id"
                " ORDER BY g.id"
            )
        )
        return [tuple(row) for row in rows]


async def release_through_buttons(app: App, alice: SimulatedUser, bob: SimulatedUser) -> DealView:
    deal = await open_deal(app, alice)
    await show(bob, deal)
    await bob.press("✅ Accept")
    await alice.press(f"💰 Fund {PRICE // 100}.00 USDT")
    await bob.press("📦 Mark as delivered")
    await alice.press("✅ Release payment")
    await alice.press("✅ Yes, release the payment")
    return deal


# -- the record before accepting and funding ---------------------------------------------


async def test_the_other_partys_record_is_shown_before_accepting_and_funding(app, pair, people):
    alice, bob = pair
    carol = people("Carol", "carol_c")
    await carol.start()
    # Alice's history: a deal with Carol released and rated 5, a dispute she opened
    await release_through_buttons_with(app, alice, carol)
    await carol.press("5⭐")
    carol_found = await app.services.users.find_by_username("carol_c")
    disputed = await open_deal(app, alice, counterparty=carol_found)
    services, me, her = app.services, await actor(app, alice), await actor(app, carol)
    await services.deals.accept(her, disputed.code)
    await services.deals.fund(me, disputed.code)
    await services.deals.dispute(me, disputed.code, "Wrong size")

    deal = await open_deal(app, alice)
    await show(bob, deal)  # Bob is to accept: Alice's record
    card = bob.last.text
    assert "👤 @alice_buys's record" in card
    assert "✅ 1 completed deal · 100–1,000 USDT traded" in card
    assert "⭐ 5.0 from 1 rating" in card
    assert "⚖️ Disputes: 1 opened, 0 lost" in card
    assert SINCE in card

    await bob.press("✅ Accept")
    assert "'s record" not in bob.last.text  # Bob has nothing left to decide on
    # Alice, asked to fund, reads Bob's record (a newcomer's) in the notification
    told = alice.last.text
    assert told.startswith("✅ @bob_sells accepted the deal.")
    assert "👤 @bob_sells's record" in told
    assert "🆕 No completed deals yet" in told and "⭐ No ratings yet" in told
    assert "⚖️ No disputes" in told
    await alice.press("💰 Fund 100.00 USDT")
    assert "'s record" not in alice.last.text


async def release_through_buttons_with(
    app: App, buyer: SimulatedUser, seller: SimulatedUser
) -> DealView:
    """A deal from `buyer` to `seller` (by @username), released through buttons."""
    found = await app.services.users.find_by_username(seller.user.username or "")
    deal = await open_deal(app, buyer, counterparty=found)
    await show(seller, deal)
    await seller.press("✅ Accept")
    await buyer.press("💰 Fund 100.00 USDT")
    await buyer.press("✅ Release payment")
    await buyer.press("✅ Yes, release the payment")
    return deal


async def test_an_invitation_shows_its_creators_record(app, pair, people):
    alice, _ = pair
    created = await app.services.deals.create(
        await actor(app, alice),
        role="buyer",
        currency="USDT",
        amount=PRICE,
        description="Logo",
        counterparty=None,
    )
    carol = people("Carol", "carol_new")
    await carol.start(created.value.invitation.code)
    assert "You are invited to this deal" in carol.last.text
    assert "👤 @alice_buys's record" in carol.last.text
    assert "🆕 No completed deals yet" in carol.last.text


def statements(timeline: Timeline) -> list[str]:
    """The SQL sent (a primary's BEGIN aside: a standby's read has none)."""
    return [s for s in timeline.of("sql") if s != "BEGIN"]


async def test_the_record_costs_no_sql_and_no_redis_on_a_cache_hit(app, pair, timeline):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)  # Alice's snapshot is in this replica's L1 now
    await show(alice, deal)

    # Bob's card with Alice's record costs what Alice's card without one does:
    # the deal's own read, and nothing for the record
    await press(timeline, bob, "⟳ Refresh")
    assert "👤 @alice_buys's record" in bob.last.text
    with_record = (statements(timeline), timeline.of("redis"))
    await press(timeline, alice, "⟳ Refresh")
    assert "'s record" not in alice.last.text
    deal_read = ["SELECT"]  # the card's own read of the deal, on the primary or the standby
    assert with_record == (statements(timeline), timeline.of("redis")) == (deal_read, [])

    # from Redis (L1 dropped): a GET for each snapshot, still no SQL for the record
    app.cache.cache.clear_local()
    await press(timeline, bob, "⟳ Refresh")
    assert "👤 @alice_buys's record" in bob.last.text
    assert statements(timeline) == deal_read and timeline.of("redis") == ["GET", "GET"]

    # the notification asking Alice to fund shows Bob's record from the snapshot
    # the accept already holds: the accept costs its usual statements
    events = await press(timeline, bob, "✅ Accept")
    assert statements(timeline) == ["SELECT", "WITH"], events
    assert "👤 @bob_sells's record" in alice.last.text

    # the menu's record line is the snapshot's: no SQL, no Redis
    await alice.send("/start")
    assert "⭐ Your record: no completed deals yet" in alice.last.text
    await press(timeline, alice, "❓ Help")
    await press(timeline, alice, "« Menu")
    assert "⭐ Your record:" in alice.last.text
    assert timeline.of("sql") == [] and timeline.of("redis") == []


async def test_a_notification_the_outbox_worker_sends_shows_the_record_too(app, pair):
    alice, bob = pair
    await open_deal(app, alice)  # its invitation to Bob is in the outbox, not sent
    await make_due(app)
    # the worker's path (another replica, or this one after a crash): the record
    # is read through the cache, not taken from an actor's snapshot in hand
    assert await app.outbox.run_once() == 1
    assert bob.last.text.startswith("📨 @alice_buys opened a deal with you")
    assert "👤 @alice_buys's record" in bob.last.text
    assert "🆕 No completed deals yet" in bob.last.text


# -- rating ------------------------------------------------------------------------


async def test_a_completed_deal_is_rated_once_by_each_party(app, pair):
    alice, bob = pair
    deal = await release_through_buttons(app, alice, bob)
    done = alice.last
    assert done.text.startswith("✅ Payment released to the seller.")
    assert "⭐ Rate @bob_sells: 1 (poor) to 5 (excellent), once." in done.text
    assert alice.buttons()[:5] == STARS
    told = bob.last
    assert told.text.startswith("✅ @alice_buys released the payment")
    assert "⭐ Rate @alice_buys" in told.text and bob.buttons(told)[:5] == STARS

    await alice.press("4⭐")
    assert alice.last.text.startswith("⭐ Thank you: you rated @bob_sells ★★★★☆.")
    assert "⭐ Your rating of @bob_sells: ★★★★☆" in alice.last.text
    assert alice.buttons() == ["✍️ Add a short review", "⟳ Refresh", "📋 My deals"]

    # the same card pressed again (a slow client), with other stars: the rating
    # given, as the success it is
    result = await alice.press("1⭐", message=done)
    assert not any("⚠️" in t for t in result.texts)
    assert alice.last.text.startswith("⭐ You rated @bob_sells ★★★★☆ on ")
    # Bob rates from his notification
    await bob.press("5⭐", message=told)
    assert bob.last.text.startswith("⭐ Thank you: you rated @alice_buys ★★★★★.")
    assert await ratings(app) == [
        (deal.code, alice.id, 4, None),
        (deal.code, bob.id, 5, None),
    ]
    # a refreshed card still offers the stars; a press tells the rating given
    await show(alice, deal)
    await alice.press("5⭐")
    assert alice.last.text.startswith("⭐ You rated @bob_sells ★★★★☆ on ")
    assert len(await ratings(app)) == 2


async def test_a_review_too_long_is_refused_and_the_next_one_saved_once(app, pair):
    alice, bob = pair
    deal = await release_through_buttons(app, alice, bob)
    await alice.press("5⭐")
    await alice.press("✍️ Add a short review")
    assert f"Send your review of deal #{deal.code} in one message, up to 200" in alice.last.text
    await alice.send("x" * 201)
    assert "The review is too long: 201 characters, at most 200." in alice.last.text
    assert await ratings(app) == [(deal.code, alice.id, 5, None)]  # nothing stored
    await alice.send("Fast and <friendly>")
    assert alice.last.text.startswith("✅ Your review is saved.")
    assert "Your review: Fast and <friendly>" in alice.last.text
    assert alice.buttons() == ["⟳ Refresh", "📋 My deals"]
    assert await ratings(app) == [(deal.code, alice.id, 5, "Fast and <friendly>")]
    # the form is closed: another message is not a second review
    await alice.send("Changed my mind")
    assert await ratings(app) == [(deal.code, alice.id, 5, "Fast and <friendly>")]

    # Bob's record: the menu line, and the profile with the review
    await bob.send("/start")
    assert "⭐ Your record: 1 completed deal · 5.0★ (1)" in bob.last.text
    await bob.press("⭐ My profile")
    profile = bob.last.text
    assert "✅ 1 completed deal · 100–1,000 USDT traded" in profile
    assert "⭐ 5.0 from 1 rating" in profile
    assert "★★★★★ @alice_buys" in profile and "Fast and <friendly>" in profile
    assert bob.buttons() == ["« Menu"]


async def test_settled_disputes_are_rated_and_counted(app, pair, people):
    alice, bob = pair
    admin = people.admin()
    await admin.start()
    deal = await open_deal(app, alice)
    await show(bob, deal)
    await bob.press("✅ Accept")
    await alice.press("💰 Fund 100.00 USDT")
    await alice.press("⚠️ Open a dispute")
    await alice.send("Never arrived")
    await admin.press("↩️ Refund buyer")
    await admin.press("↩️ Yes, refund the buyer")
    # both parties hear of the settlement with the stars to rate each other
    for party, other in ((alice, "@bob_sells"), (bob, "@alice_buys")):
        assert party.last.text.startswith("🛡 An admin settled the dispute: the buyer is refunded.")
        assert f"⭐ Rate {other}" in party.last.text and party.buttons()[:5] == STARS
    await bob.press("2⭐")
    assert bob.last.text.startswith("⭐ Thank you: you rated @alice_buys ★★☆☆☆.")
    # the seller lost it: his record says so, at once (his money did not move)
    await bob.send("/start")
    await bob.press("⭐ My profile")
    assert "⚖️ Disputes: 0 opened, 1 lost" in bob.last.text
    assert "✅ 1 completed deal" in bob.last.text and "traded" not in bob.last.text


# -- refusals ----------------------------------------------------------------------


async def test_forged_stars_and_deals_not_completed_change_nothing(app, pair, people, telegram):
    alice, bob = pair
    deal = await release_through_buttons(app, alice, bob)
    five = next(b for b in alice.last.keyboard[0] if b.text == "5⭐")
    mallory = people("Mallory", "mallory_m")
    await mallory.start()

    # Alice's button replayed by someone else, and stars she was never offered
    result = await mallory.feed(forge(mallory, telegram, five.callback_data))
    assert (result.answer.text, result.answer.show_alert) == (FORGED_BUTTON, True)
    assert result.methods == ["answerCallbackQuery"]
    tampered = RateDeal.unpack(five.callback_data).model_copy(update={"stars": 1}).pack()
    for data in (tampered, RateDeal(code=deal.code, stars=5, sig="AAAAAAAAAA").pack()):
        result = await alice.feed(forge(alice, telegram, data))
        assert result.answer.show_alert and result.answer.text == FORGED_BUTTON
    assert await ratings(app) == []

    # a signed button for a deal not completed yet: refused, nothing stored
    pending = await open_deal(app, alice)
    signer = app.dispatcher["signer"]
    data = signer.rate(alice.id, pending.code, 5).pack()
    await alice.feed(forge(alice, telegram, data))
    assert (
        f"Deal {pending.code} is waiting to be accepted: a deal can be rated once it is"
        " completed" in alice.last.text
    )
    assert await ratings(app) == []
