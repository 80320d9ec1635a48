"""Deposits: the currency, then (with a provider that takes an amount) the
amount typed, credited at once or paid by invoice."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from html import escape
from typing import Protocol, runtime_checkable

from aiogram import Bot, F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot.services import Outcome
from bot.services.base import Actor
from bot.services.deposits import DepositView
from bot.services.money import Currencies, Currency
from bot.services.wallets import Deposit, DepositProvider
from bot.telegram import texts
from bot.telegram.filters import NotACommand
from bot.telegram.fsm import enter
from bot.telegram.handlers.committed import (
    close_form,
    show_result,
    strip_keyboards,
)
from bot.telegram.handlers.wallet import (
    WalletForm,
    back_button,
    back_to_wallet,
    bounds,
    cancel_keyboard,
    committed_wallet,
    currency_keyboard,
    edit,
    fresh,
    open_form,
    typed_amount,
)
from bot.telegram.i18n import _
from bot.telegram.keyboards import Keyboard, WalletMenu
from cache.snapshots import UserSnapshot
from cache.store import SnapshotCache


@runtime_checkable
class InstantDeposits(Protocol):
    """A provider that credits on request (the demo one): the user types an amount."""

    async def deposit(
        self, user: Actor, currency: str, amount: int, reference: str
    ) -> Outcome[Deposit]: ...


@runtime_checkable
class InvoiceDeposits(Protocol):
    """A provider paid by invoice (Crypto Pay): the user types an amount and
    gets a payment link; the wallet is credited when the provider confirms."""

    async def invoice(
        self,
        user: Actor,
        currency: str,
        amount: int,
        describe: Callable[[int], str] | None = None,
    ) -> DepositView: ...


# -- deposits -----------------------------------------------------------------------


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
            _("➕ <b>Deposit</b>\n\nWhich currency do you want to deposit?"),
            currency_keyboard("deposit", snapshot, currencies),
        )
        return
    money = currencies[callback_data.currency]
    instructions = texts.deposit_instructions(deposits.name, money.code)
    text = _("➕ <b>Deposit {code}</b>").format(code=money.code) + f"\n\n{escape(instructions)}"
    if not isinstance(deposits, InstantDeposits | InvoiceDeposits):
        await edit(query.message, text, back_to_wallet())
        return
    await enter(
        state,
        WalletForm.deposit_amount,
        {
            "flow": "deposit",
            "currency": money.code,
            # the deposit's identity: one credit per form, however often an
            # amount is typed into it (Redis may fail to forget it)
            "form": secrets.token_urlsafe(9),
            "messages": [query.message.message_id],
        },
    )
    await edit(
        query.message,
        f"{text}\n\n"
        + _("How much? Send an amount {bounds}, or /cancel.").format(
            bounds=bounds(money, money.max_amount)
        ),
        cancel_keyboard(),
    )


async def deposit_amount(
    message: Message,
    state: FSMContext,
    snapshot: UserSnapshot,
    currencies: Currencies,
    deposits: DepositProvider,
    snapshots: SnapshotCache,
    bot: Bot,
) -> None:
    form = await open_form(message, state, currencies, "deposit")
    if form is None or not isinstance(deposits, InstantDeposits | InvoiceDeposits):
        return
    money, data = form
    amount = await typed_amount(message, money)
    if amount is None:
        return
    if isinstance(deposits, InvoiceDeposits):
        # Refused (Crypto Pay down, say): the error handler says so, the form stays.
        invoice = await deposits.invoice(snapshot, money.code, amount, invoice_description)
        text, markup = invoice_screen(invoice, money)
        await close_form(state, finished_by=message, reply=text)
        await show_result(bot, message.chat.id, text, markup)
        await strip_keyboards(bot, message.chat.id, data.get("messages", ()))
        return
    # The same for every amount typed into this form and for this message
    # delivered again (forms started before forms had ids: the message).
    reference = f"{message.chat.id}:{data.get('form') or message.message_id}"
    deposit = (await deposits.deposit(snapshot, money.code, amount, reference)).value
    headline = (
        _("✅ Deposited {amount}.").format(amount=money.format(amount))
        if deposit.credited
        else _("This deposit was already credited; nothing changed.")
    )
    text, markup = committed_wallet(
        await fresh(snapshots, snapshot), currencies, headline, deposits.play_money
    )
    await close_form(state, finished_by=message, reply=text)
    await show_result(bot, message.chat.id, text, markup)
    await strip_keyboards(bot, message.chat.id, data.get("messages", ()))


def invoice_description(deposit_id: int) -> str:
    """What @CryptoBot shows the payer about the invoice, in their language."""
    return _("Deposit #{id} to your escrow wallet").format(id=deposit_id)


def invoice_screen(invoice: DepositView, money: Currency) -> tuple[str, InlineKeyboardMarkup]:
    amount = money.format(invoice.amount)
    until = (
        " " + _("It is valid until {when}.").format(when=texts.when(invoice.expires_at))
        if invoice.expires_at
        else ""
    )
    text = _(
        "💳 <b>Deposit #{id}: pay {amount}</b>\n\n"
        "Open the link to pay with @CryptoBot.{until} Your wallet is credited as soon "
        "as Crypto Pay confirms the payment, and you get a message here."
    ).format(id=invoice.id, amount=amount, until=until)
    kb = Keyboard()
    if invoice.pay_url:
        kb.button(text=_("💳 Pay {amount}").format(amount=amount), url=invoice.pay_url)
    kb.row(back_button())
    return text, kb.as_markup()


def router() -> Router:
    router = Router(name="deposit")
    router.callback_query.register(deposit_button, WalletMenu.filter(F.screen == "deposit"))
    router.message.register(deposit_amount, StateFilter(WalletForm.deposit_amount), NotACommand())
    return router
