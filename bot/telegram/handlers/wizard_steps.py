"""The new-deal wizard's steps up to its summary: role, counterparty,
currency, amount, description, and a message typed where a button is
expected. How the wizard keeps its steps: bot/telegram/handlers/wizard.py."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from aiogram import Bot, F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    CallbackQuery,
    Message,
    MessageOriginHiddenUser,
    MessageOriginUser,
)

from bot.services import Services
from bot.services.deals import bounded_text
from bot.services.errors import InvalidAmount, InvalidInput, Refusal, SelfDeal
from bot.services.money import Currencies
from bot.services.settings import EscrowSettings
from bot.services.users import Person, parse_username
from bot.telegram.filters import NotACommand
from bot.telegram.fsm import advance, enter
from bot.telegram.handlers import wizard_screens as screens
from bot.telegram.handlers.wizard import _at_step, _show, new_wizard_key
from bot.telegram.i18n import _
from bot.telegram.refusals import ChatRefusal, refusal_text
from cache.snapshots import UserSnapshot
from db.models import UserStatus

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


# -- 2. counterparty ----------------------------------------------------------------


async def counterparty_of(message: Message, me: UserSnapshot, bot: Bot) -> tuple[int | str, str]:
    """(Telegram id or "@username", how to call them) from a forward or typed text."""
    origin = message.forward_origin
    if isinstance(origin, MessageOriginUser):
        user = origin.sender_user
        if user.id == me.telegram_id:
            raise SelfDeal(Refusal.SELF_DEAL)
        if user.is_bot:
            raise InvalidInput(ChatRefusal.IS_ME if user.id == bot.id else ChatRefusal.IS_A_BOT)
        return user.id, f"@{user.username}" if user.username else user.full_name
    if isinstance(origin, MessageOriginHiddenUser):
        raise InvalidInput(ChatRefusal.HIDDEN_FORWARD, name=origin.sender_user_name)
    if origin is not None:
        raise InvalidInput(ChatRefusal.NOT_A_PERSON)
    typed = (message.text or "").strip()
    if not typed:
        raise InvalidInput(ChatRefusal.NOT_TEXT_COUNTERPARTY)
    if typed.isascii() and typed.isdigit():
        telegram_id = int(typed)
        if not 0 < telegram_id < screens.MAX_TELEGRAM_ID:
            raise InvalidInput(ChatRefusal.NOT_AN_ID)
        if telegram_id == me.telegram_id:
            raise SelfDeal(Refusal.SELF_DEAL)
        if telegram_id == bot.id:
            raise InvalidInput(ChatRefusal.IS_ME)
        return telegram_id, _(screens.TELEGRAM_ID_LABEL).format(telegram_id=telegram_id)
    # "t.me/name" links are @usernames too
    username = parse_username(typed.removeprefix("https://").removeprefix("t.me/"))
    if me.username and username == me.username.lower():
        raise SelfDeal(Refusal.SELF_DEAL)
    if username == ((await bot.me()).username or "").lower():
        raise InvalidInput(ChatRefusal.IS_ME)
    return f"@{username}", f"@{username}"


async def person_named(username: str, me: UserSnapshot, services: Services) -> Person | None:
    """Who holds @username on the bot now, if they may deal with `me`."""
    person = await services.users.find_by_username(username)
    if person is None:
        return None
    if person.id == me.id:
        raise SelfDeal(Refusal.SELF_DEAL)
    if person.status != UserStatus.ACTIVE:
        raise InvalidInput(Refusal.CANT_TAKE_PART)
    return person


async def counterparty_typed(
    message: Message,
    state: FSMContext,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    bot: Bot,
) -> None:
    try:
        counterparty, label = await counterparty_of(message, snapshot, bot)
        # A typed @username is looked up now, so the summary can name the person
        # and the deal goes to them (by id) however the name moves meanwhile.
        person = (
            await person_named(counterparty, snapshot, services)
            if isinstance(counterparty, str)
            else None
        )
    except InvalidInput as refused:
        await message.answer(
            screens.refusal(refusal_text(refused, currencies), _(screens.HINT_COUNTERPARTY)),
            reply_markup=screens.keyboard(),
        )
        return
    if isinstance(counterparty, str) and person is None:
        # Not an invitation unless the user asks for one: a typo stays a typo.
        text, markup = screens.nobody_holds_screen(counterparty.removeprefix("@"))
        await message.answer(text, reply_markup=markup)
        return
    headline = ""
    if person is not None:
        label = screens.person_name(person)
        line = screens.person_line(person, datetime.now(UTC))
        headline = _(screens.FOUND).format(person=escape(line)) + "\n\n"
    await advance(
        state,
        screens.NewDeal.currency,
        counterparty=screens.remembered(person) if person is not None else counterparty,
        counterparty_label=label,
    )
    text, markup = screens.currency_screen(currencies, headline)
    await message.answer(text, reply_markup=markup)


async def invite_named(
    query: CallbackQuery,
    callback_data: screens.InviteNamed,
    state: FSMContext,
    currencies: Currencies,
    settings: EscrowSettings,
) -> None:
    username = parse_username(callback_data.username)
    if not await _at_step(query, state, screens.NewDeal.counterparty, currencies, settings):
        return
    await advance(
        state,
        screens.NewDeal.currency,
        counterparty=f"@{username}",
        counterparty_label=f"@{username}",
    )
    await _show(query, *screens.currency_screen(currencies))


async def invite_by_link(
    query: CallbackQuery, state: FSMContext, currencies: Currencies, settings: EscrowSettings
) -> None:
    if not await _at_step(query, state, screens.NewDeal.counterparty, currencies, settings):
        return
    await advance(
        state,
        screens.NewDeal.currency,
        counterparty=None,
        counterparty_label=_(screens.ANYONE_WITH_LINK),
    )
    await _show(query, *screens.currency_screen(currencies))


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
    router.message.register(
        counterparty_typed, StateFilter(screens.NewDeal.counterparty), NotACommand()
    )
    router.callback_query.register(invite_named, screens.InviteNamed.filter())
    router.callback_query.register(invite_by_link, screens.WizardAct.filter(F.act == "link"))
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
