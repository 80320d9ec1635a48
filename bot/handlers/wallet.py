"""The wallet: balances, deposits, withdrawal requests and their status.

Balances come from the caller's snapshot, so opening the wallet costs no SQL.
After money moves, the snapshot in hand is from before the change: the new
balances are read again through the cache (the publisher dropped this
replica's L1 entry after the commit, so that read sees the new version).

Buttons carry their step in their callback data; typed steps (amounts,
destinations) are routed by FSM state and read its data.
"""

from __future__ import annotations

import logging
from functools import cache
from html import escape
from typing import Protocol, runtime_checkable

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import keyboards, texts
from bot.filters import NotACommand
from bot.keyboards import Nav, WalletMenu
from bot.outbox import Outbox
from bot.services import Outcome, Services
from bot.services.base import Actor
from bot.services.errors import InvalidAmount, UnknownCurrency
from bot.services.money import Currencies, Currency
from bot.services.settings import EscrowSettings
from bot.services.views import WithdrawalView
from bot.services.wallets import Deposit, DepositProvider
from cache.snapshots import UserSnapshot
from cache.store import SnapshotCache
from db.models import WithdrawalStatus

log = logging.getLogger(__name__)
router = Router(name="wallet")

RECENT_WITHDRAWALS = 5


class WalletForm(StatesGroup):
    deposit_amount = State()
    withdraw_amount = State()
    withdraw_destination = State()
    withdraw_confirm = State()


@runtime_checkable
class InstantDeposits(Protocol):
    """A provider that credits on request (the demo one): the user types an amount."""

    async def deposit(
        self, user: Actor, currency: str, amount: int, reference: str
    ) -> Outcome[Deposit]: ...


WITHDRAWAL_STATUS = {
    WithdrawalStatus.PENDING: "⏳ pending: an admin will send it",
    WithdrawalStatus.APPROVED: "✅ sent",
    WithdrawalStatus.REJECTED: "✖️ rejected",
}


# -- rendering ----------------------------------------------------------------------


def balances_text(user: UserSnapshot, currencies: Currencies, headline: str = "") -> str:
    lines = [headline, ""] if headline else []
    lines += ["👛 <b>Your wallet</b>", ""]
    for money in currencies:
        wallet = user.wallet(money.code)
        available, held = (wallet.available, wallet.held) if wallet else (0, 0)
        lines.append(
            f"<b>{money.code}</b>: {money.format(available)} available · {money.format(held)} held"
        )
    lines += ["", "<i>Held: locked in funded deals and pending withdrawals.</i>"]
    return "\n".join(lines)


@cache
def wallet_keyboard() -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text="➕ Deposit", callback_data=WalletMenu(screen="deposit"))
    kb.button(text="➖ Withdraw", callback_data=WalletMenu(screen="withdraw"))
    kb.button(text="🧾 Withdrawals", callback_data=WalletMenu(screen="withdrawals"))
    kb.adjust(2)
    kb.row(keyboards.menu_button())
    return kb.as_markup()


def back_button() -> InlineKeyboardButton:
    return InlineKeyboardButton(text="« Wallet", callback_data=WalletMenu(screen="home").pack())


@cache
def back_to_wallet() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[back_button()]])


@cache
def cancel_keyboard() -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text="✖️ Cancel", callback_data=WalletMenu(screen="cancel"))
    return kb.as_markup()


def currency_keyboard(
    screen: str, user: UserSnapshot, currencies: Currencies
) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for money in currencies:
        label = money.code
        if screen == "withdraw":
            wallet = user.wallet(money.code)
            label += f" · {money.format(wallet.available if wallet else 0)}"
        kb.button(text=label, callback_data=WalletMenu(screen=screen, currency=money.code))
    kb.adjust(3 if screen == "deposit" else 1)
    kb.row(back_button())
    return kb.as_markup()


