"""Invitations reach their invitee without the link: someone a deal was
addressed to (by @username or Telegram id) is told on opening the bot and
finds the deal in their lists, and only they do; the creator shares the link
with a Share button."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import text

from bot.runtime.app import App
from bot.sim import SimulatedUser

LINK = re.compile(r"https://t\.me/escrow_test_bot\?start=([A-Za-z0-9_-]+)")
INVITE_THEM, WAITING = "🔗 Invite them with a link", "📨 Waiting for you"
TOLD = "📨 A deal is waiting for you to accept it."


async def on_bot(people, name: str, username: str | None = None, **kwargs: Any) -> SimulatedUser:
    user = people(name, username, **kwargs)
    await user.start()
    return user


async def deal_for(seller: SimulatedUser, counterparty: str) -> str:
    """The seller opens a deal for someone nobody on the bot is yet, invited by
    a link; the deal's code."""
    await seller.send("/new")
    await seller.press("I'm selling")
    await seller.send(counterparty)
    await seller.press(INVITE_THEM)
    await seller.press("USDT")
    await seller.send("100")
    await seller.send("A used road bike")
    await seller.press("✅ Create deal")
    found = re.search(r"Deal #([A-Z0-9]+)", seller.messages[-2].text)
    assert found, seller.messages[-2].text
    return found.group(1)


async def deal_row(app: App, code: str) -> dict[str, Any]:
    async with app.database.engine.connect() as conn:
        row = await conn.execute(
            text(
                "SELECT e.status, b.telegram_id AS buyer, s.telegram_id AS seller FROM escrows e"
                " LEFT JOIN users b ON b.id = e.buyer_id LEFT JOIN users s ON s.id = e.seller_id"
                " WHERE e.code = :code"
            ),
            {"code": code},
        )
        return dict(row.one()._mapping)


async def test_an_invitee_new_to_the_bot_finds_the_deal_without_the_link(
    app: App, people, sql
) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    code = await deal_for(alice, "@bob_new")

    bob = people("Bob", "Bob_New")  # opens the bot for the first time, without the link
    reply = await bob.start()
    (menu,) = reply.texts
    assert menu.startswith(TOLD)
    assert bob.buttons()[0] == WAITING
    sql.start()
    await bob.press(WAITING)
    assert len(sql.stop()) == 1  # the list's one read, as every list
    listed = bob.last.text
    assert listed.startswith("📋 Deals waiting for you")
    assert f"#{code} · 100.00 USDT · invites you · with @alice_x" in listed
    await bob.press(f"📨 #{code} · 100.00 USDT · invites you")
    assert bob.last.text.startswith("📨 You are invited to this deal. Accept it to take part.")
    assert f"Deal #{code}" in bob.last.text
    assert bob.buttons() == ["✅ Accept the deal", "Decline", "« Menu"]

    await bob.press("✅ Accept the deal")
    assert bob.last.text.startswith("✅ You joined the deal.")
    assert alice.last.text.startswith("✅ @Bob_New accepted your invitation.")
    assert await deal_row(app, code) == {"status": "accepted", "buyer": bob.id, "seller": alice.id}

    # told once: the menu read from the cache says nothing more, and costs no SQL
    sql.start()
    reply = await bob.start()
    assert sql.stop() == []
    assert not reply.texts[0].startswith(TOLD)
    await bob.press("📋 My deals")
    assert f"#{code} · 100.00 USDT · waiting for you to fund · with @alice_x" in bob.last.text


async def test_someone_with_another_name_does_not_see_it(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    code = await deal_for(alice, "@bob_new")
    for eve in (people("Eve", "bob_new_2"), people("Evan")):
        reply = await eve.start()
        assert not reply.texts[0].startswith(TOLD)
        assert WAITING not in eve.buttons()
        await eve.press("📋 My deals")
        assert f"#{code}" not in eve.last.text
        await eve.press("Waiting for me")
        assert "Nothing here yet." in eve.last.text
    assert (await deal_row(app, code))["status"] == "pending"


async def test_an_invitation_by_telegram_id_is_found_by_that_id(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    code = await deal_for(alice, "777001")
    other = await on_bot(people, "Olga")
    await other.press("📋 My deals")
    assert f"#{code}" not in other.last.text

    dan = people("Dan", user_id=777001)  # no @username: the id is the address
    reply = await dan.start()
    assert reply.texts[0].startswith(TOLD)
    await dan.press(WAITING)
    await dan.press(f"📨 #{code} · 100.00 USDT · invites you")
    await dan.press("✅ Accept the deal")
    assert (await deal_row(app, code))["buyer"] == dan.id


async def test_renaming_to_the_invited_name_finds_it_then(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    dave = await on_bot(people, "Dave", "dave_old")
    code = await deal_for(alice, "@dave_new")
    await dave.press("📋 My deals")
    assert f"#{code}" not in dave.last.text

    # Dave takes @dave_new on Telegram: matched when he next opens the bot
    dave = people("Dave", "dave_new", user_id=dave.id)
    reply = await dave.start()
    assert reply.texts[0].startswith(TOLD)
    await dave.press(WAITING)
    assert f"#{code} · 100.00 USDT · invites you" in dave.last.text


async def test_a_claimed_invitation_stays_with_its_claimer_not_the_name(app: App, people) -> None:
    """Bob opened the bot as @bob_new after the deal was addressed to that name:
    it is his. He renames and Carol takes @bob_new: she neither sees the deal
    nor can take it up with its link; Bob still can."""
    alice = await on_bot(people, "Alice", "alice_x")
    code = await deal_for(alice, "@bob_new")
    link = LINK.search(alice.last.text)
    assert link, alice.last.text
    bob = await on_bot(people, "Bob", "bob_new")
    bob = people("Bob", "bob_renamed", user_id=bob.id)
    await bob.start()
    carol = await on_bot(people, "Carol", "bob_new")
    assert not carol.messages[-1].text.startswith(TOLD)
    await carol.press("📋 My deals")
    assert f"#{code}" not in carol.last.text
    await carol.start(link.group(1))
    assert "addressed to someone else" in carol.last.text

    await bob.press("📋 My deals")
    assert f"#{code} · 100.00 USDT · invites you" in bob.last.text
    await bob.start(link.group(1))
    await bob.press("✅ Accept the deal")
    assert (await deal_row(app, code))["buyer"] == bob.id


async def test_the_invitation_message_has_a_share_button(app: App, people) -> None:
    alice = await on_bot(people, "Alice", "alice_x")
    code = await deal_for(alice, "@bob_new")
    invitation = alice.last
    link = LINK.search(invitation.text)
    assert link, invitation.text
    [[share]] = invitation.keyboard
    assert share.text == "📤 Share the invitation"
    assert share.callback_data is None and share.url is not None
    url = urlsplit(share.url)
    assert (url.scheme, url.netloc, url.path) == ("https", "t.me", "/share/url")
    query = parse_qs(url.query, strict_parsing=True)
    assert query["url"] == [link.group(0)]
    [shared] = query["text"]
    assert shared == (
        f"Escrow deal #{code}: 100.00 USDT for “A used road bike”. Open the link to see it."
    )
