"""A press whose acknowledgement fails is still handled, and the failure is
never shown: Telegram answering 500 to answerCallbackQuery, or refusing a
second answer to a press it redelivered."""

from __future__ import annotations

import logging

from aiogram.exceptions import TelegramServerError
from prometheus_client import generate_latest

from bot.telegram.handlers.errors import UNEXPECTED
from db.models import DealStatus
from tests.e2e.conftest import balance
from tests.e2e.test_deals import open_deal, show, status_of

SOMETHING_WENT_WRONG = UNEXPECTED.split(".")[0]


def _server_error(call):
    return TelegramServerError(call, "Internal Server Error")


async def test_a_press_whose_answer_fails_is_handled_anyway(app, pair, telegram, caplog):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    await bob.press("✅ Accept")
    telegram.fail_next("answerCallbackQuery", error=_server_error)

    with caplog.at_level(logging.WARNING, logger="bot.telegram.middlewares"):
        result = await alice.press("💰 Fund 100.00 USDT")

    assert await status_of(app, deal) == DealStatus.FUNDED
    assert await balance(app, alice) == (400_00, 100_00)
    assert "funded — the money is held in escrow" in alice.last.text
    assert not any(SOMETHING_WENT_WRONG in t for t in result.texts)
    assert "not acknowledged" in caplog.text  # logged for the operator, not shown
    scrape = generate_latest(app.metrics.registry).decode()
    assert 'escrow_press_answers_failed_total{reason="telegram_error"} 1.0' in scrape


async def test_a_redelivered_press_is_not_reported_as_a_failure(app, pair, telegram):
    alice, bob = pair
    deal = await open_deal(app, alice)
    await show(bob, deal)
    update = bob.press_update("✅ Accept")
    await bob.feed(update)
    assert await status_of(app, deal) == DealStatus.ACCEPTED

    # Telegram posts the same press again (its webhook call timed out): the
    # answer is refused as Telegram refuses a second answer to one query.
    again = await bob.feed(update)

    # the only refusals: the second answer, and (the press now showing the
    # success it was) an edit Telegram finds identical to the card it shows
    refused = [r for r in again.requests if r.error is not None]
    assert [r.method for r in refused][:1] == ["answerCallbackQuery"]
    assert all("message is not modified" in str(r.error) for r in refused[1:])
    assert bob.last.text.startswith("✅ You accepted the deal.")
    assert not any(SOMETHING_WENT_WRONG in t for t in again.texts)
    assert await status_of(app, deal) == DealStatus.ACCEPTED
