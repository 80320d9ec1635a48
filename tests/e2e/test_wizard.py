"""The new-deal wizard through the real Dispatcher and the Telegram double: every
way to name the other party, bad input at each typed step, leaving the wizard,
and buttons pressed after it has moved on."""

from __future__ import annotations

import asyncio
import re
from functools import partial
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from bot.runtime.app import App
from bot.sim import ChatMessage, SimulatedUser, UpdateResult
from bot.telegram.texts import CANCELLED, NOTHING_TO_CANCEL
from db import UnitOfWork

BUYING, SELLING = "I'm buying", "I'm selling"
INVITE, CREATE, CANCEL = "🔗 Invite by link", "✅ Create deal", "✖️ Cancel"
INVITE_THEM, RETYPE = "🔗 Invite them with a link", "✏️ Retype"
LINK = re.compile(r"https://t\.me/escrow_test_bot\?start=([A-Za-z0-9_-]+)")


async def deals_in_db(app: App) -> list[dict[str, Any]]:
    async with app.database.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT e.code, e.status, e.amount, e.fee, e.currency, e.description,"
                " b.telegram_id AS buyer, s.telegram_id AS seller"
                " FROM escrows e"
                " LEFT JOIN users b ON b.id = e.buyer_id"
                " LEFT JOIN users s ON s.id = e.seller_id ORDER BY e.id"
            )
        )
        return [dict(row._mapping) for row in rows]


async def invitations_in_db(app: App) -> list[dict[str, Any]]:
    async with app.database.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT code, telegram_id, username, status FROM invitations ORDER BY id")
        )
        return [dict(row._mapping) for row in rows]


async def on_bot(people, name: str, username: str | None = None) -> SimulatedUser:
    user = people(name, username)
    await user.start()
    return user


async def up_to_amount(user: SimulatedUser, counterparty: str | None, role: str = BUYING) -> None:
    """Steps 1-3: role, the other party (typed, or by link when None), USDT."""
    await user.send("/new")
    await user.press(role)
    if counterparty is None:
        await user.press(INVITE)
    else:
        await user.send(counterparty)
    await user.press("USDT")


async def up_to_summary(
    user: SimulatedUser,
    counterparty: str | None,
    *,
    role: str = BUYING,
    amount: str = "100",
    description: str = "A used road bike",
) -> ChatMessage:
    await up_to_amount(user, counterparty, role)
    await user.send(amount)
    await user.send(description)
    assert user.buttons() == [CREATE, CANCEL]
    return user.last


def code_on(message: ChatMessage) -> str:
    found = re.search(r"Deal #([A-Z0-9]+)", message.text)
    assert found, message.text
    return found.group(1)


# -- creating deals ---------------------------------------------------------------------


