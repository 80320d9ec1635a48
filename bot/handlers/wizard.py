"""The new-deal wizard: role, counterparty, currency, amount, description, confirm.

The steps live in the FSM (aiogram's RedisStorage), so any replica can take the
next message. Typed steps are routed by state; a button press does not preload
the state (see `ButtonsSkipStateMiddleware`), so each wizard button names its
step in its callback data and checks the stored state itself: a button from an
earlier screen, or from a wizard that has ended, changes nothing.
"""

from __future__ import annotations

from functools import cache
from html import escape
from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageOriginHiddenUser,
    MessageOriginUser,
)
from aiogram.utils.deep_linking import create_start_link
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import keyboards, texts
from bot.filters import NotACommand
from bot.freshness import DealVersions
from bot.handlers.deals import card_markup, show_card
from bot.keyboards import Nav, Signer
from bot.outbox import Outbox
from bot.services import Services
from bot.services.deals import bounded_text, parse_username
from bot.services.errors import EscrowError, InvalidAmount, InvalidInput, SelfDeal
from bot.services.money import Currencies, Currency
from bot.services.settings import EscrowSettings
from cache.snapshots import UserSnapshot

router = Router(name="wizard")

STEPS = 5
HEADER = "➕ <b>New deal</b> · step {step} of {steps}\n\n"
ASK_ROLE = HEADER + "Are you buying or selling?"
ASK_COUNTERPARTY = (
    HEADER + "You are the <b>{role}</b>. Who is the {other}? Send me:\n"
    "• their @username, or\n"
    "• their numeric Telegram ID, or\n"
    "• any message from them, forwarded.\n\n"
    "Not on the bot yet, or you don't know who it will be? Invite them by link."
)
ASK_CURRENCY = HEADER + "Which currency?"
ASK_AMOUNT = HEADER + "How much? Type the amount in {code}, from {low} to {high}."
ASK_DESCRIPTION = (
    HEADER + "What is the deal for? Describe it in one message, at most {limit} characters: "
    "what is sold, how much of it, by when. Both of you will see it."
)
SUMMARY = (
    "📝 <b>Check your deal</b>\n\n"
    "You are the <b>{role}</b>\n"
    "{Other}: {counterparty}\n\n"
    "<i>{description}</i>\n\n"
    "Amount: <b>{amount}</b>\n"
    "Fee: {fee} ({rate}%), paid from the seller's payout\n"
    "Seller receives: {payout}\n\n"
    "Create it?"
)
ANYONE_WITH_LINK = "anyone with the invitation link (you get it next)"
TELEGRAM_ID_LABEL = "Telegram ID {telegram_id}"

HINT_COUNTERPARTY = "Send their @username or numeric Telegram ID, or forward a message from them."
HINT_AMOUNT = "Type the amount in {code}, from {low} to {high}."
HINT_DESCRIPTION = "Describe the deal in one text message, at most {limit} characters."
USE_BUTTONS = "👆 Please choose with the buttons."
HIDDEN_FORWARD = (
    "{name} hides their account in forwarded messages, so I can't tell who they are. "
    "Send their @username instead."
)
NOT_A_PERSON = "That message was forwarded from a chat or channel, not from a person."
IS_A_BOT = "Bots can't take part in deals."
IS_ME = "That's me, the escrow bot: I can't be the other party."
NOT_AN_ID = "That doesn't look like a Telegram user ID."
SELF = "You can't open a deal with yourself."
NOT_TEXT_COUNTERPARTY = "That isn't a username, an ID or a forwarded message."
NOT_TEXT_AMOUNT = "Send the amount as a number, like 1250.50."
NOT_TEXT_DESCRIPTION = "Please describe the deal in a text message."

CREATED = "✅ Deal created. {name} can accept it now."
CREATED_FOR_LINK = "✅ Deal created. Send the {other} the invitation link below."
CREATED_FOR_NEWCOMER = (
    "✅ Deal created. {name} isn't on the bot yet: send them the invitation link below."
)
INVITATION_LINK = (
    "🔗 Invitation for the {other}:\n{link}\n\nIt works once and expires on {expires}. {who}"
)
LINK_FOR_ANYONE = "Whoever opens it first joins the deal as the {other}."
LINK_FOR_NEWCOMER = "Only {name} can use it."
NOT_CREATED = "⚠️ {message}\n\nNo deal was created. Send /new to start again."

EXPIRED = "⌛ This new-deal wizard has ended. Send /new to open a deal."
EARLIER_STEP = "That button is from an earlier step. Carry on with the newest message, or /cancel."

