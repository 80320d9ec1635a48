"""The new-deal wizard's second step: who the other party is. A typed
@username or Telegram id, or a forwarded message, is looked up at once: what
Create would refuse about that person (yourself, a blocked user) is refused
here, while the user can still retype; a name or id nobody on the bot has is
an invitation only when the user asks for one. How the wizard keeps its
steps: bot/telegram/handlers/wizard.py."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import NamedTuple

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
from bot.services.errors import InvalidInput, Refusal, SelfDeal
from bot.services.money import Currencies
from bot.services.settings import EscrowSettings
from bot.services.users import Person, parse_username
from bot.telegram.filters import NotACommand
from bot.telegram.fsm import advance
from bot.telegram.handlers import wizard_screens as screens
from bot.telegram.handlers.wizard import _at_step, _show
from bot.telegram.i18n import _
from bot.telegram.refusals import ChatRefusal, refusal_text
from cache.snapshots import UserSnapshot
from db.models import UserStatus


class Named(NamedTuple):
    """The other party as typed or forwarded: a Telegram id or "@username",
    how to call them, and whether Telegram vouched for the account (a forward)."""

    handle: int | str
    label: str
    forwarded: bool = False


async def counterparty_of(message: Message, me: UserSnapshot, bot: Bot) -> Named:
    """Who a forward or typed text names (refused when it can't be anyone)."""
    origin = message.forward_origin
    if isinstance(origin, MessageOriginUser):
        user = origin.sender_user
        if user.id == me.telegram_id:
            raise SelfDeal(Refusal.SELF_DEAL)
        if user.is_bot:
            raise InvalidInput(ChatRefusal.IS_ME if user.id == bot.id else ChatRefusal.IS_A_BOT)
        return Named(user.id, f"@{user.username}" if user.username else user.full_name, True)
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
        return Named(telegram_id, _(screens.TELEGRAM_ID_LABEL).format(telegram_id=telegram_id))
    # "t.me/name" links are @usernames too
    username = parse_username(typed.removeprefix("https://").removeprefix("t.me/"))
    if me.username and username == me.username.lower():
        raise SelfDeal(Refusal.SELF_DEAL)
    if username == ((await bot.me()).username or "").lower():
        raise InvalidInput(ChatRefusal.IS_ME)
    return Named(f"@{username}", f"@{username}")


async def person_named(handle: int | str, me: UserSnapshot, services: Services) -> Person | None:
    """Who has this @username or Telegram id on the bot now, if they may deal
    with `me`: what Create would refuse about them is refused here, at their
    step (Create checks again, as things may change meanwhile)."""
    users = services.users
    person = await (
        users.find_by_username(handle)
        if isinstance(handle, str)
        else users.find_by_telegram_id(handle)
    )
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
        named = await counterparty_of(message, snapshot, bot)
        # Looked up now, so the summary can name the person and the deal goes
        # to them (by id) however their name moves meanwhile.
        person = await person_named(named.handle, snapshot, services)
    except InvalidInput as refused:
        await message.answer(
            screens.refusal(refusal_text(refused, currencies), _(screens.HINT_COUNTERPARTY)),
            reply_markup=screens.keyboard(),
        )
        return
    if person is None and not named.forwarded:
        # Not an invitation unless the user asks for one: a typo stays a typo.
        handle = named.handle
        text, markup = screens.nobody_screen(
            handle.removeprefix("@") if isinstance(handle, str) else handle
        )
        await message.answer(text, reply_markup=markup)
        return
    if person is None:
        label = named.label
        headline = _(screens.NEWCOMER).format(name=escape(label)) + "\n\n"
    else:
        label = screens.person_name(person)
        line = screens.person_line(person, datetime.now(UTC))
        headline = _(screens.FOUND).format(person=escape(line)) + "\n\n"
    await advance(
        state,
        screens.NewDeal.currency,
        counterparty=screens.remembered(person) if person is not None else named.handle,
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


async def invite_by_id(
    query: CallbackQuery,
    callback_data: screens.InviteById,
    state: FSMContext,
    currencies: Currencies,
    settings: EscrowSettings,
) -> None:
    telegram_id = callback_data.telegram_id
    if not 0 < telegram_id < screens.MAX_TELEGRAM_ID:
        return  # not a button this bot made
    if not await _at_step(query, state, screens.NewDeal.counterparty, currencies, settings):
        return
    await advance(
        state,
        screens.NewDeal.currency,
        counterparty=telegram_id,
        counterparty_label=_(screens.TELEGRAM_ID_LABEL).format(telegram_id=telegram_id),
    )
    await _show(query, *screens.currency_screen(currencies))


async def retype(
    query: CallbackQuery, state: FSMContext, currencies: Currencies, settings: EscrowSettings
) -> None:
    """Name the other party again: the step is shown again, nothing stored."""
    if not await _at_step(query, state, screens.NewDeal.counterparty, currencies, settings):
        return
    await _show(query, *screens.counterparty_screen((await state.get_data())["role"]))


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


def router() -> Router:
    router = Router(name="wizard_counterparty")
    router.message.register(
        counterparty_typed, StateFilter(screens.NewDeal.counterparty), NotACommand()
    )
    router.callback_query.register(invite_named, screens.InviteNamed.filter())
    router.callback_query.register(invite_by_id, screens.InviteById.filter())
    router.callback_query.register(retype, screens.WizardAct.filter(F.act == "retype"))
    router.callback_query.register(invite_by_link, screens.WizardAct.filter(F.act == "link"))
    return router
