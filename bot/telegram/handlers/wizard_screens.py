"""What the new-deal wizard shows: its texts, its FSM states, its buttons'
callback data and the screen of each step (text and keyboard)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from html import escape
from typing import Any

import msgspec
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.services.money import Currencies, Currency
from bot.services.users import Person
from bot.telegram import keyboards
from bot.telegram.keyboards import Nav

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
# profile_at: when Telegram reported this first name and @username (first
# contact, or the change to them); not "last seen", which is not recorded.
PERSON = "{name}, as Telegram reported them {ago}"
FOUND = "👤 On the bot: {person}.\n\n"
NOBODY_HOLDS = (
    "🤷 Nobody on the bot is @{username} yet. Check the spelling and retype it, or invite "
    "them with a link only @{username} can use."
)
NOBODY_HAS_ID = (
    "🤷 Nobody on the bot has Telegram ID {telegram_id} yet. Check the number and retype it, "
    "or invite them with a link only that account can use."
)
# A forward from someone not on the bot: Telegram vouches for the account, no typo possible.
NEWCOMER = "📨 {name} isn't on the bot yet: you'll get an invitation link only they can use.\n\n"
INVITE_THEM = "🔗 Invite them with a link"
RETYPE = "✏️ Retype"
INVITED_BY_NAME = "@{username}, by an invitation link only they can use"
INVITED_BY_ID = "{label}, by an invitation link only they can use"

HINT_COUNTERPARTY = "Send their @username or numeric Telegram ID, or forward a message from them."
HINT_AMOUNT = "Type the amount in {code}, from {low} to {high}."
HINT_DESCRIPTION = "Describe the deal in one text message, at most {limit} characters."
USE_BUTTONS = "👆 Please choose with the buttons."

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
    """link (invite by link), retype (the other party), create or cancel."""

    act: str


class InviteNamed(CallbackData, prefix="wi"):
    """Invite by link someone nobody on the bot goes by yet (the @username)."""

    username: str


class InviteById(CallbackData, prefix="wt"):
    """Invite by link a Telegram id nobody on the bot has yet."""

    telegram_id: int


# -- screens ------------------------------------------------------------------------


def keyboard(*buttons: tuple[str, CallbackData], width: int = 1) -> InlineKeyboardMarkup:
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
    markup = keyboard(
        (BUYING, ChooseRole(role="buyer")), (SELLING, ChooseRole(role="seller")), width=2
    )
    return ASK_ROLE.format(step=1, steps=STEPS), markup


def counterparty_screen(role: str) -> tuple[str, InlineKeyboardMarkup]:
    text = ASK_COUNTERPARTY.format(step=2, steps=STEPS, role=role, other=OTHER_ROLE[role])
    return text, keyboard((INVITE_BY_LINK, WizardAct(act="link")))


def nobody_screen(handle: int | str) -> tuple[str, InlineKeyboardMarkup]:
    """An @username (without its @) or a Telegram id nobody on the bot has: a
    typo stays a typo unless the user asks for an invitation."""
    if isinstance(handle, str):
        text, invite = NOBODY_HOLDS.format(username=handle), InviteNamed(username=handle)
    else:
        text, invite = NOBODY_HAS_ID.format(telegram_id=handle), InviteById(telegram_id=handle)
    return text, keyboard((INVITE_THEM, invite), (RETYPE, WizardAct(act="retype")))


def currency_screen(currencies: Currencies, headline: str = "") -> tuple[str, InlineKeyboardMarkup]:
    buttons = [(money.code, ChooseCurrency(code=money.code)) for money in currencies]
    return headline + ASK_CURRENCY.format(step=3, steps=STEPS), keyboard(*buttons, width=3)


# -- the person found by @username ----------------------------------------------------


def person_name(person: Person) -> str:
    """First name and @username, as Telegram reported them."""
    if not person.username:
        return person.first_name
    return (
        f"{person.first_name} (@{person.username})" if person.first_name else f"@{person.username}"
    )


def person_line(person: Person, now: datetime) -> str:
    return PERSON.format(name=person_name(person), ago=ago(person.profile_at, now))


def ago(moment: datetime, now: datetime) -> str:
    """How long before `now`, in the largest whole unit: "3 days ago"."""
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400),
                       ("hour", 3600), ("minute", 60)):  # fmt: skip
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    return "just now"


def remembered(person: Person) -> dict[str, Any]:
    """The person as the wizard keeps them in its FSM data (JSON in Redis)."""
    return msgspec.to_builtins(person)


def chosen_counterparty(data: dict[str, Any]) -> Person | int | str | None:
    """What the summary named, for `DealService.create`: a Person found by
    @username (bound by their id), a Telegram id, "@name" to invite, or None."""
    chosen = data["counterparty"]
    return msgspec.convert(chosen, Person) if isinstance(chosen, dict) else chosen


def counterparty_text(data: dict[str, Any], now: datetime) -> str:
    chosen = chosen_counterparty(data)
    if isinstance(chosen, Person):
        return person_line(chosen, now)
    if isinstance(chosen, str):
        return INVITED_BY_NAME.format(username=chosen.removeprefix("@"))
    if isinstance(chosen, int):
        return INVITED_BY_ID.format(label=data["counterparty_label"])
    return data["counterparty_label"]


@cache
def amount_screen(money: Currency) -> tuple[str, InlineKeyboardMarkup]:
    text = ASK_AMOUNT.format(step=4, steps=STEPS, **bounds(money))
    return text, keyboard()


@cache
def description_screen(limit: int) -> tuple[str, InlineKeyboardMarkup]:
    return ASK_DESCRIPTION.format(step=5, steps=STEPS, limit=limit), keyboard()


def summary_screen(
    data: dict[str, Any], currencies: Currencies, now: datetime | None = None
) -> tuple[str, InlineKeyboardMarkup]:
    money = currencies[data["currency"]]
    amount, other = data["amount"], OTHER_ROLE[data["role"]]
    fee = money.fee_for(amount)
    text = SUMMARY.format(
        role=data["role"],
        Other=other.capitalize(),
        counterparty=escape(counterparty_text(data, now or datetime.now(UTC))),
        description=escape(data["description"]),
        amount=money.format(amount),
        fee=money.format(fee),
        rate=f"{money.fee_bps / 100:g}",
        payout=money.format(amount - fee),
    )
    return text, keyboard((CREATE, WizardAct(act="create")))


def step_screen(
    step: str | None, data: dict[str, Any], currencies: Currencies, description_limit: int
) -> tuple[str, InlineKeyboardMarkup] | None:
    """The screen of the step the wizard is at, from its data (None if the data
    lacks what it needs)."""
    try:
        if step == NewDeal.role.state:
            return role_screen()
        if step == NewDeal.counterparty.state:
            return counterparty_screen(data["role"])
        if step == NewDeal.currency.state:
            return currency_screen(currencies)
        if step == NewDeal.amount.state:
            return amount_screen(currencies[data["currency"]])
        if step == NewDeal.description.state:
            return description_screen(description_limit)
        if step == NewDeal.confirm.state:
            return summary_screen(data, currencies)
    except (KeyError, TypeError):
        return None
    return None


def bounds(money: Currency) -> dict[str, str]:
    return {
        "code": money.code,
        "low": money.format(money.min_amount),
        "high": money.format(money.max_amount),
    }


@cache
def expired_keyboard() -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text=NEW_DEAL, callback_data=Nav(to="new"))
    kb.row(keyboards.menu_button())
    return kb.as_markup()


def refusal(message: str, hint: str) -> str:
    return f"⚠️ {escape(message)}\n\n{hint}"