BUYING, SELLING = "I'm buying", "I'm selling"
INVITE_BY_LINK = "🔗 Invite by link"
CREATE = "✅ Create deal"
CANCEL = "✖️ Cancel"
NEW_DEAL = "➕ New deal"

OTHER_ROLE = {"buyer": "seller", "seller": "buyer"}
# Telegram user ids are positive and fit in 52 bits.
MAX_TELEGRAM_ID = 2**52


class NewDeal(StatesGroup):
    role = State()
    counterparty = State()
    currency = State()
    amount = State()
    description = State()
    confirm = State()


class ChooseRole(CallbackData, prefix="wr"):
    role: str


class ChooseCurrency(CallbackData, prefix="wc"):
    code: str


class WizardAct(CallbackData, prefix="wa"):
    """link (invite by link), create or cancel."""

    act: str


# -- screens ------------------------------------------------------------------------


def _keyboard(*buttons: tuple[str, CallbackData], width: int = 1) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for text, data in buttons:
        kb.button(text=text, callback_data=data)
    kb.adjust(width)
    kb.row(_cancel_button())
    return kb.as_markup()


def _cancel_button() -> InlineKeyboardButton:
    return InlineKeyboardButton(text=CANCEL, callback_data=WizardAct(act="cancel").pack())


@cache
def role_screen() -> tuple[str, InlineKeyboardMarkup]:
    markup = _keyboard(
        (BUYING, ChooseRole(role="buyer")), (SELLING, ChooseRole(role="seller")), width=2
    )
    return ASK_ROLE.format(step=1, steps=STEPS), markup


def counterparty_screen(role: str) -> tuple[str, InlineKeyboardMarkup]:
    text = ASK_COUNTERPARTY.format(step=2, steps=STEPS, role=role, other=OTHER_ROLE[role])
    return text, _keyboard((INVITE_BY_LINK, WizardAct(act="link")))


def currency_screen(currencies: Currencies) -> tuple[str, InlineKeyboardMarkup]:
    buttons = [(money.code, ChooseCurrency(code=money.code)) for money in currencies]
    return ASK_CURRENCY.format(step=3, steps=STEPS), _keyboard(*buttons, width=3)


@cache
def amount_screen(money: Currency) -> tuple[str, InlineKeyboardMarkup]:
    text = ASK_AMOUNT.format(step=4, steps=STEPS, **_bounds(money))
    return text, _keyboard()


@cache
def description_screen(limit: int) -> tuple[str, InlineKeyboardMarkup]:
    return ASK_DESCRIPTION.format(step=5, steps=STEPS, limit=limit), _keyboard()


def summary_screen(
    data: dict[str, Any], currencies: Currencies
) -> tuple[str, InlineKeyboardMarkup]:
    money = currencies[data["currency"]]
    amount, other = data["amount"], OTHER_ROLE[data["role"]]
    fee = money.fee_for(amount)
    text = SUMMARY.format(
        role=data["role"],
        Other=other.capitalize(),
        counterparty=escape(data["counterparty_label"]),
        description=escape(data["description"]),
        amount=money.format(amount),
        fee=money.format(fee),
        rate=f"{money.fee_bps / 100:g}",
        payout=money.format(amount - fee),
    )
    return text, _keyboard((CREATE, WizardAct(act="create")))


def _bounds(money: Currency) -> dict[str, str]:
    return {
        "code": money.code,
        "low": money.format(money.min_amount),
        "high": money.format(money.max_amount),
    }


@cache
def _expired_keyboard() -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text=NEW_DEAL, callback_data=Nav(to="new"))
    kb.row(keyboards.menu_button())
    return kb.as_markup()


def _refusal(message: str, hint: str) -> str:
    return f"⚠️ {escape(message)}\n\n{hint}"


