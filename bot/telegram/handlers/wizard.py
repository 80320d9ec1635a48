"""The new-deal wizard: role, counterparty, currency, amount, description, confirm.

The steps live in the FSM (aiogram's RedisStorage), so any replica can take the
next message. Typed steps are routed by state; a button press does not preload
the state (see `ButtonsSkipStateMiddleware`), so each wizard button names its
step in its callback data and checks the stored state itself: a button from an
earlier screen, or from a wizard that has ended, changes nothing.

A wizard has an id (`key`, drawn at its first step), the idempotency key of
its Create (wizard_create.py): the wizard stays at its last step until the
deal is committed, so a Create whose outcome is unknown (the connection died
at COMMIT) can be pressed again and finds the deal instead of making a second
one. A finished wizard keeps its id in the FSM data, so a Create or Cancel
pressed later shows the deal it made.
"""

from __future__ import annotations

import secrets

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardMarkup,
    Message,
)

from bot.services.money import Currencies
from bot.services.settings import EscrowSettings
from bot.telegram.fsm import enter
from bot.telegram.handlers import wizard_screens as screens
from bot.telegram.keyboards import Nav


def new_wizard_key() -> str:
    return secrets.token_urlsafe(16)


async def _show(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> None:
    """The next screen in place of the pressed message (a new one if it is too old)."""
    if isinstance(query.message, Message):
        await query.message.edit_text(text, reply_markup=markup)
    elif query.bot is not None:
        await query.bot.send_message(query.from_user.id, text, reply_markup=markup)


async def _at_step(
    query: CallbackQuery,
    state: FSMContext,
    step: State,
    currencies: Currencies,
    settings: EscrowSettings,
) -> bool:
    """True when the wizard waits for this button; otherwise say why it does nothing."""
    current = await state.get_state()
    if current == step.state:
        return True
    await _not_at_step(query, state, current, currencies, settings)
    return False


async def _not_at_step(
    query: CallbackQuery,
    state: FSMContext,
    current: str | None,
    currencies: Currencies,
    settings: EscrowSettings,
) -> None:
    """A button of another step, or of a wizard that ended. At another step, the
    step the wizard is at is shown again: this very press may have moved it
    there on a replica that died before showing it (Telegram posts it again)."""
    if query.bot is None:
        return
    if current not in screens.NewDeal:
        await query.bot.send_message(
            query.from_user.id, screens.EXPIRED, reply_markup=screens.expired_keyboard()
        )
        return
    screen = screens.step_screen(
        current, await state.get_data(), currencies, settings.description_max_length
    )
    if screen is None:
        await query.bot.send_message(query.from_user.id, screens.EARLIER_STEP)
        return
    text, markup = screen
    await query.bot.send_message(
        query.from_user.id, f"{screens.EARLIER_STEP}\n\n{text}", reply_markup=markup
    )


# -- entry and leaving --------------------------------------------------------------


async def new_command(message: Message, state: FSMContext) -> None:
    await enter(state, screens.NewDeal.role, {})
    text, markup = screens.role_screen()
    await message.answer(text, reply_markup=markup)


async def new_button(query: CallbackQuery, state: FSMContext) -> None:
    await enter(state, screens.NewDeal.role, {})
    await _show(query, *screens.role_screen())


def router() -> Router:
    router = Router(name="wizard")
    router.message.register(new_command, Command("new", ignore_case=True))
    router.callback_query.register(new_button, Nav.filter(F.to == "new"))
    return router
