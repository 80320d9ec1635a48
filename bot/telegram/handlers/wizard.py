"""The new-deal wizard: role, counterparty, currency, amount, description, confirm.

The steps live in the FSM (aiogram's RedisStorage), so any replica can take the
next message. Typed steps are routed by state; a button press does not preload
the state (see `ButtonsSkipStateMiddleware`), so each wizard button names its
step in its callback data and checks the stored state itself: a button from an
earlier screen, or from a wizard that has ended, changes nothing.

A wizard has an id (`key`, drawn at its first step), the idempotency key of
its Create: the wizard stays at its last step until the deal is committed, so
a Create whose outcome is unknown (the connection died at COMMIT) can be
pressed again and finds the deal instead of making a second one. A finished
wizard keeps its id in the FSM data, so a Cancel pressed later shows the deal
it made.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from html import escape
from typing import NamedTuple

from aiogram import Bot, F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardMarkup,
    Message,
    MessageOriginHiddenUser,
    MessageOriginUser,
)
from aiogram.utils.deep_linking import create_start_link
from sqlalchemy.exc import SQLAlchemyError

from bot.runtime.notifier import Outbox
from bot.services import Services
from bot.services.deals import bounded_text
from bot.services.errors import EscrowError, InvalidAmount, InvalidInput, Refusal, SelfDeal
from bot.services.money import Currencies
from bot.services.settings import EscrowSettings
from bot.services.users import Person, parse_username
from bot.services.views import DealView
from bot.telegram import keyboards, texts
from bot.telegram.filters import NotACommand
from bot.telegram.freshness import DealVersions
from bot.telegram.fsm import enter
from bot.telegram.handlers import wizard_screens as screens
from bot.telegram.handlers.committed import close_form, pressed_message, show_result
from bot.telegram.handlers.deals import show_committed_card
from bot.telegram.keyboards import Nav, Signer
from bot.telegram.refusals import ChatRefusal, refusal_text
from cache.snapshots import UserSnapshot
from db.models import UserStatus

log = logging.getLogger(__name__)
router = Router(name="wizard")

# A create that fails with these may or may not have committed (the
# connection died at COMMIT, a timeout): its outcome is unknown.
UNKNOWN_OUTCOME = (SQLAlchemyError, OSError)


def new_wizard_key() -> str:
    return secrets.token_urlsafe(16)


class WizardDeal(NamedTuple):
    key: str
    deal: DealView


async def wizard_deal(
    state: FSMContext, current: str | None, creator: UserSnapshot, services: Services
) -> WizardDeal | None:
    """The deal this user's wizard made, if its Create may have been pressed:
    at its last step (an unknown outcome, or Redis failed to forget it) or
    finished (its id is kept). One Redis read, and one SQL read if it has an id."""
    if current is not None and current != screens.NewDeal.confirm.state:
        return None  # before its last step a wizard has made nothing
    key = (await state.get_data()).get("key")
    if not key:
        return None
    made = await services.deals.created_with(creator, key)
    return WizardDeal(key, made.deal) if made is not None else None


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


@router.message(Command("new"))
async def new_command(message: Message, state: FSMContext) -> None:
    await enter(state, screens.NewDeal.role, {})
    text, markup = screens.role_screen()
    await message.answer(text, reply_markup=markup)


@router.callback_query(Nav.filter(F.to == "new"))
async def new_button(query: CallbackQuery, state: FSMContext) -> None:
    await enter(state, screens.NewDeal.role, {})
    await _show(query, *screens.role_screen())


@router.callback_query(screens.WizardAct.filter(F.act == "cancel"))
async def cancel_button(
    query: CallbackQuery,
    state: FSMContext,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    signer: Signer,
    bot: Bot,
) -> None:
    current = await state.get_state()
    made = await wizard_deal(state, current, snapshot, services)
    if made is not None:
        await show_made(state, current, made, snapshot, currencies, signer, bot, query)
        return
    if current not in screens.NewDeal:
        await bot.send_message(
            query.from_user.id, screens.EXPIRED, reply_markup=screens.expired_keyboard()
        )
        return
    await state.clear()
    await _show(query, texts.CANCELLED, keyboards.back_to_menu())


async def show_made(
    state: FSMContext,
    current: str | None,
    made: WizardDeal,
    viewer: UserSnapshot,
    currencies: Currencies,
    signer: Signer,
    bot: Bot,
    query: CallbackQuery | None = None,
) -> None:
    """A cancel of a wizard that had made its deal: it had finished, and the
    deal as it is now (never "nothing was changed")."""
    if current is not None:
        await close_form(state, remember={"key": made.key})
    edit = pressed_message(query) if query is not None else None
    headline = texts.WIZARD_FINISHED
    await show_committed_card(bot, made.deal, viewer, currencies, signer, headline, edit=edit)


# -- 1. role ------------------------------------------------------------------------


@router.callback_query(screens.ChooseRole.filter(F.role.in_(("buyer", "seller"))))
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
    await state.set_data({"role": callback_data.role, "key": new_wizard_key()})
    await state.set_state(screens.NewDeal.counterparty)
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
        return telegram_id, screens.TELEGRAM_ID_LABEL.format(telegram_id=telegram_id)
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


@router.message(StateFilter(screens.NewDeal.counterparty), NotACommand())
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
            screens.refusal(refusal_text(refused, currencies), screens.HINT_COUNTERPARTY),
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
        headline = screens.FOUND.format(person=escape(line))
    await state.update_data(
        counterparty=screens.remembered(person) if person is not None else counterparty,
        counterparty_label=label,
    )
    await state.set_state(screens.NewDeal.currency)
    text, markup = screens.currency_screen(currencies, headline)
    await message.answer(text, reply_markup=markup)


@router.callback_query(screens.InviteNamed.filter())
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
    await state.update_data(counterparty=f"@{username}", counterparty_label=f"@{username}")
    await state.set_state(screens.NewDeal.currency)
    await _show(query, *screens.currency_screen(currencies))


@router.callback_query(screens.WizardAct.filter(F.act == "link"))
async def invite_by_link(
    query: CallbackQuery, state: FSMContext, currencies: Currencies, settings: EscrowSettings
) -> None:
    if not await _at_step(query, state, screens.NewDeal.counterparty, currencies, settings):
        return
    await state.update_data(counterparty=None, counterparty_label=screens.ANYONE_WITH_LINK)
    await state.set_state(screens.NewDeal.currency)
    await _show(query, *screens.currency_screen(currencies))


# -- 3. currency --------------------------------------------------------------------


@router.callback_query(screens.ChooseCurrency.filter())
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
    await state.update_data(currency=money.code)
    await state.set_state(screens.NewDeal.amount)
    await _show(query, *screens.amount_screen(money))


# -- 4. amount ----------------------------------------------------------------------


@router.message(StateFilter(screens.NewDeal.amount), NotACommand())
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
        hint = screens.HINT_AMOUNT.format(**screens.bounds(money))
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


@router.message(StateFilter(screens.NewDeal.description), NotACommand())
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
        hint = screens.HINT_DESCRIPTION.format(limit=limit)
        await message.answer(
            screens.refusal(refusal_text(refused, currencies), hint),
            reply_markup=screens.keyboard(),
        )
        return
    data = {**data, "description": description}
    await enter(state, screens.NewDeal.confirm, data)
    text, markup = screens.summary_screen(data, currencies)
    await message.answer(text, reply_markup=markup)


# -- 6. confirm ---------------------------------------------------------------------


@router.callback_query(screens.WizardAct.filter(F.act == "create"))
async def create(
    query: CallbackQuery,
    state: FSMContext,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    settings: EscrowSettings,
    signer: Signer,
    deals_seen: DealVersions,
    bot: Bot,
    outbox: Outbox,
) -> None:
    current = await state.get_state()
    if current != screens.NewDeal.confirm.state:
        # Finished already: by this press on a replica that died before replying
        # (Telegram posts it again), or by a first press of a double one.
        made = await wizard_deal(state, current, snapshot, services)
        if made is not None:
            await show_made(state, current, made, snapshot, currencies, signer, bot, query)
        else:
            await _not_at_step(query, state, current, currencies, settings)
        return
    data = await state.get_data()
    if not data.get("key"):  # a wizard started before wizards had ids
        data = {**data, "key": new_wizard_key()}
        await state.set_data(data)
    summary = pressed_message(query)
    # The wizard stays at this step until the deal is committed: a second
    # press runs after this one (one user's updates take the user's lock,
    # PressLock) and the key keeps it from making a second deal even without it.
    try:
        outcome = await services.deals.create(
            snapshot,
            role=data["role"],
            currency=data["currency"],
            amount=data["amount"],
            description=data["description"],
            counterparty=screens.chosen_counterparty(data),
            create_key=data["key"],
        )
    except EscrowError as refused:
        await state.clear()
        await _show(
            query,
            screens.NOT_CREATED.format(message=escape(refusal_text(refused, currencies))),
            None,
        )
        return
    except UNKNOWN_OUTCOME as exc:
        log.warning("create of wizard %s: outcome unknown: %r", data["key"], exc)
        text, markup = screens.summary_screen(data, currencies)
        unconfirmed = f"{texts.CREATE_UNCONFIRMED}\n\n{text}"
        await show_result(bot, snapshot.telegram_id, unconfirmed, markup, edit=summary)
        return
    # Committed. The wizard's id is kept, for a Cancel pressed later.
    await close_form(state, remember={"key": data["key"]})
    deal, invitation = outcome.value.deal, outcome.value.invitation
    deals_seen.note(deal.code, deal.version)
    role = data["role"]
    other = screens.OTHER_ROLE[role]
    label = escape(data["counterparty_label"])
    if invitation is None:
        their_name = deal.seller_name if role == "buyer" else deal.buyer_name
        headline = screens.CREATED.format(name=escape(their_name or label))
    elif data["counterparty"] is None:
        headline = screens.CREATED_FOR_LINK.format(other=other)
    else:
        headline = screens.CREATED_FOR_NEWCOMER.format(name=label)
    await show_committed_card(bot, deal, snapshot, currencies, signer, headline, edit=summary)
    if invitation is None:
        await outbox.send(outcome.notices, deal, actor=snapshot)
        return
    link = await create_start_link(bot, invitation.code)
    who = (
        screens.LINK_FOR_ANYONE.format(other=other)
        if data["counterparty"] is None
        else screens.LINK_FOR_NEWCOMER.format(name=label)
    )
    text = screens.INVITATION_LINK.format(
        other=other, link=link, expires=texts.when(invitation.expires_at), who=who
    )
    await show_result(bot, snapshot.telegram_id, text)


# -- typing where a button is expected ----------------------------------------------


@router.message(
    StateFilter(screens.NewDeal.role, screens.NewDeal.currency, screens.NewDeal.confirm),
    NotACommand(),
)
async def buttons_expected(
    message: Message, state: FSMContext, raw_state: str | None, currencies: Currencies
) -> None:
    if raw_state == screens.NewDeal.role.state:
        text, markup = screens.role_screen()
    elif raw_state == screens.NewDeal.currency.state:
        text, markup = screens.currency_screen(currencies)
    else:
        text, markup = screens.summary_screen(await state.get_data(), currencies)
    await message.answer(f"{screens.USE_BUTTONS}\n\n{text}", reply_markup=markup)
