"""A refusal is never a dead end: it comes with the buttons that resolve it
(bot/telegram/refusals.py, `RESOLVED_BY`), and pressing them leads there."""

from __future__ import annotations

from bot.telegram.keyboards import WalletMenu
from tests.e2e.conftest import actor, balance
from tests.e2e.test_deals import open_deal, show, status_of


async def test_funding_without_the_money_offers_a_deposit_that_opens_the_deposit_form(app, pair):
    alice, bob = pair
    deal = await open_deal(app, alice, amount=900_00)
    await app.services.deals.accept(await actor(app, bob), deal.code)
    await show(alice, deal)
    card = alice.last
    await alice.press("💰 Fund 900.00 USDT")
    refusal = alice.last
    assert refusal.text == "⚠️ Not enough funds: funding needs 900.00 USDT available."
    assert refusal.buttons == ["➕ Deposit USDT", "« Menu"]
    assert refusal.find_button("➕ Deposit USDT").callback_data == (
        WalletMenu(screen="deposit", currency="USDT").pack()
    )
    assert await status_of(app, deal) == "accepted"  # nothing changed
    assert alice.buttons(card)[0] == "💰 Fund 900.00 USDT"  # the card stays as it was

    # the deposit form of the deal's currency, in place of the refusal
    await alice.press("➕ Deposit USDT")
    assert alice.last.message_id == refusal.message_id
    assert "Deposit USDT" in alice.last.text and "How much?" in alice.last.text
    await alice.send("400")
    assert alice.last.text.startswith("✅ Deposited 400.00 USDT.")
    # and the card's own button now funds it
    await alice.press("💰 Fund 900.00 USDT", message=card)
    assert await status_of(app, deal) == "funded"
    assert await balance(app, alice) == (0, 900_00)


async def test_an_unknown_deal_code_offers_my_deals(app, pair):
    alice, _ = pair
    deal = await open_deal(app, alice)
    await alice.send("/deal ZZZZ2222")
    assert alice.last.text == "⚠️ No such deal."
    assert alice.buttons() == ["📋 My deals", "« Menu"]
    await alice.press("📋 My deals")
    assert "Active deals" in alice.last.text and f"#{deal.code}" in alice.last.text


async def test_someone_elses_deal_offers_their_own_deals(app, pair, people):
    alice, _ = pair
    deal = await open_deal(app, alice)
    mallory = people("Mallory", "mallory_m")
    await mallory.start()
    await mallory.send(f"/deal {deal.code}")
    assert mallory.last.text == "⚠️ No such deal."  # not told the deal exists
    await mallory.press("📋 My deals")
    assert "Nothing here yet." in mallory.last.text


async def test_a_used_invitation_offers_my_deals_and_the_menu(app, pair, people):
    alice, _ = pair
    created = await app.services.deals.create(
        await actor(app, alice),
        role="buyer",
        currency="USDT",
        amount=100_00,
        description="Logo",
        counterparty=None,
    )
    code = created.value.invitation.code
    carol, dave = people("Carol", "carol_new"), people("Dave", "dave_late")
    await carol.start(code)
    await dave.start(code)
    await dave.press("✅ Accept the deal")  # Dave is first
    await carol.press("✅ Accept the deal")  # on the invitation she was shown
    assert carol.last.text == "⚠️ This invitation has already been used or withdrawn."
    assert carol.buttons() == ["📋 My deals", "« Menu"]
    await carol.press("« Menu")
    assert "What would you like to do?" in carol.last.text


async def test_a_dispute_reason_for_a_deal_that_moved_on_leads_back_to_the_deal(app, pair):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await app.services.deals.accept(await actor(app, bob), deal.code)
    await app.services.deals.fund(await actor(app, alice), deal.code)
    await show(alice, deal)
    await alice.press("⚠️ Open a dispute")
    # meanwhile Bob refunds her: there is nothing to dispute any more
    await app.services.deals.cancel(await actor(app, bob), deal.code)
    await alice.send("It never arrived")
    assert alice.last.text.startswith(f"⚠️ Deal {deal.code} is already refunded to the buyer")
    assert alice.buttons() == [f"📄 Deal #{deal.code}", "📋 My deals", "« Menu"]
    await alice.press(f"📄 Deal #{deal.code}")
    assert f"Deal #{deal.code}" in alice.last.text and "refunded" in alice.last.text