def withdrawal_line(item: WithdrawalView, currencies: Currencies) -> str:
    money = currencies[item.currency]
    line = (
        f"<b>#{item.id}</b> · {money.format(item.amount)} → <code>{escape(item.destination)}</code>"
        f"\n    {WITHDRAWAL_STATUS[WithdrawalStatus(item.status)]} · {texts.when(item.created_at)}"
    )
    if item.note:
        line += f"\n    <i>{escape(item.note)}</i>"
    return line


async def edit(message: Message, text: str, markup: InlineKeyboardMarkup) -> None:
    try:
        await message.edit_text(text, reply_markup=markup)
    except TelegramBadRequest as exc:
        if "message is not modified" not in exc.message:
            raise


async def fresh(snapshots: SnapshotCache, user: UserSnapshot) -> UserSnapshot:
    """The user's snapshot after a change this update committed."""
    return await snapshots.get(user.telegram_id) or user


# -- balances -----------------------------------------------------------------------


@router.message(Command("wallet"))
async def wallet_command(
    message: Message,
    snapshot: UserSnapshot,
    currencies: Currencies,
    state: FSMContext,
    raw_state: str | None,
) -> None:
    if raw_state is not None:  # leaving a form costs a write only when there is one
        await state.clear()
    await message.answer(balances_text(snapshot, currencies), reply_markup=wallet_keyboard())


@router.callback_query(Nav.filter(F.to == "wallet"))
@router.callback_query(WalletMenu.filter(F.screen == "home"))
async def show_wallet(query: CallbackQuery, snapshot: UserSnapshot, currencies: Currencies) -> None:
    # Read-only: the snapshot is all it needs (no SQL, no FSM read).
    if isinstance(query.message, Message):
        await edit(query.message, balances_text(snapshot, currencies), wallet_keyboard())


@router.callback_query(WalletMenu.filter(F.screen == "cancel"))
async def cancel_button(
    query: CallbackQuery, snapshot: UserSnapshot, currencies: Currencies, state: FSMContext
) -> None:
    await state.clear()
    if isinstance(query.message, Message):
        await edit(
            query.message, balances_text(snapshot, currencies, texts.CANCELLED), wallet_keyboard()
        )


# -- deposits -----------------------------------------------------------------------


@router.callback_query(WalletMenu.filter(F.screen == "deposit"))
async def deposit_button(
    query: CallbackQuery,
    callback_data: WalletMenu,
    snapshot: UserSnapshot,
    currencies: Currencies,
    deposits: DepositProvider,
    state: FSMContext,
) -> None:
    if not isinstance(query.message, Message):
        return
    if not callback_data.currency:
        await edit(
            query.message,
            "➕ <b>Deposit</b>\n\nWhich currency do you want to deposit?",
            currency_keyboard("deposit", snapshot, currencies),
        )
        return
    money = currencies[callback_data.currency]
    text = f"➕ <b>Deposit {money.code}</b>\n\n{escape(deposits.instructions(money))}"
    if not isinstance(deposits, InstantDeposits):
        await edit(query.message, text, back_to_wallet())
        return
    await state.set_state(WalletForm.deposit_amount)
    await state.set_data({"flow": "deposit", "currency": money.code})
    await edit(
        query.message,
        f"{text}\n\nHow much? Send an amount {bounds(money, money.max_amount)}, or /cancel.",
        cancel_keyboard(),
    )


@router.message(StateFilter(WalletForm.deposit_amount), NotACommand())
async def deposit_amount(
    message: Message,
    state: FSMContext,
    snapshot: UserSnapshot,
    currencies: Currencies,
    deposits: DepositProvider,
    snapshots: SnapshotCache,
) -> None:
    money = await form_currency(message, state, currencies, "deposit")
    if money is None or not isinstance(deposits, InstantDeposits):
        return
    amount = await typed_amount(message, money)
    if amount is None:
        return
    # Unique per request and the same if Telegram delivers this message again.
    reference = f"{message.chat.id}:{message.message_id}"
    deposit = (await deposits.deposit(snapshot, money.code, amount, reference)).value
    await state.clear()
    headline = (
        f"✅ Deposited {money.format(amount)}."
        if deposit.credited
        else "This deposit was already credited; nothing changed."
    )
    user = await fresh(snapshots, snapshot)
    await message.answer(balances_text(user, currencies, headline), reply_markup=wallet_keyboard())


