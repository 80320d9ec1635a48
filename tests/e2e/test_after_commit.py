"""After a use case committed, whatever fails next (Telegram refusing the edit,
a flood wait past its retries, Redis failing to forget the form) must not
reach the catch-all: the user is told what happened, the other party gets
their notification, and a finished form can't be submitted or cancelled again
as if nothing had happened."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import text

from bot.runtime.app import App
from bot.services.views import DealView
from bot.sim import SimulatedUser
from bot.sim.chats import ChatMessage
from bot.telegram.keyboards import WalletMenu
from db.models import DealStatus
from tests.e2e.conftest import actor, balance
from tests.e2e.test_deals import open_deal, show, status_of
from tests.e2e.test_wallet import fund, withdrawals

GONE = "message to edit not found"
FAILED = ("Something went wrong", "nothing was changed", "Nothing was changed")


def told_nothing_false(*users: SimulatedUser) -> None:
    """No message any of `users` holds claims an error or that nothing changed."""
    for user in users:
        for message in user.messages:
            assert not any(words in message.text for words in FAILED), message.text


class ForgettingFails:
    """The FSM storage fails to forget a form (Redis unreachable just then)."""

    def __init__(self, app: App, monkeypatch: pytest.MonkeyPatch) -> None:
        self.failures = 0
        self.failed = 0
        storage = app.storage
        original = storage.write

        async def write(key: Any, state: Any, data: Any) -> None:
            if state is None and self.failures:
                self.failures -= 1
                self.failed += 1
                raise RedisConnectionError("Connection reset by peer")
            await original(key, state, data)

        monkeypatch.setattr(storage, "write", write)

    def next(self, times: int = 1) -> None:
        self.failures = times


@pytest.fixture
def forgetting(app: App, monkeypatch: pytest.MonkeyPatch) -> ForgettingFails:
    return ForgettingFails(app, monkeypatch)


async def accepted_deal(app: App, alice: SimulatedUser, bob: SimulatedUser) -> DealView:
    deal = await open_deal(app, alice)
    await app.services.deals.accept(await actor(app, bob), deal.code)
    await show(alice, deal)
    return deal


# -- deal actions ------------------------------------------------------------------------


async def test_a_card_that_cant_be_edited_gets_the_result_as_a_new_message(app, pair, telegram):
    alice, bob = pair
    deal = await accepted_deal(app, alice, bob)
    card = alice.last
    telegram.fail_next("editMessageText", bad_request=GONE)

    result = await alice.press("💰 Fund 100.00 USDT")

    assert await status_of(app, deal) == DealStatus.FUNDED
    assert await balance(app, alice) == (400_00, 100_00)
    # the result as a new message, with the card's buttons as they are now
    assert alice.last.message_id != card.message_id
    assert alice.last.text.startswith("🔒 Funded: the money is held in escrow.")
    assert "⚠️ Open a dispute" in alice.buttons()
    assert result.methods.count("sendMessage") == 2  # Alice's result, then Bob's notification
    assert bob.last.text.startswith("🔒 @alice_buys funded the deal")
    told_nothing_false(alice, bob)


async def test_a_flood_wait_past_the_retries_is_logged_and_bob_still_hears(
    app, pair, telegram, caplog
):
    alice, bob = pair
    deal = await accepted_deal(app, alice, bob)
    await alice.press("💰 Fund 100.00 USDT")
    await alice.press("✅ Release payment")
    seen_by_alice = len(alice.messages)
    # Telegram refuses both the edit and the new message with a long flood wait
    telegram.fail_next("editMessageText", retry_after=600)
    telegram.fail_next("sendMessage", retry_after=600)

    with caplog.at_level(logging.INFO):
        await alice.press("✅ Yes, release the payment")

    assert await status_of(app, deal) == DealStatus.RELEASED
    assert await balance(app, bob) == (98_50, 0)
    assert bob.last.text.startswith("✅ @alice_buys released the payment")
    assert len(alice.messages) == seen_by_alice  # nothing reached her, nothing false either
    told_nothing_false(alice, bob)
    assert any("committed result" in record.getMessage() for record in caplog.records)


async def test_a_dispute_whose_form_cant_be_forgotten_is_not_opened_twice(
    app, pair, people, forgetting
):
    alice, bob = pair
    admin = people.admin()
    await admin.start()
    deal = await accepted_deal(app, alice, bob)
    await alice.press("💰 Fund 100.00 USDT")
    await alice.press("⚠️ Open a dispute")
    forgetting.next()

    await alice.send("It never arrived")

    assert forgetting.failed == 1
    assert await status_of(app, deal) == DealStatus.DISPUTED
    assert alice.last.text.startswith("⚠️ Dispute opened. An admin will look at it.")
    assert "opened a dispute" in bob.last.text
    assert admin.last.text.startswith("🛡 New dispute opened by @alice_buys (the buyer).")
    told_nothing_false(alice, bob)
    # the form is still there (Redis did not forget it), the deal refuses it
    await alice.send("It still never arrived")
    assert "in dispute; you can't open a dispute now" in alice.last.text
    async with app.database.engine.connect() as conn:
        disputes = await conn.scalar(
            text(
                "SELECT count(*) FROM deal_events WHERE escrow_id = :i AND to_status = 'disputed'"
            ),
            {"i": deal.id},
        )
    assert disputes == 1


async def test_a_joined_invitation_whose_card_is_gone_is_still_told(app, pair, people, telegram):
    alice, _ = pair
    created = await app.services.deals.create(
        await actor(app, alice),
        role="buyer",
        currency="USDT",
        amount=100_00,
        description="Logo",
        counterparty=None,
    )
    carol = people("Carol", "carol_new")
    await carol.start(created.value.invitation.code)
    telegram.fail_next("editMessageText", bad_request="message can't be edited")

    await carol.press("✅ Accept the deal")

    assert await status_of(app, created.value.deal) == DealStatus.ACCEPTED
    assert carol.last.text.startswith("✅ You joined the deal.")
    assert alice.last.text.startswith("✅ @carol_new accepted your invitation.")
    told_nothing_false(alice, carol)


# -- wallet forms --------------------------------------------------------------------------


async def deposit_form(user: SimulatedUser, currency: str = "USDT") -> ChatMessage:
    await user.send("/wallet")
    await user.press("➕ Deposit")
    await user.press(currency)
    return user.last


async def test_a_deposit_whose_form_cant_be_forgotten_is_credited_once(app, alice, forgetting):
    form = await deposit_form(alice)
    assert alice.buttons(form) == ["✖️ Cancel"]
    forgetting.next()

    await alice.send("25")

    assert forgetting.failed == 1
    assert await balance(app, alice) == (25_00, 0)
    assert alice.last.text.startswith("✅ Deposited 25.00 USDT.")
    assert alice.chat.messages[form.message_id].buttons == []  # the finished form's Cancel
    # the form is still in Redis: another amount typed into it is the same deposit
    await alice.send("25")
    assert alice.last.text.startswith("This deposit was already credited; nothing changed.")
    assert await balance(app, alice) == (25_00, 0)


async def test_an_old_deposit_forms_cancel_says_it_had_finished(app, alice):
    form = await deposit_form(alice)
    await alice.send("lots")  # asked again, with a Cancel of its own
    asked_again = alice.last
    assert alice.buttons(asked_again) == ["✖️ Cancel"]
    await alice.send("10")
    assert alice.chat.messages[form.message_id].buttons == []

    reply = await alice.press("✖️ Cancel", message=asked_again)

    [shown] = reply.messages
    assert shown.message_id == asked_again.message_id
    assert shown.text.startswith("That form had already finished")
    assert "USDT: 10.00 USDT available" in shown.text  # the wallet as it is now
    assert "Nothing was changed" not in shown.text
    assert await balance(app, alice) == (10_00, 0)


@pytest.fixture
async def alice(app: App, people) -> SimulatedUser:
    alice = people("Alice", "alice_w")
    await alice.start()
    return alice


async def test_a_requested_withdrawal_is_shown_when_its_confirmation_cant_be_edited(
    app, alice, people, telegram
):
    admin = people.admin()
    await admin.start()
    await fund(app, alice, 100_00)
    await alice.send("/wallet")
    await alice.press("➖ Withdraw")
    await alice.press(callback_data=WalletMenu(screen="withdraw", currency="USDT").pack())
    amount_form = alice.last
    await alice.send("lots")
    asked_again = alice.last
    await alice.send("30")
    destination_form = alice.last
    await alice.send("acct-7")
    confirm = alice.last
    telegram.fail_next("editMessageText", bad_request=GONE)

    await alice.press("✅ Confirm withdrawal", message=confirm)

    assert await balance(app, alice) == (70_00, 30_00)
    assert await withdrawals(app, alice) == [(30_00, "pending")]
    assert alice.last.text.startswith("✅ Withdrawal #1 requested: 30.00 USDT to acct-7.")
    assert admin.last.text.startswith("🛡 New withdrawal request #1 from @alice_w")
    # the finished form's messages lose their Cancel
    for message in (amount_form, destination_form):
        assert alice.chat.messages[message.message_id].buttons == []
    # and a Cancel it left behind says the form had finished, with the wallet now
    [shown] = (await alice.press("✖️ Cancel", message=asked_again)).messages
    assert shown.text.startswith("That form had already finished")
    assert "USDT: 70.00 USDT available · 30.00 USDT held" in shown.text
    assert await withdrawals(app, alice) == [(30_00, "pending")]
    told_nothing_false(alice, admin)


# -- admins --------------------------------------------------------------------------------


async def test_a_settled_dispute_is_shown_to_the_admin_when_the_card_is_gone(
    app, pair, people, telegram
):
    from tests.e2e.test_admin import disputed_deal, open_dispute

    alice, bob = pair
    admin = people.admin()
    await admin.start()
    deal = await disputed_deal(app, alice, bob)
    await open_dispute(admin, deal)
    await admin.press("↩️ Refund buyer")
    telegram.fail_next("editMessageText", bad_request=GONE)

    await admin.press("↩️ Yes, refund the buyer")

    assert await status_of(app, deal) == DealStatus.REFUNDED
    assert await balance(app, alice) == (500_00, 0)
    assert admin.last.text.startswith("↩️ Refunded to the buyer.")
    settled = "🛡 An admin settled the dispute: the buyer is refunded."
    assert alice.last.text.startswith(settled) and bob.last.text.startswith(settled)
    told_nothing_false(admin, alice, bob)


async def test_an_approved_withdrawal_whose_screen_is_gone_still_reaches_its_owner(
    app, alice, people, telegram
):
    admin = people.admin()
    await admin.start()
    await fund(app, alice, 100_00)
    await app.services.wallets.request_withdrawal(await actor(app, alice), "USDT", 40_00, "acct")
    await admin.send("/admin")
    await admin.press("🏦 Pending withdrawals")
    await admin.press("✅ Approve #1")
    telegram.fail_next("editMessageText", bad_request=GONE)

    await admin.press("✅ Yes, it was sent")

    assert await balance(app, alice) == (60_00, 0)
    assert admin.last.text.startswith("✅ Withdrawal #1 approved: 40.00 USDT.")
    assert alice.last.text.startswith("✅ Your withdrawal #1 of 40.00 USDT to acct")
    told_nothing_false(admin, alice)


async def test_a_manual_credit_whose_confirmation_is_gone_is_still_told(
    app, alice, people, telegram
):
    admin = people.admin()
    await admin.start()
    await admin.send("/admin")
    await admin.press("💰 Credit a deposit")
    await admin.send(str(alice.id))
    await admin.press("USDT")
    await admin.send("12")
    telegram.fail_next("editMessageText", bad_request=GONE)

    await admin.press("✅ Credit 12.00 USDT")

    assert await balance(app, alice) == (12_00, 0)
    assert admin.last.text.startswith("✅ Credited 12.00 USDT to @alice_w")
    assert alice.last.text.startswith("💰 An admin credited 12.00 USDT.")
    told_nothing_false(admin, alice)


async def test_a_rejection_whose_reply_and_form_cleanup_fail_still_reaches_its_owner(
    app, alice, people, telegram, forgetting
):
    admin = people.admin()
    await admin.start()
    await fund(app, alice, 100_00)
    await app.services.wallets.request_withdrawal(await actor(app, alice), "USDT", 40_00, "acct")
    await admin.send("/admin")
    await admin.press("🏦 Pending withdrawals")
    await admin.press("✖️ Reject #1")
    seen_by_admin = len(admin.messages)
    forgetting.next()
    telegram.fail_next("sendMessage", retry_after=600)  # the admin's own reply

    await admin.send("Wrong network")

    assert forgetting.failed == 1
    assert await balance(app, alice) == (100_00, 0)
    assert await withdrawals(app, alice) == [(40_00, "rejected")]
    assert alice.last.text.startswith("✖️ Your withdrawal #1 of 40.00 USDT was rejected:")
    assert len(admin.messages) == seen_by_admin  # no false "something went wrong" either
    # the note form Redis did not forget: the withdrawal refuses a second decision
    await admin.send("Wrong network, again")
    assert "Withdrawal #1 is already rejected." in admin.last.text
    assert await balance(app, alice) == (100_00, 0)
    told_nothing_false(admin, alice)


# -- a form's last message posted again (its replica died before answering) -----------


async def test_a_deposit_amount_posted_again_gets_its_result_not_a_puzzle(app, alice):
    await deposit_form(alice)
    amount = alice._message_update("10")
    await alice.feed(amount)
    assert alice.last.text.startswith("✅ Deposited 10.00 USDT.")

    again = await alice.feed(amount)  # Telegram posts it again

    (said,) = again.texts
    assert said.startswith("That message was already taken:\n\n✅ Deposited 10.00 USDT.")
    assert await balance(app, alice) == (10_00, 0)  # credited once


async def test_a_dispute_reason_posted_again_gets_the_deal_as_it_is(app, pair):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    await bob.press("✅ Accept")
    await alice.press("💰 Fund 100.00 USDT")
    await alice.press("⚠️ Open a dispute")
    reason = alice._message_update("It never arrived")
    await alice.feed(reason)
    assert await status_of(app, deal) == DealStatus.DISPUTED

    again = await alice.feed(reason)

    (said,) = again.texts
    assert said.startswith("That message was already taken:")
    assert f"Deal #{deal.code}" in said and "in dispute" in said
    assert "didn't understand" not in said
    async with app.database.engine.connect() as conn:
        disputes = await conn.scalar(
            text(
                "SELECT count(*) FROM deal_events WHERE escrow_id = :i AND to_status = 'disputed'"
            ),
            {"i": deal.id},
        )
    assert disputes == 1
