"""The wallet: balances, and the pieces its forms share (deposits in
`bot/telegram/handlers/deposit.py`, withdrawals in `bot/telegram/handlers/withdraw.py`).

Balances come from the caller's snapshot, so opening the wallet costs no SQL.
After money moves, the snapshot in hand is from before the change: the new
balances are read again through the cache (the publisher dropped this
replica's L1 entry after the commit, so that read sees the new version).

Buttons carry their step in their callback data; typed steps (amounts,
destinations) are routed by FSM state and read its data. A form's data keeps
the ids of its messages that carry a ✖️ Cancel, whose buttons go when the
form is done; a Cancel pressed after that says the form had finished.
"""

from __future__ import annotations

from typing import Any

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.services.errors import InvalidAmount, UnknownCurrency
from bot.services.money import Currencies, Currency
from bot.services.wallets import DepositProvider
from bot.telegram import keyboards, texts
from bot.telegram.handlers.committed import read_after_commit
from bot.telegram.i18n import _, per_locale
from bot.telegram.keyboards import Keyboard, Nav, WalletMenu
from bot.telegram.refusals import refusal_text
from cache.snapshots import UserSnapshot
from cache.store import SnapshotCache


class WalletForm(StatesGroup):
    deposit_amount = State()
    withdraw_amount = State()
    withdraw_destination = State()
    withdraw_confirm = State()


# -- rendering ----------------------------------------------------------------------


def balances_text(
    user: UserSnapshot, currencies: Currencies, headline: str = "", play_money: bool = False
) -> str:
    lines = [headline, ""] if headline else []
    lines += [_("👛 <b>Your wallet</b>"), ""]

    for money in currencies:
        wallet = user.wallet(money.code)
        available, held = (wallet.available, wallet.held) if wallet else (0, 0)
        lines.append(
            _("<b>{code}</b>: {available} available · {held} held").format(
                code=money.code, available=money.format(available), held=money.format(held)
            )
        )
    lines += ["", _("<i>Held: locked in funded deals and pending withdrawals.</i>")]
    if play_money:
        lines += ["", _(texts.PLAY_MONEY)]
    return "\n".join(lines)


@per_locale
def wallet_keyboard() -> InlineKeyboardMarkup:
    kb = Keyboard()
    kb.button(text=_("➕ Deposit"), callback_data=WalletMenu(screen="deposit"))
    kb.button(text=_("➖ Withdraw"), callback_data=WalletMenu(screen="withdraw"))
    kb.button(text=_("🧾 Withdrawals"), callback_data=WalletMenu(screen="withdrawals"))
    kb.adjust(2)
    kb.row(keyboards.menu_button())
    return kb.as_markup()


def back_button() -> InlineKeyboardButton:
    return InlineKeyboardButton(text=_("« Wallet"), callback_data=WalletMenu(screen="home").pack())


@per_locale
def back_to_wallet() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[back_button()]])


@per_locale
def cancel_keyboard() -> InlineKeyboardMarkup:
    kb = Keyboard()
    kb.button(text=_("✖️ Cancel"), callback_data=WalletMenu(screen="cancel"))
    return kb.as_markup()


def currency_keyboard(
    screen: str, user: UserSnapshot, currencies: Currencies
) -> InlineKeyboardMarkup:
    kb = Keyboard()
    for money in currencies:
        label = money.code
        if screen == "withdraw":
            label += f" · {money.format(user.available(money.code))}"
        kb.button(text=label, callback_data=WalletMenu(screen=screen, currency=money.code))
    kb.adjust(3 if screen == "deposit" else 1)
    kb.row(back_button())
    return kb.as_markup()


async def edit(message: Message, text: str, markup: InlineKeyboardMarkup) -> None:
    try:
        await message.edit_text(text, reply_markup=markup)
    except TelegramBadRequest as exc:
        if "message is not modified" not in exc.message:
            raise