async def _show(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> None:
    """The next screen in place of the pressed message (a new one if it is too old)."""
    if isinstance(query.message, Message):
        await query.message.edit_text(text, reply_markup=markup)
    elif query.bot is not None:
        await query.bot.send_message(query.from_user.id, text, reply_markup=markup)


async def _at_step(query: CallbackQuery, state: FSMContext, step: State) -> bool:
    """True when the wizard waits for this button; otherwise say why it does nothing."""
    current = await state.get_state()
    if current == step.state:
        return True
    if query.bot is not None:
        if current in NewDeal:
            await query.bot.send_message(query.from_user.id, EARLIER_STEP)
        else:
            await query.bot.send_message(
                query.from_user.id, EXPIRED, reply_markup=_expired_keyboard()
            )
    return False


# -- entry and leaving --------------------------------------------------------------


@router.message(Command("new"))
async def new_command(message: Message, state: FSMContext) -> None:
    await state.set_state(NewDeal.role)
    await state.set_data({})
    text, markup = role_screen()
    await message.answer(text, reply_markup=markup)


@router.callback_query(Nav.filter(F.to == "new"))
async def new_button(query: CallbackQuery, state: FSMContext) -> None:
    await state.set_state(NewDeal.role)
    await state.set_data({})
    await _show(query, *role_screen())


@router.callback_query(WizardAct.filter(F.act == "cancel"))
async def cancel_button(query: CallbackQuery, state: FSMContext) -> None:
    if await state.get_state() not in NewDeal:
        if query.bot is not None:
            await query.bot.send_message(
                query.from_user.id, EXPIRED, reply_markup=_expired_keyboard()
            )
        return
    await state.clear()
    await _show(query, texts.CANCELLED, keyboards.back_to_menu())


# -- 1. role ------------------------------------------------------------------------


@router.callback_query(ChooseRole.filter(F.role.in_(("buyer", "seller"))))
async def choose_role(query: CallbackQuery, callback_data: ChooseRole, state: FSMContext) -> None:
    if not await _at_step(query, state, NewDeal.role):
        return
    await state.set_data({"role": callback_data.role})
    await state.set_state(NewDeal.counterparty)
    await _show(query, *counterparty_screen(callback_data.role))


# -- 2. counterparty ----------------------------------------------------------------


async def counterparty_of(message: Message, me: UserSnapshot, bot: Bot) -> tuple[int | str, str]:
    """(Telegram id or "@username", how to call them) from a forward or typed text."""
    origin = message.forward_origin
    if isinstance(origin, MessageOriginUser):
        user = origin.sender_user
        if user.id == me.telegram_id:
            raise SelfDeal(SELF)
        if user.is_bot:
            raise InvalidInput(IS_ME if user.id == bot.id else IS_A_BOT)
        return user.id, f"@{user.username}" if user.username else user.full_name
    if isinstance(origin, MessageOriginHiddenUser):
        raise InvalidInput(HIDDEN_FORWARD.format(name=origin.sender_user_name))
    if origin is not None:
        raise InvalidInput(NOT_A_PERSON)
    typed = (message.text or "").strip()
    if not typed:
        raise InvalidInput(NOT_TEXT_COUNTERPARTY)
    if typed.isascii() and typed.isdigit():
        telegram_id = int(typed)
        if not 0 < telegram_id < MAX_TELEGRAM_ID:
            raise InvalidInput(NOT_AN_ID)
        if telegram_id == me.telegram_id:
            raise SelfDeal(SELF)
        if telegram_id == bot.id:
            raise InvalidInput(IS_ME)
        return telegram_id, TELEGRAM_ID_LABEL.format(telegram_id=telegram_id)
    # "t.me/name" links are @usernames too
    username = parse_username(typed.removeprefix("https://").removeprefix("t.me/"))
    if me.username and username == me.username.lower():
        raise SelfDeal(SELF)
    if username == ((await bot.me()).username or "").lower():
        raise InvalidInput(IS_ME)
    return f"@{username}", f"@{username}"


@router.message(StateFilter(NewDeal.counterparty), NotACommand())
async def counterparty_typed(
    message: Message, state: FSMContext, snapshot: UserSnapshot, currencies: Currencies, bot: Bot
) -> None:
    try:
        counterparty, label = await counterparty_of(message, snapshot, bot)
    except InvalidInput as refused:
        await message.answer(_refusal(refused.message, HINT_COUNTERPARTY), reply_markup=_keyboard())
        return
    await state.update_data(counterparty=counterparty, counterparty_label=label)
    await state.set_state(NewDeal.currency)
    text, markup = currency_screen(currencies)
    await message.answer(text, reply_markup=markup)


@router.callback_query(WizardAct.filter(F.act == "link"))
async def invite_by_link(query: CallbackQuery, state: FSMContext, currencies: Currencies) -> None:
    if not await _at_step(query, state, NewDeal.counterparty):
        return
    await state.update_data(counterparty=None, counterparty_label=ANYONE_WITH_LINK)
    await state.set_state(NewDeal.currency)
    await _show(query, *currency_screen(currencies))


# -- 3. currency --------------------------------------------------------------------


@router.callback_query(ChooseCurrency.filter())
async def choose_currency(
    query: CallbackQuery, callback_data: ChooseCurrency, state: FSMContext, currencies: Currencies
) -> None:
    money = currencies[callback_data.code]  # an unknown code is refused with the known ones
    if not await _at_step(query, state, NewDeal.currency):
        return
    await state.update_data(currency=money.code)
    await state.set_state(NewDeal.amount)
    await _show(query, *amount_screen(money))


# -- 4. amount ----------------------------------------------------------------------


@router.message(StateFilter(NewDeal.amount), NotACommand())
async def amount_typed(
    message: Message, state: FSMContext, currencies: Currencies, settings: EscrowSettings
) -> None:
    data = await state.get_data()
    money = currencies[data["currency"]]
    try:
        if not message.text:
            raise InvalidAmount(NOT_TEXT_AMOUNT)
        amount = money.parse(message.text)
    except InvalidAmount as refused:
        hint = HINT_AMOUNT.format(**_bounds(money))
        await message.answer(_refusal(refused.message, hint), reply_markup=_keyboard())
        return
    await state.set_data({**data, "amount": amount})
    await state.set_state(NewDeal.description)
    text, markup = description_screen(settings.description_max_length)
    await message.answer(text, reply_markup=markup)


# -- 5. description -----------------------------------------------------------------


@router.message(StateFilter(NewDeal.description), NotACommand())
async def description_typed(
    message: Message, state: FSMContext, currencies: Currencies, settings: EscrowSettings
) -> None:
    limit = settings.description_max_length
    try:
        if message.text is None:
            raise InvalidInput(NOT_TEXT_DESCRIPTION)
        description = bounded_text(message.text, limit, "description")
    except InvalidInput as refused:
        hint = HINT_DESCRIPTION.format(limit=limit)
        await message.answer(_refusal(refused.message, hint), reply_markup=_keyboard())
        return
    data = {**await state.get_data(), "description": description}
    await state.set_data(data)
    await state.set_state(NewDeal.confirm)
    text, markup = summary_screen(data, currencies)
    await message.answer(text, reply_markup=markup)


# -- 6. confirm ---------------------------------------------------------------------


@router.callback_query(WizardAct.filter(F.act == "create"))
async def create(
    query: CallbackQuery,
    state: FSMContext,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    signer: Signer,
    deals_seen: DealVersions,
    bot: Bot,
    outbox: Outbox,
) -> None:
    if not await _at_step(query, state, NewDeal.confirm):
        return
    data = await state.get_data()
    # Cleared before the deal is created, so a second press of "Create" finds the
    # wizard gone: it runs after this one, since one user's updates take the
    # user's lock (PressLock; a Redis lock across replicas).
    await state.clear()
    try:
        outcome = await services.deals.create(
            snapshot,
            role=data["role"],
            currency=data["currency"],
            amount=data["amount"],
            description=data["description"],
            counterparty=data["counterparty"],
        )
    except EscrowError as refused:
        await _show(query, NOT_CREATED.format(message=escape(refused.message)), None)
        return
    deal, invitation = outcome.value.deal, outcome.value.invitation
    deals_seen.note(deal.code, deal.version)
    role = data["role"]
    other = OTHER_ROLE[role]
    label = escape(data["counterparty_label"])
    if invitation is None:
        their_name = deal.seller_name if role == "buyer" else deal.buyer_name
        headline = CREATED.format(name=escape(their_name or label))
    elif data["counterparty"] is None:
        headline = CREATED_FOR_LINK.format(other=other)
    else:
        headline = CREATED_FOR_NEWCOMER.format(name=label)
    if isinstance(query.message, Message):
        await show_card(query.message, deal, snapshot, currencies, signer, headline, edit=True)
    else:
        await bot.send_message(
            snapshot.telegram_id,
            texts.deal_card(deal, snapshot.id, currencies, headline),
            reply_markup=card_markup(deal, snapshot, currencies, signer),
        )
    if invitation is None:
        await outbox.send(outcome.notices, deal, actor=snapshot)
        return
    link = await create_start_link(bot, invitation.code)
    who = (
        LINK_FOR_ANYONE.format(other=other)
        if data["counterparty"] is None
        else LINK_FOR_NEWCOMER.format(name=label)
    )
    await bot.send_message(
        snapshot.telegram_id,
        INVITATION_LINK.format(
            other=other, link=link, expires=texts.when(invitation.expires_at), who=who
        ),
    )


# -- typing where a button is expected ----------------------------------------------


@router.message(StateFilter(NewDeal.role, NewDeal.currency, NewDeal.confirm), NotACommand())
async def buttons_expected(
    message: Message, state: FSMContext, raw_state: str | None, currencies: Currencies
) -> None:
    if raw_state == NewDeal.role.state:
        text, markup = role_screen()
    elif raw_state == NewDeal.currency.state:
        text, markup = currency_screen(currencies)
    else:
        text, markup = summary_screen(await state.get_data(), currencies)
    await message.answer(f"{USE_BUTTONS}\n\n{text}", reply_markup=markup)
