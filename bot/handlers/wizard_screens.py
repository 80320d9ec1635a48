"""What the new-deal wizard shows: its texts, its FSM states, its buttons'
callback data and the screen of each step (text and keyboard)."""

from __future__ import annotations

from functools import cache
from html import escape
from typing import Any

from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import keyboards
from bot.keyboards import Nav
from bot.services.money import Currencies, Currency

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


def currency_screen(currencies: Currencies) -> tuple[str, InlineKeyboardMarkup]:
    buttons = [(money.code, ChooseCurrency(code=money.code)) for money in currencies]
    return ASK_CURRENCY.format(step=3, steps=STEPS), keyboard(*buttons, width=3)


@cache
def amount_screen(money: Currency) -> tuple[str, InlineKeyboardMarkup]:
    text = ASK_AMOUNT.format(step=4, steps=STEPS, **bounds(money))
    return text, keyboard()


@cache
def description_screen(limit: int) -> tuple[str, InlineKeyboardMarkup]:
    return ASK_DESCRIPTION.format(step=5, steps=STEPS, limit=limit), keyboard()


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
    return text, keyboard((CREATE, WizardAct(act="create")))


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
