"""One place where failures become replies.

A domain error (a refusal: nothing changed) is told to the user as it is. Any
other error gets a polite reply with a short reference that is logged with the
traceback, so support can find it. That reply claims nothing about what
changed: it can't know (a handler's use case may have committed before the
failure; handlers keep what fails after a commit from getting here, see
bot/telegram/handlers/committed.py).
"""

from __future__ import annotations

import logging
import secrets

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import ExceptionTypeFilter, Filter
from aiogram.types import ErrorEvent, InlineKeyboardMarkup

from bot.services.errors import EscrowError
from bot.services.money import Currencies
from bot.telegram import keyboards, texts
from bot.telegram.i18n import N_, _
from bot.telegram.redis_guard import StateUnavailable, StateUnread
from bot.telegram.refusals import refusal_text
from bot.telegram.resolutions import refusal_keyboard

log = logging.getLogger(__name__)

UNEXPECTED = N_(
    "😕 Something went wrong on our side. Please check the deal or your wallet "
    "before you try again. (ref <code>{ref}</code>)"
)


def _chat_id(event: ErrorEvent) -> int | None:
    update = event.update
    if update.message is not None:
        return update.message.chat.id
    if update.callback_query is not None:
        return update.callback_query.from_user.id
    return None


async def _tell(
    bot: Bot, event: ErrorEvent, text: str, markup: InlineKeyboardMarkup | None = None
) -> None:
    chat_id = _chat_id(event)
    if chat_id is None:
        return
    try:
        await bot.send_message(chat_id, text, reply_markup=markup)
    except TelegramAPIError:
        log.warning("could not tell chat %s about a failed update", chat_id, exc_info=True)


async def refused(event: ErrorEvent, bot: Bot, currencies: Currencies) -> None:
    """A new message, under the press or message refused (a press was answered
    before its handler ran, so a refusal can't be its alert; the card pressed
    stays as it was, since nothing changed), with the buttons that resolve it."""
    error = event.exception
    assert isinstance(error, EscrowError)
    await _tell(bot, event, f"⚠️ {refusal_text(error, currencies)}", refusal_keyboard(error))


async def message_not_read(event: ErrorEvent, bot: Bot) -> None:
    """Redis failed reading the sender's form state: the message was not handled."""
    log.warning("update %s not handled: %s", event.update.update_id, event.exception)
    await _tell(bot, event, _(texts.MESSAGE_NOT_READ), keyboards.back_to_menu())


async def form_unavailable(event: ErrorEvent, bot: Bot) -> None:
    """Redis failed writing (or reading) a form's state before its use case ran."""
    log.warning("update %s: form state unavailable: %s", event.update.update_id, event.exception)
    await _tell(bot, event, _(texts.FORM_UNAVAILABLE), keyboards.back_to_menu())


class NotModified(Filter):
    """Telegram refuses an edit that changes nothing (a second press of the tab
    already shown, a refresh of an unchanged card): the user sees what they
    asked for, so there is nothing to report."""

    async def __call__(self, event: ErrorEvent) -> bool:
        error = event.exception
        return isinstance(error, TelegramBadRequest) and "message is not modified" in error.message


async def nothing_changed(event: ErrorEvent) -> None:
    return None


async def unexpected(event: ErrorEvent, bot: Bot) -> None:
    ref = secrets.token_hex(3)
    log.error(
        "update %s failed [ref %s]",
        event.update.update_id,
        ref,
        exc_info=(type(event.exception), event.exception, event.exception.__traceback__),
    )
    await _tell(bot, event, _(UNEXPECTED).format(ref=ref))


def router() -> Router:
    router = Router(name="errors")
    router.errors.register(refused, ExceptionTypeFilter(EscrowError))
    router.errors.register(message_not_read, ExceptionTypeFilter(StateUnread))
    router.errors.register(form_unavailable, ExceptionTypeFilter(StateUnavailable))
    router.errors.register(nothing_changed, NotModified())
    router.errors.register(unexpected)  # whatever the others did not take
    return router
