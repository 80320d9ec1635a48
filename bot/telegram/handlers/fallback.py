"""What nobody else handled: the admin panel used by a non-admin (the admin
routers take configured admins only), and a friendly pointer back to the menu
for anything else."""

from __future__ import annotations

import logging

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from redis.exceptions import RedisError

from bot.telegram import keyboards, texts
from bot.telegram.filters import NotACommand
from bot.telegram.handlers.admin import (
    AdminCard,
    AdminCredit,
    AdminForm,
    AdminPanel,
    AdminSplit,
    AdminUser,
    AdminWithdrawal,
)
from bot.telegram.handlers.committed import finished_reply
from bot.telegram.i18n import N_, _
from bot.telegram.keyboards import AdminDeal, AdminEvidence, Nav

log = logging.getLogger(__name__)

NOT_UNDERSTOOD = N_("I didn't understand that. Use the menu below or send /help.")
ALREADY_TAKEN = N_("That message was already taken:")
# Alerts are said in the presser's language when the press is answered (AnswerFirst).
NOT_ADMIN_ALERT = {"text": texts.NOT_ADMIN, "show_alert": True}
BUTTON_EXPIRED = N_("That button has expired.")


async def not_an_admin(query: CallbackQuery) -> None:
    log.info("refused an admin button from %s: %s", query.from_user.id, query.data)


async def not_an_admin_command(message: Message) -> None:
    await message.answer(_(texts.NOT_ADMIN), reply_markup=keyboards.back_to_menu())


async def not_an_admin_form(message: Message, state: FSMContext) -> None:
    """A step of an admin form from someone who is not a configured admin any
    more (the list changed since the form began): the form is left."""
    await state.clear()
    await message.answer(_(texts.NOT_ADMIN))


async def not_understood(
    message: Message, state: FSMContext | None = None, raw_state: str | None = None
) -> None:
    if state is not None and raw_state is None:
        # The message that finished a form, posted again: what it got then.
        try:
            reply = finished_reply(await state.get_data(), message)
        except RedisError:
            reply = None
        if reply:
            text = f"{_(ALREADY_TAKEN)}\n\n{reply}"
            await message.answer(text, reply_markup=keyboards.back_to_menu())
            return
    await message.answer(_(NOT_UNDERSTOOD), reply_markup=keyboards.back_to_menu())


async def stale_button(query: CallbackQuery) -> None:
    return None


def router() -> Router:
    router = Router(name="fallback")
    # Admin buttons pressed by someone the admin routers refused (their filter
    # needs a configured admin): an alert, and nothing else.
    for admin_button in (
        AdminCredit.filter(),
        AdminWithdrawal.filter(),
        AdminDeal.filter(),
        AdminCard.filter(),
        AdminPanel.filter(),
        AdminSplit.filter(),
        AdminUser.filter(),
        AdminEvidence.filter(),
        Nav.filter(F.to == "admin"),
    ):
        router.callback_query.register(
            not_an_admin, admin_button, flags={"callback_answer": NOT_ADMIN_ALERT}
        )
    router.message.register(
        not_an_admin_command, Command("admin", "block", "unblock", ignore_case=True)
    )
    router.message.register(not_an_admin_form, StateFilter(AdminForm), NotACommand())
    router.message.register(not_understood)
    router.callback_query.register(
        stale_button, flags={"callback_answer": {"text": BUTTON_EXPIRED}}
    )
    return router
