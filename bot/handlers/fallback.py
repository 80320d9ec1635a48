"""What nobody else handled: a friendly pointer back to the menu."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery, Message

from bot import keyboards

router = Router(name="fallback")

NOT_UNDERSTOOD = "I didn't understand that. Use the menu below or send /help."


@router.message()
async def not_understood(message: Message) -> None:
    await message.answer(NOT_UNDERSTOOD, reply_markup=keyboards.back_to_menu())


@router.callback_query(flags={"callback_answer": {"text": "That button has expired."}})
async def stale_button(query: CallbackQuery) -> None:
    return None