async def fresh(snapshots: SnapshotCache, user: UserSnapshot) -> UserSnapshot | None:
    """The user's snapshot after a change this update committed (None if it
    can't be read just now: the reply then shows the result alone)."""
    return await read_after_commit(snapshots.get(user.telegram_id))


def committed_wallet(
    user: UserSnapshot | None, currencies: Currencies, headline: str, play_money: bool
) -> tuple[str, InlineKeyboardMarkup]:
    """A committed result above the wallet as it is now (or alone, with the
    way back to the wallet, when the new balances can't be read)."""
    if user is None:
        return headline, back_to_wallet()
    return balances_text(user, currencies, headline, play_money), wallet_keyboard()


# -- balances -----------------------------------------------------------------------


async def wallet_command(
    message: Message,
    snapshot: UserSnapshot,
    currencies: Currencies,
    state: FSMContext,
    raw_state: str | None,
    deposits: DepositProvider,
) -> None:
    if raw_state is not None:  # leaving a form costs a write only when there is one
        await state.clear()
    text = balances_text(snapshot, currencies, play_money=deposits.play_money)
    await message.answer(text, reply_markup=wallet_keyboard())


async def show_wallet(
    query: CallbackQuery,
    snapshot: UserSnapshot,
    currencies: Currencies,
    deposits: DepositProvider,
) -> None:
    # Read-only: the snapshot is all it needs (no SQL, no FSM read).
    if isinstance(query.message, Message):
        text = balances_text(snapshot, currencies, play_money=deposits.play_money)
        await edit(query.message, text, wallet_keyboard())


async def cancel_button(
    query: CallbackQuery,
    snapshot: UserSnapshot,
    currencies: Currencies,
    state: FSMContext,
    deposits: DepositProvider,
) -> None:
    if await state.get_state() in WalletForm:
        await state.clear()
        headline = _(texts.CANCELLED)
    else:
        # A Cancel left on a form that is done (a deposit credited, a withdrawal
        # requested) or was left: nothing to cancel, and the wallet as it is
        # now (this update's snapshot is read after that commit).
        headline = _(texts.FORM_FINISHED)
    if isinstance(query.message, Message):
        text = balances_text(snapshot, currencies, headline, deposits.play_money)
        await edit(query.message, text, wallet_keyboard())


# -- helpers ------------------------------------------------------------------------


def bounds(money: Currency, most: int) -> str:
    return _("from {low} to {high}").format(
        low=money.format(money.min_amount), high=money.format(min(most, money.max_amount))
    )


async def open_form(
    message: Message, state: FSMContext, currencies: Currencies, flow: str
) -> tuple[Currency, dict[str, Any]] | None:
    """The currency the form was started with and its data, or None (and the
    form is left) if its data is gone."""
    data = await state.get_data()
    if data.get("flow") != flow or "currency" not in data:
        await state.clear()
        await message.answer(
            _("⚠️ That form has expired. Start again from the wallet."),
            reply_markup=back_to_wallet(),
        )
        return None
    return currencies[data["currency"]], data


async def typed_amount(message: Message, money: Currency) -> int | None:
    """The amount typed, or None after telling the user why not (the step repeats)."""
    try:
        return money.parse(message.text or "")
    except (InvalidAmount, UnknownCurrency) as refused:
        await message.answer(
            _("⚠️ {refusal} Send the amount again, or /cancel.").format(
                refusal=refusal_text(refused, {money.code: money})
            ),
            reply_markup=cancel_keyboard(),
        )
        return None


def router() -> Router:
    router = Router(name="wallet")
    router.message.register(wallet_command, Command("wallet", ignore_case=True))
    router.callback_query.register(show_wallet, WalletMenu.filter(F.screen == "home"))
    router.callback_query.register(show_wallet, Nav.filter(F.to == "wallet"))
    router.callback_query.register(cancel_button, WalletMenu.filter(F.screen == "cancel"))
    return router