# -- withdrawals --------------------------------------------------------------------


@router.callback_query(WalletMenu.filter(F.screen == "withdraw"))
async def withdraw_button(
    query: CallbackQuery,
    callback_data: WalletMenu,
    snapshot: UserSnapshot,
    currencies: Currencies,
    state: FSMContext,
) -> None:
    if not isinstance(query.message, Message):
        return
    if not callback_data.currency:
        await edit(
            query.message,
            "➖ <b>Withdraw</b>\n\nWhich currency do you want to withdraw?",
            currency_keyboard("withdraw", snapshot, currencies),
        )
        return
    money = currencies[callback_data.currency]
    wallet = snapshot.wallet(money.code)
    available = wallet.available if wallet else 0
    if available < money.min_amount:
        await edit(
            query.message,
            f"➖ <b>Withdraw {money.code}</b>\n\nYou have {money.format(available)} available; "
            f"the smallest withdrawal is {money.format(money.min_amount)}.",
            back_to_wallet(),
        )
        return
    await state.set_state(WalletForm.withdraw_amount)
    await state.set_data({"flow": "withdraw", "currency": money.code})
    await edit(
        query.message,
        f"➖ <b>Withdraw {money.code}</b>\n\nAvailable: {money.format(available)}.\n"
        f"How much do you want to withdraw? Send an amount {bounds(money, available)}, "
        "or /cancel.",
        cancel_keyboard(),
    )


@router.message(StateFilter(WalletForm.withdraw_amount), NotACommand())
async def withdraw_amount(
    message: Message,
    state: FSMContext,
    snapshot: UserSnapshot,
    currencies: Currencies,
    settings: EscrowSettings,
) -> None:
    money = await form_currency(message, state, currencies, "withdraw")
    if money is None:
        return
    amount = await typed_amount(message, money)
    if amount is None:
        return
    # A display check from the snapshot; the service checks again in its transaction.
    wallet = snapshot.wallet(money.code)
    available = wallet.available if wallet else 0
    if amount > available:
        await message.answer(
            f"⚠️ You have only {money.format(available)} available. "
            "Send a smaller amount, or /cancel.",
            reply_markup=cancel_keyboard(),
        )
        return
    await state.set_state(WalletForm.withdraw_destination)
    await state.update_data(amount=amount)
    await message.answer(
        f"Where should {money.format(amount)} be sent? Send the address or account "
        f"(at most {settings.withdrawal_destination_max_length} characters), or /cancel.",
        reply_markup=cancel_keyboard(),
    )


@router.message(StateFilter(WalletForm.withdraw_destination), NotACommand())
async def withdraw_destination(
    message: Message, state: FSMContext, currencies: Currencies, settings: EscrowSettings
) -> None:
    destination = (message.text or "").strip()
    limit = settings.withdrawal_destination_max_length
    if not destination:
        await message.answer(
            "Please send the destination as text, or /cancel.", reply_markup=cancel_keyboard()
        )
        return
    if len(destination) > limit:
        await message.answer(
            f"⚠️ The destination is too long: {len(destination)} characters, at most {limit}. "
            "Send it again, or /cancel.",
            reply_markup=cancel_keyboard(),
        )
        return
    money = await form_currency(message, state, currencies, "withdraw")
    if money is None:
        return
    data = await state.update_data(destination=destination)
    await state.set_state(WalletForm.withdraw_confirm)
    kb = InlineKeyboardBuilder()
    kb.button(text="✅ Confirm withdrawal", callback_data=WalletMenu(screen="confirm"))
    kb.button(text="✖️ Cancel", callback_data=WalletMenu(screen="cancel"))
    kb.adjust(1)
    await message.answer(
        f"❓ Withdraw <b>{money.format(data['amount'])}</b> to "
        f"<code>{escape(destination)}</code>?\n\n"
        "The amount is held in your wallet until an admin sends it.",
        reply_markup=kb.as_markup(),
    )


