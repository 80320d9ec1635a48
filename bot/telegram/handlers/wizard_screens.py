"""What the new-deal wizard shows: its texts, its FSM states, its buttons'
callback data and the screen of each step (text and keyboard)."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

import msgspec
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.services.money import Currencies, Currency
from bot.services.users import Person
from bot.telegram import keyboards
from bot.telegram.i18n import N_, _, per_locale
from bot.telegram.keyboards import Keyboard, Nav
from bot.telegram.moments import ago
from bot.telegram.texts import percent

STEPS = 5
# The catalog's keys; every screen reads them through _().
HEADER = N_("➕ <b>New deal</b> · step {step} of {steps}")
ASK_ROLE = N_("Are you buying or selling?")
WHO_IS = {
    "buyer": N_("You are the <b>buyer</b>. Who is the seller? Send me:"),
    "seller": N_("You are the <b>seller</b>. Who is the buyer? Send me:"),
}
ASK_COUNTERPARTY = N_(
    "• their @username, or\n"
    "• their numeric Telegram ID, or\n"
    "• any message from them, forwarded.\n\n"
    "Not on the bot yet, or you don't know who it will be? Invite them by link."
)
ASK_CURRENCY = N_("Which currency?")
ASK_AMOUNT = N_("How much? Type the amount in {code}, from {low} to {high}.")
ASK_DESCRIPTION = N_(
    "What is the deal for? Describe it in one message, at most {limit} characters: "
    "what is sold, how much of it, by when. Both of you will see it."
)
SUMMARY = N_(
    "📝 <b>Check your deal</b>\n\n"
    "{parties}\n\n"
    "<i>{description}</i>\n\n"
    "Amount: <b>{amount}</b>\n"
    "Fee: {fee} ({rate}%), paid from the seller's payout\n"
    "Seller receives: {payout}\n\n"
    "Create it?"
)
PARTIES = {
    "buyer": N_("You are the <b>buyer</b>\nSeller: {counterparty}"),
    "seller": N_("You are the <b>seller</b>\nBuyer: {counterparty}"),
}
ANYONE_WITH_LINK = N_("anyone with the invitation link (you get it next)")
TELEGRAM_ID_LABEL = N_("Telegram ID {telegram_id}")
# profile_at: when Telegram reported this first name and @username (first
# contact, or the change to them); not "last seen", which is not recorded.
PERSON = N_("{name}, as Telegram reported them {ago}")
FOUND = N_("👤 On the bot: {person}.")
NOBODY_HOLDS = N_(
    "🤷 Nobody on the bot is @{username} yet. Check the spelling and retype it, or invite "
    "them with a link only @{username} can use."
)
NOBODY_HAS_ID = N_(
    "🤷 Nobody on the bot has Telegram ID {telegram_id} yet. Check the number and retype it, "
    "or invite them with a link only that account can use."
)
# A forward from someone not on the bot: Telegram vouches for the account, no typo possible.
NEWCOMER = N_("📨 {name} isn't on the bot yet: you'll get an invitation link only they can use.")
INVITE_THEM = N_("🔗 Invite them with a link")
RETYPE = N_("✏️ Retype")
INVITED_BY_NAME = N_("@{username}, by an invitation link only they can use")
INVITED_BY_ID = N_("{label}, by an invitation link only they can use")

HINT_COUNTERPARTY = N_(
    "Send their @username or numeric Telegram ID, or forward a message from them."
)
HINT_AMOUNT = N_("Type the amount in {code}, from {low} to {high}.")
HINT_DESCRIPTION = N_("Describe the deal in one text message, at most {limit} characters.")
USE_BUTTONS = N_("👆 Please choose with the buttons.")

NOT_CREATED = N_("⚠️ {message}\n\nNo deal was created. Send /new to start again.")

EXPIRED = N_("⌛ This new-deal wizard has ended. Send /new to open a deal.")
EARLIER_STEP = N_(
    "That button is from an earlier step. Carry on with the newest message, or /cancel."
)

BUYING, SELLING = N_("I'm buying"), N_("I'm selling")
INVITE_BY_LINK = N_("🔗 Invite by link")
CREATE = N_("✅ Create deal")
CANCEL = N_("✖️ Cancel")
NEW_DEAL = N_("➕ New deal")

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
    kb = Keyboard()
    for text, data in buttons:
        kb.button(text=text, callback_data=data)
    kb.adjust(width)
    kb.row(_cancel_button())
    return kb.as_markup()


def _cancel_button() -> InlineKeyboardButton:
    return InlineKeyboardButton(text=_(CANCEL), callback_data=WizardAct(act="cancel").pack())


def step_text(step: int, question: str) -> str:
    """A step's header above its question (both already in the reader's language)."""
    return _(HEADER).format(step=step, steps=STEPS) + "\n\n" + question


@per_locale
def role_screen() -> tuple[str, InlineKeyboardMarkup]:
    markup = keyboard(
        (_(BUYING), ChooseRole(role="buyer")), (_(SELLING), ChooseRole(role="seller")), width=2
    )
    return step_text(1, _(ASK_ROLE)), markup


def counterparty_screen(role: str) -> tuple[str, InlineKeyboardMarkup]:
    text = step_text(2, _(WHO_IS[role]) + "\n" + _(ASK_COUNTERPARTY))
    return text, keyboard((_(INVITE_BY_LINK), WizardAct(act="link")))


def nobody_screen(handle: int | str) -> tuple[str, InlineKeyboardMarkup]:
    """An @username (without its @) or a Telegram id nobody on the bot has: a
    typo stays a typo unless the user asks for an invitation."""
    if isinstance(handle, str):
        text, invite = _(NOBODY_HOLDS).format(username=handle), InviteNamed(username=handle)
    else:
        text, invite = _(NOBODY_HAS_ID).format(telegram_id=handle), InviteById(telegram_id=handle)
    return text, keyboard((_(INVITE_THEM), invite), (_(RETYPE), WizardAct(act="retype")))


def currency_screen(currencies: Currencies, headline: str = "") -> tuple[str, InlineKeyboardMarkup]:
    buttons = [(money.code, ChooseCurrency(code=money.code)) for money in currencies]
    return headline + step_text(3, _(ASK_CURRENCY)), keyboard(*buttons, width=3)


# -- the person found by @username ----------------------------------------------------


def person_name(person: Person) -> str:
    """First name and @username, as Telegram reported them."""
    if not person.username:
        return person.first_name
    return (
        f"{person.first_name} (@{person.username})" if person.first_name else f"@{person.username}"
    )


def person_line(person: Person, now: datetime) -> str:
    return _(PERSON).format(name=person_name(person), ago=ago(person.profile_at, now))


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
        return _(INVITED_BY_NAME).format(username=chosen.removeprefix("@"))
    if isinstance(chosen, int):
        return _(INVITED_BY_ID).format(label=data["counterparty_label"])
    if chosen is None:  # invited by link
        return _(ANYONE_WITH_LINK)
    return data["counterparty_label"]


@per_locale
def amount_screen(money: Currency) -> tuple[str, InlineKeyboardMarkup]:
    text = step_text(4, _(ASK_AMOUNT).format(**bounds(money)))
    return text, keyboard()


@per_locale
def description_screen(limit: int) -> tuple[str, InlineKeyboardMarkup]:
    return step_text(5, _(ASK_DESCRIPTION).format(limit=limit)), keyboard()


def summary_screen(
    data: dict[str, Any], currencies: Currencies, now: datetime | None = None
) -> tuple[str, InlineKeyboardMarkup]:
    money = currencies[data["currency"]]
    amount = data["amount"]
    fee = money.fee_for(amount)
    counterparty = escape(counterparty_text(data, now or datetime.now(UTC)))
    text = _(SUMMARY).format(
        parties=_(PARTIES[data["role"]]).format(counterparty=counterparty),
        description=escape(data["description"]),
        amount=money.format(amount),
        fee=money.format(fee),
        rate=percent(money.fee_bps),
        payout=money.format(amount - fee),
    )
    return text, keyboard((_(CREATE), WizardAct(act="create")))


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


@per_locale
def expired_keyboard() -> InlineKeyboardMarkup:
    kb = Keyboard()
    kb.button(text=_(NEW_DEAL), callback_data=Nav(to="new"))
    kb.row(keyboards.menu_button())
    return kb.as_markup()


def refusal(message: str, hint: str) -> str:
    return f"⚠️ {escape(message)}\n\n{hint}"
