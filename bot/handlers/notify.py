"""Telling the other party (and admins) what just happened to a deal.

Sent after the change committed. A party who never started the bot, or
blocked it, cannot be written to; that is logged, not an error of the update.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError

from bot import keyboards, texts
from bot.keyboards import Signer
from bot.services.money import Currencies
from bot.services.views import DealView

log = logging.getLogger(__name__)


async def notify_parties(
    bot: Bot,
    deal: DealView,
    actor_telegram_id: int,
    headline: str,
    currencies: Currencies,
    signer: Signer,
) -> None:
    """Send every party but the actor a fresh card of `deal` with `headline`."""
    parties = (
        (deal.buyer_id, deal.buyer_telegram_id),
        (deal.seller_id, deal.seller_telegram_id),
    )
    for user_id, telegram_id in parties:
        if user_id is None or telegram_id is None or telegram_id == actor_telegram_id:
            continue
        await notify_party(bot, deal, user_id, telegram_id, headline, currencies, signer)


async def notify_party(
    bot: Bot,
    deal: DealView,
    user_id: int,
    telegram_id: int,
    headline: str,
    currencies: Currencies,
    signer: Signer,
) -> bool:
    """Send one party a fresh card of `deal` with `headline`; False if Telegram refused."""
    money = currencies[deal.currency]
    try:
        await bot.send_message(
            telegram_id,
            texts.deal_card(deal, user_id, currencies, headline),
            reply_markup=keyboards.deal_keyboard(
                deal, user_id, telegram_id, signer, money.format(deal.amount)
            ),
        )
    except TelegramAPIError as exc:
        log.info("could not notify %s about deal %s: %s", telegram_id, deal.code, exc)
        return False
    return True


async def notify_admins(
    bot: Bot, admins: Iterable[int], deal: DealView, headline: str, currencies: Currencies
) -> None:
    for admin in admins:
        try:
            await bot.send_message(
                admin,
                texts.deal_card(deal, None, currencies, headline),
                reply_markup=keyboards.admin_deal_keyboard(deal),
            )
        except TelegramAPIError as exc:
            log.info("could not notify admin %s about deal %s: %s", admin, deal.code, exc)
