"""Telling the user about a change that is already committed.

Once a use case has committed, nothing that fails afterwards may reach the
catch-all (bot/telegram/handlers/errors.py), which can't know what changed, nor keep
the other party's notification from being sent: Telegram refusing the edit
(the message was deleted or is too old, a flood wait past its retries, the
network) falls back to a new message; that failing too, a read for the
reply failing, or Redis failing to forget the finished form is logged. What
keeps a form that could not be forgotten from being submitted twice is its
own key or the state it changed (the wizard's id, a deposit form's id, the
withdrawal's confirmation message, the deal's or withdrawal's status).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, TypeVar

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from bot.telegram.fsm import enter

log = logging.getLogger(__name__)

T = TypeVar("T")


FINISHED = "finished"  # FSM data of a closed form: the message that finished it


def finished_reply(data: Mapping[str, Any], message: Message) -> str | None:
    """The reply `message` got when it finished the form `data` is left of."""
    finished = data.get(FINISHED)
    if isinstance(finished, dict) and finished.get("message") == message.message_id:
        return finished.get("reply")
    return None


def pressed_message(query: CallbackQuery) -> Message | None:
    """The message whose button was pressed, if it can still be edited."""
    return query.message if isinstance(query.message, Message) else None


async def show_result(
    bot: Bot,
    chat_id: int,
    text: str,
    markup: InlineKeyboardMarkup | None = None,
    *,
    edit: Message | None = None,
) -> None:
    """Show a committed result: in place of `edit`, else (or when Telegram
    refuses the edit) as a new message, else in the log. Never raises a
    Telegram error."""
    if edit is not None:
        try:
            await bot.edit_message_text(
                text, chat_id=edit.chat.id, message_id=edit.message_id, reply_markup=markup
            )
            return
        except TelegramBadRequest as exc:
            if "message is not modified" in exc.message:
                return
            log.info("chat %s: editing to a committed result failed (%s); sending it", chat_id, exc)
        except TelegramAPIError as exc:
            log.info("chat %s: editing to a committed result failed (%s); sending it", chat_id, exc)
    try:
        await bot.send_message(chat_id, text, reply_markup=markup)
    except TelegramAPIError as exc:
        log.warning("chat %s was not shown a committed result: %s", chat_id, exc)


async def show_and_notify(shown: Awaitable[None], notified: Awaitable[object]) -> None:
    """A committed result shown to the actor in place, and the other parties
    told, at once: they are different chats (an edit in place keeps its place
    whenever it lands), so the update waits one round trip, not two. Both are
    awaited, so this user's next update still finds them done; either failing
    does not stop the other."""
    for outcome in await asyncio.gather(shown, notified, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


async def strip_keyboards(bot: Bot, chat_id: int, message_ids: Iterable[int]) -> None:
    """Take the buttons off a finished form's messages (best effort: a message
    may be gone, too old, or without buttons already), all at once."""

    async def strip(message_id: int) -> None:
        try:
            await bot.edit_message_reply_markup(
                chat_id=chat_id, message_id=message_id, reply_markup=None
            )
        except TelegramAPIError as exc:
            log.info("chat %s: buttons of message %s stay (%s)", chat_id, message_id, exc)

    await asyncio.gather(*(strip(message_id) for message_id in message_ids))


async def close_form(
    state: FSMContext,
    remember: Mapping[str, Any] | None = None,
    *,
    finished_by: Message | None = None,
    reply: str | None = None,
) -> None:
    """Leave the finished form, keeping `remember` as the FSM data (for a
    button of the form pressed later). With `finished_by`, the message that
    finished it and the `reply` it got are kept too: the same message posted
    again (its replica died before answering) gets that reply, not "I didn't
    understand" (bot/telegram/handlers/fallback.py). A Redis failure is logged: the
    form's key or the state it changed refuses a second submission."""
    data = dict(remember or {})
    if finished_by is not None:
        data[FINISHED] = {"message": finished_by.message_id, "reply": reply}
    try:
        await enter(state, None, data)
    except RedisError as exc:
        log.warning("%s: a finished form could not be forgotten: %s", state.key, exc)


async def read_after_commit(read: Awaitable[T]) -> T | None:
    """What a reply after a commit wants to show beyond the result itself
    (balances, a queue), or None when that read fails: the result is shown
    without it."""
    try:
        return await read
    except (SQLAlchemyError, RedisError, OSError) as exc:
        log.warning("a read for a committed result's reply failed: %s", exc)
        return None
