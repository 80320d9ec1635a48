"""A blocked user is told so before they start what they could not finish (a
new deal, a withdrawal), from their snapshot (every replica reads it again
after a block), by the handlers that open those forms. The services refuse a
blocked user's writes regardless, inside each transaction."""

from __future__ import annotations

from aiogram.types import Message

from bot.services.errors import Refusal, UserBlocked
from bot.telegram import keyboards
from bot.telegram.refusals import refusal_text
from cache.snapshots import UserSnapshot


async def told_blocked(target: Message | None, user: UserSnapshot) -> bool:
    """True (and the user told, below `target`) if `user` is blocked."""
    if user.is_active:
        return False
    if target is not None:
        refused = refusal_text(UserBlocked(Refusal.ACCOUNT_BLOCKED), {})  # no amount in it
        await target.answer(f"⚠️ {refused}", reply_markup=keyboards.back_to_menu())
    return True