async def test_by_username_with_a_registered_counterparty(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    bob = await on_bot(people, "Bob", "bob_x")

    await alice.send("/new")
    assert "step 1 of 5" in alice.last.text
    assert alice.buttons() == [BUYING, SELLING, CANCEL]
    await alice.press(BUYING)
    assert "Who is the seller?" in alice.last.text
    assert alice.buttons() == [INVITE, CANCEL]
    await alice.send("@Bob_X")
    assert alice.last.text.startswith(
        "👤 On the bot: Bob (@bob_x), as Telegram reported them just now."
    )
    assert "Which currency?" in alice.last.text
    assert alice.buttons() == ["USDT", "BTC", "TON", CANCEL]
    await alice.press("USDT")
    assert "from 1.00 USDT to 1,000,000.00 USDT" in alice.last.text
    await alice.send("1,250.50")
    assert "What is the deal for?" in alice.last.text
    await alice.send("Bike <b>& helmet</b>")

    summary = alice.last.text
    assert "You are the buyer" in summary
    assert "Seller: Bob (@bob_x), as Telegram reported them just now" in summary
    assert "Bike <b>& helmet</b>" in summary  # shown as typed, not as markup
    assert "Amount: 1,250.50 USDT" in summary
    assert "Fee: 18.75 USDT (1.5%)" in summary
    assert "Seller receives: 1,231.75 USDT" in summary
    assert await deals_in_db(app) == []

    created = await alice.press(CREATE)
    assert "✅ Deal created. @bob_x can accept it now." in alice.last.text
    assert "you are the buyer" in alice.last.text
    assert "Cancel deal" in alice.buttons()
    assert created.messages[0].message_id == alice.last.message_id  # the summary became the card

    code = code_on(alice.last)
    assert "@alice_x opened a deal with you: you are the seller" in bob.last.text
    assert f"Deal #{code}" in bob.last.text
    assert bob.buttons()[:2] == ["✅ Accept", "Decline"]
    assert await deals_in_db(app) == [
        {
            "code": code,
            "status": "pending",
            "amount": 125_050,
            "fee": 1_875,
            "currency": "USDT",
            "description": "Bike <b>& helmet</b>",
            "buyer": alice.id,
            "seller": bob.id,
        }
    ]
    assert await invitations_in_db(app) == []

    await bob.press("✅ Accept")
    assert "You accepted the deal" in bob.last.text
    assert (await deals_in_db(app))[0]["status"] == "accepted"


async def test_by_forwarded_message(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    bob = await on_bot(people, "Bob", "bob_x")
    await alice.send("/new")
    await alice.press(SELLING)
    assert "Who is the buyer?" in alice.last.text

    await alice.forward_from(bob, hidden=True)
    assert "Bob hides their account in forwarded messages" in alice.last.text
    assert "Send their @username instead" in alice.last.text
    assert alice.buttons() == [CANCEL]

    await alice.forward_from(bob, "Deal?")
    assert alice.last.text.startswith("👤 On the bot: Bob (@bob_x)")
    assert "Which currency?" in alice.last.text
    await alice.press("TON")
    await alice.send("12.5")
    await alice.send("Ten concert tickets")
    assert "Buyer: Bob (@bob_x), as Telegram reported them just now" in alice.last.text
    assert "Amount: 12.50 TON" in alice.last.text
    await alice.press(CREATE)

    assert "you are the seller" in alice.last.text
    assert "you are the buyer" in bob.last.text
    assert "✅ Accept" in bob.buttons()
    [deal] = await deals_in_db(app)
    assert (deal["buyer"], deal["seller"], deal["amount"]) == (bob.id, alice.id, 12_500_000_000)


async def test_by_numeric_id_from_the_menu(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    bob = await on_bot(people, "Bob")  # no username: the id is the only handle
    await alice.press("➕ New deal")
    assert "step 1 of 5" in alice.last.text
    assert alice.last.edits == 1  # the menu turned into the wizard

    await alice.press(BUYING)
    await alice.send(str(bob.id))
    assert alice.last.text.startswith("👤 On the bot: Bob, as Telegram reported them just now.")
    await alice.press("BTC")
    await alice.send("0.015")
    await alice.send("A GPU")
    assert "Seller: Bob, as Telegram reported them just now" in alice.last.text
    await alice.press(CREATE)

    assert "✅ Deal created. Bob can accept it now." in alice.last.text
    assert "@alice_x opened a deal with you" in bob.last.text
    [deal] = await deals_in_db(app)
    assert (deal["buyer"], deal["seller"], deal["currency"], deal["amount"]) == (
        alice.id,
        bob.id,
        "BTC",
        1_500_000,
    )


async def test_by_invitation_link(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    summary = await up_to_summary(alice, None)
    assert "Seller: anyone with the invitation link" in summary.text
    await alice.press(CREATE)

    card, invitation = alice.messages[-2:]
    assert "Send the seller the invitation link below" in card.text
    assert "Seller: invited, not joined yet" in card.text
    link = LINK.search(invitation.text)
    assert link, invitation.text
    assert "works once and expires on" in invitation.text
    assert "Whoever opens it first joins the deal as the seller" in invitation.text
    [row] = await invitations_in_db(app)
    assert row == {"code": link.group(1), "telegram_id": None, "username": None, "status": "active"}

    bob = people("Bob")  # never talked to the bot before
    await bob.start(link.group(1))
    assert f"Deal #{code_on(card)}" in bob.last.text
    assert "✅ Accept the deal" in bob.buttons()
    await bob.press("✅ Accept the deal")
    assert "You joined the deal" in bob.last.text
    assert "Bob accepted your invitation" in alice.last.text
    [deal] = await deals_in_db(app)
    assert (deal["status"], deal["buyer"], deal["seller"]) == ("accepted", alice.id, bob.id)


async def test_the_summary_says_how_long_ago_telegram_reported_the_person(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    bob = await on_bot(people, "Bob", "bob_x")
    async with app.database.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE users SET profile_at = now() - interval '3 days 2 hours'"
                " WHERE telegram_id = :t"
            ),
            {"t": bob.id},
        )
    summary = await up_to_summary(alice, "@bob_x")
    assert "Seller: Bob (@bob_x), as Telegram reported them 3 days ago" in summary.text


async def test_a_name_that_changes_hands_after_the_summary_does_not_move_the_deal(
    app: App, people
) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    bob = await on_bot(people, "Bob", "bob_x")
    await up_to_summary(alice, "@bob_x")
    # before Alice presses Create, Bob renames on Telegram and Carol takes @bob_x
    await people("Bob", "bob_renamed", user_id=bob.id).send("/start")
    carol = await on_bot(people, "Carol", "bob_x")

    await alice.press(CREATE)
    assert "✅ Deal created. @bob_renamed can accept it now." in alice.last.text
    [deal] = await deals_in_db(app)
    assert (deal["buyer"], deal["seller"]) == (alice.id, bob.id)
    assert not any("opened a deal with you" in m.text for m in carol.messages)


async def test_a_stale_holder_of_a_name_is_never_found(app: App, people) -> None:
    """Bob dropped @old_name on Telegram and has not written since; Carol holds
    it now and wrote to the bot: the wizard finds Carol, never Bob."""
    alice = await on_bot(people, "Alice", "alice_x")
    await on_bot(people, "Bob", "old_name")
    carol = await on_bot(people, "Carol", "Old_Name")
    await up_to_amount(alice, "@old_name")
    await alice.send("10")
    await alice.send("A lamp")
    assert "Seller: Carol (@Old_Name), as Telegram reported them just now" in alice.last.text
    await alice.press(CREATE)
    [deal] = await deals_in_db(app)
    assert deal["seller"] == carol.id


async def test_a_blocked_person_is_refused_at_their_step(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    bob = await on_bot(people, "Bob", "bob_x")
    async with app.database.engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET status = 'blocked' WHERE telegram_id = :t"), {"t": bob.id}
        )
    await alice.send("/new")
    await alice.press(BUYING)
    reply = await alice.send("@bob_x")
    assert reply.texts[0].startswith("⚠️ That user can't take part in deals.")
    assert alice.buttons() == [CANCEL]


@pytest.mark.parametrize("named_by", ["username", "id"])
async def test_only_the_counterparty_step_reads_the_database(
    app: App, people, sql, named_by: str
) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    bob = await on_bot(people, "Bob", "bob_x")
    await alice.send("/start")  # Alice's snapshot in L1
    counterparty = "@bob_x" if named_by == "username" else str(bob.id)
    steps = (
        lambda: alice.send("/new"),
        lambda: alice.press(BUYING),
        lambda: alice.send(counterparty),
        lambda: alice.press("USDT"),
        lambda: alice.send("100"),
        lambda: alice.send("A lamp"),
    )
    statements = []
    for step in steps:
        sql.start()
        await step()
        statements.append(len(sql.stop()))
    # who they are is looked up at their step (one read), nothing at any other
    assert statements == [0, 0, 1, 0, 0, 0]
    assert alice.buttons() == [CREATE, CANCEL]


async def block(app: App, user: SimulatedUser) -> None:
    async with app.database.engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET status = 'blocked' WHERE telegram_id = :t"), {"t": user.id}
        )


@pytest.mark.parametrize("named_by", ["id", "forward"])
async def test_a_blocked_person_named_by_id_or_forward_is_refused_at_their_step(
    app: App, people, named_by: str
) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    bob = await on_bot(people, "Bob", "bob_x")
    await block(app, bob)
    await alice.send("/new")
    await alice.press(BUYING)
    reply = await (alice.send(str(bob.id)) if named_by == "id" else alice.forward_from(bob))
    assert reply.texts[0].startswith("⚠️ That user can't take part in deals.")
    assert alice.buttons() == [CANCEL]
    carol = await on_bot(people, "Carol", "carol_x")
    await alice.send(str(carol.id))  # still at the step: someone else goes through
    assert alice.last.text.startswith("👤 On the bot: Carol (@carol_x)")


async def test_a_person_blocked_after_their_step_is_still_refused_at_create(
    app: App, people
) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    bob = await on_bot(people, "Bob", "bob_x")
    await up_to_summary(alice, str(bob.id))
    await block(app, bob)
    await alice.press(CREATE)
    assert alice.last.text.startswith("⚠️ That user can't take part in deals.")
    assert "No deal was created" in alice.last.text
    assert await deals_in_db(app) == []


async def test_an_id_nobody_on_the_bot_has_is_invited_only_when_asked(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    await alice.send("/new")
    await alice.press(BUYING)
    reply = await alice.send("4242")
    assert reply.texts == [
        "🤷 Nobody on the bot has Telegram ID 4242 yet. Check the number and retype it, "
        "or invite them with a link only that account can use."
    ]
    assert alice.buttons() == [INVITE_THEM, RETYPE, CANCEL]
    await alice.press(INVITE_THEM)
    assert "Which currency?" in alice.last.text
    await alice.press("USDT")
    await alice.send("10")
    await alice.send("A lamp")
    assert "Seller: Telegram ID 4242, by an invitation link only they can use" in alice.last.text
    await alice.press(CREATE)
    [row] = await invitations_in_db(app)
    assert (row["telegram_id"], row["username"]) == (4242, None)


async def test_a_forward_from_someone_not_on_the_bot_goes_on_as_their_invitation(
    app: App, people
) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    dave = people("Dave", "dave_new")  # never talked to the bot
    await alice.send("/new")
    await alice.press(SELLING)
    await alice.forward_from(dave)
    assert alice.last.text.startswith(
        "📨 @dave_new isn't on the bot yet: you'll get an invitation link only they can use."
    )
    await alice.press("USDT")
    await alice.send("10")
    await alice.send("A lamp")
    assert "Buyer: @dave_new, by an invitation link only they can use" in alice.last.text
    await alice.press(CREATE)
    [row] = await invitations_in_db(app)
    assert (row["telegram_id"], row["username"]) == (dave.id, None)


async def test_a_name_nobody_on_the_bot_holds_is_not_made_an_invitation_unasked(
    app: App, people
) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    await on_bot(people, "Bob", "bob_x")
    await alice.send("/new")
    await alice.press(BUYING)
    reply = await alice.send("@bob_xx")
    assert reply.texts == [
        "🤷 Nobody on the bot is @bob_xx yet. Check the spelling and retype it, or invite "
        "them with a link only @bob_xx can use."
    ]
    assert alice.buttons() == [INVITE_THEM, RETYPE, CANCEL]
    assert await invitations_in_db(app) == []

    await alice.press(RETYPE)  # the step again, in place
    assert "step 2 of 5" in alice.last.text and "Who is the seller?" in alice.last.text
    assert alice.buttons() == [INVITE, CANCEL]
    await alice.send("@bob_x")  # the name meant
    assert alice.last.text.startswith("👤 On the bot: Bob (@bob_x)")
    await alice.press("USDT")
    await alice.send("10")
    await alice.send("A lamp")
    await alice.press(CREATE)
    assert await invitations_in_db(app) == []
    assert (await deals_in_db(app))[0]["seller"] is not None


async def test_unknown_username_gets_an_invitation(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    await alice.send("/new")
    await alice.press(SELLING)
    await alice.send("@Carol_New")
    await alice.press(INVITE_THEM)
    assert "Which currency?" in alice.last.text
    await alice.press("USDT")
    await alice.send("100")
    await alice.send("A used road bike")
    assert "Buyer: @carol_new, by an invitation link only they can use" in alice.last.text
    await alice.press(CREATE)

    card, invitation = alice.messages[-2:]
    assert "@carol_new isn't on the bot yet: send them the invitation link below" in card.text
    assert "Only @carol_new can use it" in invitation.text
    link = LINK.search(invitation.text)
    assert link, invitation.text
    [row] = await invitations_in_db(app)
    assert (row["username"], row["telegram_id"]) == ("carol_new", None)

    stranger = people("Eve", "eve_x")
    await stranger.start(link.group(1))
    assert "addressed to someone else" in stranger.last.text

    carol = people("Carol", "carol_new")
    await carol.start(link.group(1))
    assert carol.buttons() == ["✅ Accept the deal", "Decline", "« Menu"]
    await carol.press("✅ Accept the deal")
    [deal] = await deals_in_db(app)
    assert (deal["status"], deal["buyer"], deal["seller"]) == ("accepted", carol.id, alice.id)


# -- bad input ----------------------------------------------------------------------------

BAD_AMOUNTS = [
    ("abc", "Send the amount as a number, like 1250.50."),
    ("-5", "The amount must be positive."),
    ("1e309", "Send the amount as a number, like 1250.50."),
    ("0.0000001", "USDT amounts have at most 2 decimal places."),
    ("1,000,000.50", "The maximum is 1,000,000.00 USDT."),
    ("0.99", "The minimum is 1.00 USDT."),
    ("0", "The amount must be more than zero."),
]


async def test_every_bad_amount_is_explained_and_asked_again(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    await on_bot(people, "Bob", "bob_x")
    await up_to_amount(alice, "@bob_x")
    for typed, reason in BAD_AMOUNTS:
        reply = await alice.send(typed)
        assert reply.texts == [
            f"⚠️ {reason}\n\nType the amount in USDT, from 1.00 USDT to 1,000,000.00 USDT."
        ], typed
        assert alice.buttons() == [CANCEL]

    await alice.send("1000000")
    assert "What is the deal for?" in alice.last.text
    await alice.send("A boat")
    assert "Amount: 1,000,000.00 USDT" in alice.last.text
    assert await deals_in_db(app) == []


async def test_an_amount_that_reads_two_ways_is_asked_back(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    await on_bot(people, "Bob", "bob_x")
    await alice.send("/new")
    await alice.press(BUYING)
    await alice.send("@bob_x")
    await alice.press("BTC")
    reply = await alice.send("1,500")
    assert reply.texts[0].startswith(
        "⚠️ Did you mean 1.500 or 1500? Send it as 1.5 or 1500.\n\nType the amount in BTC"
    )
    await alice.send("0,015")  # a leading 0 is never thousands: 0.015 BTC
    await alice.send("A GPU")
    assert "Amount: 0.015 BTC" in alice.last.text


async def test_description_too_long_or_empty_is_asked_again(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    await on_bot(people, "Bob", "bob_x")
    await up_to_amount(alice, "@bob_x")
    await alice.send("50")

    reply = await alice.send("x" * 501)
    assert reply.texts[0].startswith("⚠️ The description is too long: 501 characters, at most 500.")
    reply = await alice.send("   ")
    assert reply.texts[0].startswith("⚠️ The description can't be empty.")
    await alice.send("y" * 500)
    assert alice.buttons() == [CREATE, CANCEL]
    await alice.press(CREATE)
    [deal] = await deals_in_db(app)
    assert deal["description"] == "y" * 500


async def test_you_cant_deal_with_yourself(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    await alice.send("/new")
    await alice.press(BUYING)
    for attempt in ("@ALICE_X", str(alice.id)):
        reply = await alice.send(attempt)
        assert reply.texts[0].startswith("⚠️ You can't open a deal with yourself."), attempt
    reply = await alice.forward_from(alice)
    assert reply.texts[0].startswith("⚠️ You can't open a deal with yourself.")
    reply = await alice.send("@escrow_test_bot")
    assert reply.texts[0].startswith("⚠️ That's me, the escrow bot")
    reply = await alice.send("@no")
    assert reply.texts[0].startswith("⚠️ That doesn't look like a Telegram @username.")
    assert alice.buttons() == [CANCEL]

    await on_bot(people, "Bob", "bob_x")
    await alice.send("@bob_x")  # still at this step: someone else goes through
    assert "Which currency?" in alice.last.text


async def test_typing_where_a_button_is_expected_shows_the_buttons_again(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    await alice.send("/new")
    reply = await alice.send("buyer")
    assert reply.texts[0].startswith("👆 Please choose with the buttons.")
    assert alice.buttons() == [BUYING, SELLING, CANCEL]


# -- leaving ------------------------------------------------------------------------------


async def test_cancel_command_in_the_middle_changes_nothing(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    await on_bot(people, "Bob", "bob_x")
    await up_to_amount(alice, "@bob_x")
    await alice.send("100")

    reply = await alice.send("/cancel")
    assert reply.texts == [CANCELLED]
    reply = await alice.send("A used road bike")  # no longer a description
    assert "I didn't understand that" in reply.texts[0]
    reply = await alice.send("/cancel")
    assert reply.texts == [NOTHING_TO_CANCEL]
    assert await deals_in_db(app) == []


async def test_cancel_button_on_the_summary_changes_nothing(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    bob = await on_bot(people, "Bob", "bob_x")
    seen_by_bob = len(bob.messages)
    summary = await up_to_summary(alice, "@bob_x")

    await alice.press(CANCEL)
    assert alice.last.message_id == summary.message_id
    assert alice.last.text == CANCELLED
    assert alice.buttons() == ["« Menu"]
    assert await deals_in_db(app) == []
    assert len(bob.messages) == seen_by_bob
    reply = await alice.send("/cancel")
    assert reply.texts == [NOTHING_TO_CANCEL]


@pytest.mark.parametrize("step", ["role", "counterparty", "currency", "amount"])
async def test_cancel_button_at_every_step(app: App, people, step: str) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    await on_bot(people, "Bob", "bob_x")
    await alice.send("/new")
    if step != "role":
        await alice.press(BUYING)
    if step in ("currency", "amount"):
        await alice.send("@bob_x")
    if step == "amount":
        await alice.press("USDT")
    await alice.press(CANCEL)
    assert alice.last.text == CANCELLED
    assert (await alice.send("/cancel")).texts == [NOTHING_TO_CANCEL]


# -- stale buttons ------------------------------------------------------------------------


async def test_a_button_of_an_ended_wizard_does_nothing(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    await alice.send("/new")
    first = alice.last
    await alice.send("/cancel")

    reply = await alice.press(BUYING, message=first)
    assert reply.handled
    assert reply.texts == ["⌛ This new-deal wizard has ended. Send /new to open a deal."]
    assert alice.buttons() == ["➕ New deal", "« Menu"]
    assert (await alice.send("/cancel")).texts == [NOTHING_TO_CANCEL]

    [restarted] = (await alice.press("➕ New deal")).messages
    assert "step 1 of 5" in restarted.text
    assert restarted.buttons == [BUYING, SELLING, CANCEL]


def shown(result: UpdateResult, user: SimulatedUser) -> list[str]:
    """What the bot showed `user` in answer to an update: the messages it sent
    or edited, and the ones it meant to edit that already showed just that
    (Telegram answers "message is not modified")."""
    return [
        request.params["text"]
        for request in result.requests
        if request.method in ("sendMessage", "editMessageText")
        and request.params["chat_id"] == user.id
        and (request.error is None or "message is not modified" in str(request.error))
    ]


def warnings_in(*results: UpdateResult) -> list[str]:
    return [
        text
        for result in results
        for text in result.texts
        if "⚠️" in text or "already finished" in text or "earlier step" in text
    ]


async def test_create_pressed_twice_makes_one_deal(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    bob = await on_bot(people, "Bob", "bob_x")
    summary = await up_to_summary(alice, "@bob_x")
    first = await alice.press(CREATE)
    told_bob = len(bob.messages)

    again = await alice.press(CREATE, message=summary)  # what a slow client still shows

    # the second press is shown the success the first one was (also what a
    # press redelivered after its commit shows), never a warning
    (deal,) = await deals_in_db(app)
    for result in (first, again):
        (said,) = shown(result, alice)
        assert said.startswith("✅ Deal created. @bob_x can accept it now."), said
        assert f"Deal #{deal['code']}" in said
    assert warnings_in(first, again) == []
    assert alice.chat.messages[summary.message_id].text.startswith("✅ Deal created.")
    assert len(bob.messages) == told_bob  # told once


async def test_create_pressed_twice_at_once_makes_one_deal(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    await on_bot(people, "Bob", "bob_x")
    summary = await up_to_summary(alice, "@bob_x")

    replies = await asyncio.gather(alice.press(CREATE), alice.press(CREATE, message=summary))
    assert len(await deals_in_db(app)) == 1
    for reply in replies:
        (said,) = shown(reply, alice)
        assert said.startswith("✅ Deal created. @bob_x can accept it now.")
    assert warnings_in(*replies) == []


async def test_an_invitation_s_create_pressed_twice_shows_it_and_its_link_again(
    app: App, people
) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    summary = await up_to_summary(alice, None)
    replies = [await alice.press(CREATE), await alice.press(CREATE, message=summary)]

    [deal] = await deals_in_db(app)
    [row] = await invitations_in_db(app)
    for reply in replies:
        card, invitation = shown(reply, alice)
        assert card.startswith("✅ Deal created. Send the seller the invitation link below.")
        assert f"Deal #{deal['code']}" in card
        # the same one-time link (the first reply may never have arrived)
        assert LINK.search(invitation).group(1) == row["code"]
    assert warnings_in(*replies) == []

    bob = people("Bob", "bob_x")
    await bob.start(row["code"])
    await bob.press("✅ Accept the deal")
    # accepted since: Create pressed again shows the deal as it is now, no link
    reply = await alice.press(CREATE, message=summary)
    (said,) = shown(reply, alice)
    assert said.startswith("✅ Deal created. Here it is as it is now.")
    assert "accepted" in said
    assert len(await deals_in_db(app)) == 1


async def test_an_amount_posted_again_is_not_taken_as_the_description(app: App, people) -> None:
    """Telegram posts a message again when the replica handling it died before
    answering; if it had moved the wizard on, the amount must not become the
    description."""
    alice = await on_bot(people, "Alice", "alice_x")
    await on_bot(people, "Bob", "bob_x")
    await up_to_amount(alice, "@bob_x")
    amount = alice._message_update("100")
    await alice.feed(amount)
    assert "What is the deal for?" in alice.last.text

    again = await alice.feed(amount)

    (said,) = again.texts
    assert "What is the deal for?" in said  # the step it is at, asked again
    await alice.send("A used road bike")
    assert alice.buttons() == [CREATE, CANCEL]
    assert "A used road bike" in alice.last.text and "100.00 USDT" in alice.last.text


async def test_a_button_from_an_earlier_step_changes_nothing(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    await on_bot(people, "Bob", "bob_x")
    await alice.send("/new")
    await alice.press(BUYING)
    counterparty_screen = alice.last
    await alice.send("@bob_x")
    await alice.press("USDT")

    reply = await alice.press(INVITE, message=counterparty_screen)
    # said, with the step the wizard is at shown again (this press may have
    # moved it there on a replica that died before showing it)
    (said,) = reply.texts
    assert said.startswith(
        "That button is from an earlier step. Carry on with the newest message, or /cancel."
    )
    assert "step 4 of 5" in said and "How much?" in said
    assert alice.buttons() == [CANCEL]
    await alice.send("100")  # still at the amount step
    assert "What is the deal for?" in alice.last.text


# -- after Create: an unknown outcome, failures after the commit ---------------------------

UNCONFIRMED = "⚠️ We could not confirm that the deal was created."
WIZARD_FINISHED = "This new-deal wizard had already finished: the deal below was created."


async def notifications_of(app: App, code: str) -> list[str]:
    async with app.database.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT n.status FROM notifications n JOIN escrows e ON e.id = n.escrow_id"
                " WHERE e.code = :code"
            ),
            {"code": code},
        )
        return [row.status for row in rows]


def fail_next_commit(monkeypatch: pytest.MonkeyPatch, fault) -> None:
    """The next unit of work's COMMIT goes through `fault(uow, commit)` instead."""
    original = UnitOfWork.commit

    async def faulty(self: UnitOfWork) -> None:
        monkeypatch.setattr(UnitOfWork, "commit", original)  # once
        await fault(self, partial(original, self))

    monkeypatch.setattr(UnitOfWork, "commit", faulty)


async def test_create_after_a_commit_whose_answer_was_lost_makes_one_deal(
    app: App, people, monkeypatch
) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    bob = await on_bot(people, "Bob", "bob_x")
    seen_by_bob = len(bob.messages)
    summary = await up_to_summary(alice, "@bob_x")

    async def committed_then_lost(uow: UnitOfWork, commit) -> None:
        await commit()  # the server committed; its answer never arrived
        raise OperationalError("COMMIT", None, ConnectionResetError("connection reset"))

    fail_next_commit(monkeypatch, committed_then_lost)
    reply = await alice.press(CREATE)

    # told honestly, and Create can be pressed again on the same summary
    assert reply.texts[-1].startswith(UNCONFIRMED)
    assert "press ✅ Create deal again: it will not be created twice" in reply.texts[-1]
    assert alice.last.message_id == summary.message_id
    assert alice.buttons() == [CREATE, CANCEL]
    assert not any("Something went wrong" in t or "No deal was created" in t for t in reply.texts)
    [deal] = await deals_in_db(app)  # it was created

    await alice.press(CREATE)
    assert "✅ Deal created. @bob_x can accept it now." in alice.last.text
    assert code_on(alice.last) == deal["code"]
    assert len(await deals_in_db(app)) == 1
    # Bob is told once: by the outbox worker, from the first commit's row
    assert await notifications_of(app, deal["code"]) == ["pending"]
    assert len(bob.messages) == seen_by_bob
    async with app.database.engine.begin() as conn:
        await conn.execute(text("UPDATE notifications SET due_at = now()"))
    await app.outbox.run_once()
    assert len(bob.messages) == seen_by_bob + 1
    assert bob.last.text.startswith("📨 @alice_x opened a deal with you")
    assert (await alice.send("/cancel")).texts == [NOTHING_TO_CANCEL]


async def test_create_after_the_connection_died_before_commit_makes_the_deal_once(
    app: App, people, monkeypatch
) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    bob = await on_bot(people, "Bob", "bob_x")
    seen_by_bob = len(bob.messages)
    await up_to_summary(alice, "@bob_x")

    async def terminated(uow: UnitOfWork, commit) -> None:
        pid = (await uow.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with app.database.engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await commit()

    fail_next_commit(monkeypatch, terminated)
    reply = await alice.press(CREATE)
    assert reply.texts[-1].startswith(UNCONFIRMED)
    assert await deals_in_db(app) == []  # the server rolled it back

    await alice.press(CREATE)
    assert "✅ Deal created. @bob_x can accept it now." in alice.last.text
    [deal] = await deals_in_db(app)
    assert bob.last.text.startswith("📨 @alice_x opened a deal with you")
    assert len(bob.messages) == seen_by_bob + 1
    assert len(await notifications_of(app, deal["code"])) == 1


@pytest.mark.parametrize("leave", ["button", "command"])
async def test_cancel_after_an_unknown_outcome_shows_the_deal_it_made(
    app: App, people, monkeypatch, leave: str
) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    await on_bot(people, "Bob", "bob_x")
    await up_to_summary(alice, "@bob_x")

    async def committed_then_lost(uow: UnitOfWork, commit) -> None:
        await commit()
        raise OperationalError("COMMIT", None, ConnectionResetError("connection reset"))

    fail_next_commit(monkeypatch, committed_then_lost)
    await alice.press(CREATE)
    [deal] = await deals_in_db(app)

    reply = await (alice.press(CANCEL) if leave == "button" else alice.send("/cancel"))
    assert reply.texts[-1].startswith(WIZARD_FINISHED)
    assert f"Deal #{deal['code']}" in alice.last.text
    assert "Cancel deal" in alice.buttons()  # the card's own buttons
    assert CANCELLED not in reply.texts
    assert (await alice.send("/cancel")).texts == [NOTHING_TO_CANCEL]
    assert len(await deals_in_db(app)) == 1


async def test_a_deal_whose_summary_cant_be_edited_is_shown_as_a_new_card(
    app: App, people, telegram
) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    bob = await on_bot(people, "Bob", "bob_x")
    await up_to_amount(alice, "@bob_x")
    await alice.send("100")
    description_screen = alice.last
    assert alice.buttons(description_screen) == [CANCEL]
    summary = await up_to_summary_from_description(alice)
    telegram.fail_next("editMessageText", bad_request="message to edit not found")

    await alice.press(CREATE, message=summary)

    [deal] = await deals_in_db(app)
    assert alice.last.message_id != summary.message_id
    assert "✅ Deal created. @bob_x can accept it now." in alice.last.text
    assert bob.last.text.startswith("📨 @alice_x opened a deal with you")
    # an earlier screen's Cancel, pressed now, shows the deal the wizard made
    reply = await alice.press(CANCEL, message=description_screen)
    assert reply.texts[-1].startswith(WIZARD_FINISHED)
    assert f"Deal #{deal['code']}" in reply.texts[-1]
    assert not any("Something went wrong" in m.text for m in alice.messages)


async def up_to_summary_from_description(user: SimulatedUser) -> ChatMessage:
    await user.send("A used road bike")
    assert user.buttons() == [CREATE, CANCEL]
    return user.last


async def test_a_wizard_redis_failed_to_forget_creates_once(app: App, people, monkeypatch) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    await on_bot(people, "Bob", "bob_x")
    summary = await up_to_summary(alice, "@bob_x")
    storage, failed = app.storage, []
    original = storage.write

    async def write(key, state, data):
        if state is None and not failed:
            failed.append(key)
            raise RedisConnectionError("Connection reset by peer")
        await original(key, state, data)

    monkeypatch.setattr(storage, "write", write)
    await alice.press(CREATE)
    assert failed
    assert "✅ Deal created." in alice.last.text
    [deal] = await deals_in_db(app)

    # the wizard is still at its last step in Redis: Create again (what a slow
    # client still shows) finds the deal, and the card it became stays as it is
    reply = await alice.press(CREATE, message=summary)
    assert reply.methods == ["answerCallbackQuery", "editMessageText"]  # "not modified"
    assert f"Deal #{deal['code']}" in alice.chat.messages[summary.message_id].text
    assert not any("Something went wrong" in m.text for m in alice.messages)
    assert len(await deals_in_db(app)) == 1
    assert len(await notifications_of(app, deal["code"])) == 1
