"""Telegram's rates: what the bot sends on its own (notifications, from a
handler or the outbox worker) is paced per chat; replies to a user's own
presses and messages go at once, however quickly they tap. The pacer runs on a
clock that never moves and a sleep that only records, so every wait it asks
for is counted, never timed."""

from __future__ import annotations

from typing import Any

import pytest

from bot.runtime.app import App
from bot.runtime.limits import RetryAfter
from bot.runtime.send_rate import SendRate, pace_sends
from bot.sim import FakeTelegram, SimulatedUser
from tests.e2e.conftest import actor
from tests.e2e.test_deals import open_deal, show
from tests.e2e.test_outbox import make_due
from tests.runtime.test_telegram_limits import telegram_429

SENDS = ("sendMessage", "editMessageText", "editMessageReplyMarkup")


class Paced:
    """The app's pacer (config.toml's rates: 1 a second in a chat, bursts of 5)
    on a frozen clock, and the waits it asked for."""

    def __init__(self, app: App) -> None:
        self.waits: list[float] = []
        self.rate: SendRate = pace_sends(
            app.bot, app.dispatcher, app.config.runtime, clock=lambda: 1_000.0, sleep=self.sleep
        )

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def paced(app: App) -> Paced:
    assert app.config.runtime.chat_send_burst == 5
    assert app.config.runtime.chat_send_per_second == 1.0
    return Paced(app)


def sends_to(telegram: FakeTelegram, user: SimulatedUser) -> list[Any]:
    return [
        r
        for r in telegram.requests
        if r.method in SENDS and r.params.get("chat_id") == user.id and r.error is None
    ]


async def test_ten_quick_presses_are_answered_without_waiting_on_the_pacer(
    app, pair, paced, telegram
):
    alice, bob = pair
    affordable = await open_deal(app, alice)
    await app.services.deals.accept(await actor(app, bob), affordable.code)
    telegram.clear()
    await alice.send("/start")
    for screen in ("👛 Wallet", "« Menu", "📋 My deals", "« Menu", "❓ Help") * 2:
        await alice.press(screen)  # each press edits the message just tapped
    assert "How escrow works" in alice.last.text
    # a refusal told by the errors handler answers her press as well
    too_dear = await open_deal(app, alice, amount=900_00)
    await app.services.deals.accept(await actor(app, bob), too_dear.code)
    await show(alice, too_dear)
    await alice.press("💰 Fund 900.00 USDT")
    assert alice.last.text.startswith("⚠️ Not enough funds")
    # and a press that tells someone else: her card at once, his notification paced
    await show(alice, affordable)
    await alice.press("💰 Fund 100.00 USDT")
    assert "funded — the money is held in escrow" in alice.last.text
    assert bob.last.text.startswith("🔒 @alice_buys funded the deal")

    replies = sends_to(telegram, alice)
    assert len(replies) == 15  # /start, ten edits, /deal, refusal, /deal, card edit
    assert paced.rate.replies == len(replies)
    assert (paced.rate.paced, paced.rate.waited, paced.waits) == (1, 0, [])


async def test_notifications_to_one_chat_are_paced_after_a_burst(app, pair, paced, telegram):
    alice, bob = pair
    deals = [await open_deal(app, alice, description=f"Lamp {n}") for n in range(7)]
    telegram.clear()
    for deal in deals:  # Bob accepts seven deals quickly; each tells Alice
        await show(bob, deal)
        await bob.press("✅ Accept")
        assert bob.last.text.startswith("✅ You accepted the deal.")
    told = [r for r in sends_to(telegram, alice) if "accepted the deal" in r.params["text"]]
    assert len(told) == 6
    # Alice's chat: five at once, then one a second (the clock stands still, so
    # the waits add up); the seventh would have kept Bob's press waiting two
    # seconds, more than send_wait_in_update_seconds (1): left to the outbox
    # worker, nothing reserved. None of Bob's fourteen replies waited.
    assert app.config.runtime.send_wait_in_update_seconds == 1.0
    assert paced.waits == [1.0]
    assert (paced.rate.paced, paced.rate.waited, paced.rate.deferred) == (6, 1, 1)
    assert paced.rate.replies == len(sends_to(telegram, bob)) == 14
    # the worker sends it at its next tick (due at once, not after the grace),
    # waiting its turn in Alice's chat
    assert await app.outbox.run_once() == 1
    told = [r for r in sends_to(telegram, alice) if "accepted the deal" in r.params["text"]]
    assert len(told) == 7 and "Lamp 6" in told[-1].params["text"]
    assert paced.waits == [1.0, 2.0]


async def test_the_outbox_workers_sends_are_paced(app, pair, paced, telegram):
    alice, bob = pair
    for n in range(7):  # made without the bot: Bob's invitations wait in the outbox
        await open_deal(app, alice, description=f"Lamp {n}")
    telegram.clear()
    await make_due(app)
    assert await app.outbox.run_once() == 7
    assert len(sends_to(telegram, bob)) == 7
    assert paced.waits == [1.0, 2.0]
    assert (paced.rate.replies, paced.rate.paced, paced.rate.waited) == (0, 7, 2)


async def test_a_throttled_reply_waits_out_telegrams_retry_after_not_the_pacer(app, pair, telegram):
    alice, _ = pair
    retried: list[float] = []

    async def sleep(seconds: float) -> None:
        retried.append(seconds)

    # as `python -m bot run` wires them: the retries outside, the pacer inside
    app.bot.session.middleware(RetryAfter(sleep=sleep))
    paced = Paced(app)
    await alice.send("/start")
    for _ in range(3):
        await alice.press("👛 Wallet")
        await alice.press("« Menu")
    telegram.fail_next("editMessageText", error=telegram_429(telegram, app.bot, 3))
    await alice.press("👛 Wallet")
    assert "Your wallet" in alice.last.text  # shown, after Telegram's 3 seconds
    assert retried == [3]
    assert (paced.rate.paced, paced.waits) == (0, [])