@router.message(StateFilter(WalletForm.withdraw_confirm), NotACommand())
async def withdraw_waiting(message: Message) -> None:
    await message.answer(
        "Press ✅ Confirm withdrawal above, or /cancel.", reply_markup=cancel_keyboard()
    )


@router.callback_query(WalletMenu.filter(F.screen == "confirm"))
async def withdraw_confirm(
    query: CallbackQuery,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    snapshots: SnapshotCache,
    state: FSMContext,
    outbox: Outbox,
) -> None:
    if not isinstance(query.message, Message):
        return
    data = await state.get_data()
    if data.get("flow") != "withdraw" or "destination" not in data:
        await query.message.answer(
            "⚠️ There is no withdrawal waiting for confirmation. Start again from the wallet.",
            reply_markup=back_to_wallet(),
        )
        return
    # The confirmation message is the request's identity: a double press (even
    # two at once, on two replicas) is refused by the service, not held twice.
    reference = f"{query.message.chat.id}:{query.message.message_id}"
    requested = await services.wallets.request_withdrawal(
        snapshot, data["currency"], data["amount"], data["destination"], reference=reference
    )
    withdrawal = requested.value
    await state.clear()
    money = currencies[withdrawal.currency]
    user = await fresh(snapshots, snapshot)
    headline = (
        f"✅ Withdrawal #{withdrawal.id} requested: {money.format(withdrawal.amount)} to "
        f"<code>{escape(withdrawal.destination)}</code>.\n"
        f"Status: {WITHDRAWAL_STATUS[WithdrawalStatus(withdrawal.status)]}."
    )
    await edit(query.message, balances_text(user, currencies, headline), wallet_keyboard())
    await outbox.send(requested.notices, withdrawal, actor=snapshot)


@router.callback_query(WalletMenu.filter(F.screen == "withdrawals"))
async def withdrawals_button(
    query: CallbackQuery, snapshot: UserSnapshot, services: Services, currencies: Currencies
) -> None:
    items = await services.reads.withdrawals_of(snapshot, RECENT_WITHDRAWALS)
    lines = ["🧾 <b>Your recent withdrawals</b>", ""]
    lines += [withdrawal_line(item, currencies) for item in items] or ["None yet."]
    if isinstance(query.message, Message):
        await edit(query.message, "\n".join(lines), back_to_wallet())


# -- helpers ------------------------------------------------------------------------


def bounds(money: Currency, most: int) -> str:
    return f"from {money.format(money.min_amount)} to {money.format(min(most, money.max_amount))}"


async def form_currency(
    message: Message, state: FSMContext, currencies: Currencies, flow: str
) -> Currency | None:
    """The currency the form was started with, or None (and the form is left) if
    its data is gone."""
    data = await state.get_data()
    if data.get("flow") != flow or "currency" not in data:
        await state.clear()
        await message.answer(
            "⚠️ That form has expired. Start again from the wallet.", reply_markup=back_to_wallet()
        )
        return None
    return currencies[data["currency"]]


async def typed_amount(message: Message, money: Currency) -> int | None:
    """The amount typed, or None after telling the user why not (the step repeats)."""
    try:
        return money.parse(message.text or "")
    except (InvalidAmount, UnknownCurrency) as refused:
        await message.answer(
            f"⚠️ {refused.message} Send the amount again, or /cancel.",
            reply_markup=cancel_keyboard(),
        )
        return None
