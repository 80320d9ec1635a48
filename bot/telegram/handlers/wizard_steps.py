"""The new-deal wizard's steps up to its summary: role, currency, amount,
description, and a message typed where a button is expected (the other
party's step: wizard_counterparty.py). How the wizard keeps its steps:
bot/telegram/handlers/wizard.py."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    CallbackQuery,
    Message,
)

from bot.services.deals import bounded_text
from bot.services.errors import InvalidAmount, InvalidInput, Refusal
from bot.services.money import Currencies
from bot.services.settings import EscrowSettings
from bot.telegram.filters import NotACommand
from bot.telegram.fsm import advance, enter
from bot.telegram.handlers import wizard_screens as screens
from bot.telegram.handlers.wizard import _at_step, _show, new_wizard_key
from bot.telegram.i18n import _
from bot.telegram.refusals import ChatRefusal, refusal_text

# -- 1. role ------------------------------------------------------------------------


async def choose_role(
    query: CallbackQuery,
    callback_data: screens.ChooseRole,
    state: FSMContext,
    currencies: Currencies,
    settings: EscrowSettings,
) -> None:
    if not await _at_step(query, state, screens.NewDeal.role, currencies, settings):
        return
    # The wizard's id is drawn here, with the first data it stores (no extra write).
    await enter(
        state, screens.NewDeal.counterparty, {"role": callback_data.role, "key": new_wizard_key()}
    )
    await _show(query, *screens.counterparty_screen(callback_data.role))


# -- 3. currency --------------------------------------------------------------------


async def choose_currency(
    query: CallbackQuery,
    callback_data: screens.ChooseCurrency,
    state: FSMContext,
    currencies: Currencies,
    settings: EscrowSettings,
) -> None:
    money = currencies[callback_data.code]  # an unknown code is refused with the known ones
    if not await _at_step(query, state, screens.NewDeal.currency, currencies, settings):
        return
    await advance(state, screens.NewDeal.amount, currency=money.code)
    await _show(query, *screens.amount_screen(money))


# -- 4. amount ----------------------------------------------------------------------


async def amount_typed(
    message: Message, state: FSMContext, currencies: Currencies, settings: EscrowSettings
) -> None:
    data = await state.get_data()
    money = currencies[data["currency"]]
    try:
        if not message.text:
            raise InvalidAmount(Refusal.NOT_A_NUMBER)
        amount = money.parse(message.text)
    except InvalidAmount as refused:
        hint = _(screens.HINT_AMOUNT).format(**screens.bounds(money))
        await message.answer(
            screens.refusal(refusal_text(refused, currencies), hint),
            reply_markup=screens.keyboard(),
        )
        return
    # "typed": which message moved the wizard on, so the same message posted
    # again (its replica died before replying) is not read as the next step.
    await enter(
        state,
        screens.NewDeal.description,
        {**data, "amount": amount, "typed": message.message_id},
    )
    text, markup = screens.description_screen(settings.description_max_length)
    await message.answer(text, reply_markup=markup)


# -- 5. description -----------------------------------------------------------------


async def description_typed(
    message: Message, state: FSMContext, currencies: Currencies, settings: EscrowSettings
) -> None:
    limit = settings.description_max_length
    data = await state.get_data()
    if data.get("typed") == message.message_id:  # the amount, posted again: not a description
        text, markup = screens.description_screen(limit)
        await message.answer(text, reply_markup=markup)
        return
    try:
        if message.text is None:
            raise InvalidInput(ChatRefusal.NOT_TEXT_DESCRIPTION)
        description = bounded_text(message.text, limit, "description")
    except InvalidInput as refused:
        hint = _(screens.HINT_DESCRIPTION).format(limit=limit)
        await message.answer(
            screens.refusal(refusal_text(refused, currencies), hint),
            reply_markup=screens.keyboard(),
        )
        return
    data = {**data, "description": description}
    await enter(state, screens.NewDeal.confirm, data)
    text, markup = screens.summary_screen(data, currencies)
    await message.answer(text, reply_markup=markup)


# -- typing where a button is expected ----------------------------------------------


async def buttons_expected(
    message: Message, state: FSMContext, raw_state: str | None, currencies: Currencies
) -> None:
    if raw_state == screens.NewDeal.role.state:
        text, markup = screens.role_screen()
    elif raw_state == screens.NewDeal.currency.state:
        text, markup = screens.currency_screen(currencies)
    else:
        text, markup = screens.summary_screen(await state.get_data(), currencies)
    await message.answer(f"{_(screens.USE_BUTTONS)}\n\n{text}", reply_markup=markup)


def router() -> Router:
    router = Router(name="wizard_steps")
    router.callback_query.register(
        choose_role, screens.ChooseRole.filter(F.role.in_(("buyer", "seller")))
    )
    router.callback_query.register(choose_currency, screens.ChooseCurrency.filter())
    router.message.register(amount_typed, StateFilter(screens.NewDeal.amount), NotACommand())
    router.message.register(
        description_typed, StateFilter(screens.NewDeal.description), NotACommand()
    )
    router.message.register(
        buttons_expected,
        StateFilter(screens.NewDeal.role, screens.NewDeal.currency, screens.NewDeal.confirm),
        NotACommand(),
    )
    return router
