"""Withdrawals: the request form (currency, amount, destination, confirm) and
the user's recent requests with their status. An admin decides them
(`bot/telegram/handlers/admin_withdrawals.py`); the amount is held meanwhile."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.payments.payouts import Payouts
from bot.services import Services
from bot.services.errors import AlreadyDone
from bot.services.money import Currencies, Currency
from bot.services.settings import EscrowSettings
from bot.services.wallets import DepositProvider
from bot.telegram.filters import NotACommand
from bot.telegram.fsm import enter
from bot.telegram.handlers.blocked import told_blocked
from bot.telegram.handlers.committed import (
    close_form,
    show_and_notify,
    show_result,
    strip_keyboards,
)
from bot.telegram.handlers.wallet import (
    WalletForm,
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
from bot.telegram.notices import NoticeSender
from bot.telegram.withdrawals import WITHDRAWAL_STATUS, withdrawal_line
from cache.snapshots import UserSnapshot
from cache.store import SnapshotCache
from db.models import WithdrawalStatus
from db.sql.notifications import Notice

RECENT_WITHDRAWALS = 5


async def withdraw_button(
    query: CallbackQuery,
    callback_data: WalletMenu,
    snapshot: UserSnapshot,
    currencies: Currencies,
    state: FSMContext,
) -> None:
    if not isinstance(query.message, Message) or await told_blocked(query.message, snapshot):
        return
    if not callback_data.currency:
        await edit(
            query.message,
            _("➖ <b>Withdraw</b>\n\nWhich currency do you want to withdraw?"),
            currency_keyboard("withdraw", snapshot, currencies),
        )
        return
    money = currencies[callback_data.currency]
    available = snapshot.available(money.code)
    if available < money.min_amount:
        await edit(
            query.message,
            _(
                "➖ <b>Withdraw {code}</b>\n\nYou have {available} available; "
                "the smallest withdrawal is {minimum}."
            ).format(
                code=money.code,
                available=money.format(available),
                minimum=money.format(money.min_amount),
            ),
            back_to_wallet(),
        )
        return
    await enter(
        state,
        WalletForm.withdraw_amount,
        {"flow": "withdraw", "currency": money.code, "messages": [query.message.message_id]},
    )
    await edit(
        query.message,
        _(
            "➖ <b>Withdraw {code}</b>\n\nAvailable: {available}.\n"
            "How much do you want to withdraw? Send an amount {bounds}, or /cancel."
        ).format(
            code=money.code, available=money.format(available), bounds=bounds(money, available)
        ),
        cancel_keyboard(),
    )


async def withdraw_amount(
    message: Message,
    state: FSMContext,
    snapshot: UserSnapshot,
    currencies: Currencies,
    settings: EscrowSettings,
    payouts: Payouts | None,
) -> None:
    form = await open_form(message, state, currencies, "withdraw")
    if form is None:
        return
    money, data = form
    amount = await typed_amount(message, money)
    if amount is None:
        return
    # A display check from the snapshot; the service checks again in its transaction.
    available = snapshot.available(money.code)
    if amount > available:
        await message.answer(
            _("⚠️ You have only {amount} available. Send a smaller amount, or /cancel.").format(
                amount=money.format(available)
            ),
            reply_markup=cancel_keyboard(),
        )
        return
    if payouts is not None:  # paid to the sender's own wallet there: no address to ask
        data = {**data, "amount": amount}
        await ask_confirmation(message, state, money, data, payouts.destination(snapshot))
        return
    asked = await message.answer(
        _(
            "Where should {amount} be sent? Send the address or account "
            "(at most {limit} characters), or /cancel."
        ).format(amount=money.format(amount), limit=settings.withdrawal_destination_max_length),
        reply_markup=cancel_keyboard(),
    )
    messages = [*data.get("messages", ()), asked.message_id]
    await enter(
        state, WalletForm.withdraw_destination, {**data, "amount": amount, "messages": messages}
    )


async def withdraw_destination(
    message: Message,
    state: FSMContext,
    currencies: Currencies,
    settings: EscrowSettings,
) -> None:
    destination = (message.text or "").strip()
    limit = settings.withdrawal_destination_max_length
    if not destination:
        await message.answer(
            _("Please send the destination as text, or /cancel."), reply_markup=cancel_keyboard()
        )
        return
    if len(destination) > limit:
        await message.answer(
            _(
                "⚠️ The destination is too long: {length} characters, at most {limit}. "
                "Send it again, or /cancel."
            ).format(length=len(destination), limit=limit),
            reply_markup=cancel_keyboard(),
        )
        return
    form = await open_form(message, state, currencies, "withdraw")
    if form is None:
        return
    money, data = form
    await ask_confirmation(message, state, money, data, destination)


async def ask_confirmation(
    message: Message,
    state: FSMContext,
    money: Currency,
    data: dict[str, Any],
    destination: str,
) -> None:
    data = {**data, "destination": destination}
    await enter(state, WalletForm.withdraw_confirm, data)
    kb = Keyboard()
    kb.button(text=_("✅ Confirm withdrawal"), callback_data=WalletMenu(screen="confirm"))
    kb.button(text=_("✖️ Cancel"), callback_data=WalletMenu(screen="cancel"))
    kb.adjust(1)
    await message.answer(
        _(
            "❓ Withdraw <b>{amount}</b> to <code>{destination}</code>?\n\n"
            "The amount is held in your wallet until an admin approves and it is sent."
        ).format(amount=money.format(data["amount"]), destination=escape(destination)),
        reply_markup=kb.as_markup(),
    )


async def withdraw_waiting(message: Message) -> None:
    await message.answer(
        _("Press ✅ Confirm withdrawal above, or /cancel."), reply_markup=cancel_keyboard()
    )


async def withdraw_confirm(
    query: CallbackQuery,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    snapshots: SnapshotCache,
    state: FSMContext,
    outbox: NoticeSender,
    bot: Bot,
    deposits: DepositProvider,
    payouts: Payouts | None,
) -> None:
    if not isinstance(query.message, Message):
        return
    confirmation = query.message
    # The confirmation message is the request's identity: a double press (even on
    # two replicas at once) holds once, and each press is shown the request made.
    reference = f"{confirmation.chat.id}:{confirmation.message_id}"
    data = await state.get_data()
    notices: Iterable[Notice] = ()  # the admins told of a new request
    finished: Iterable[int] = ()  # the form's messages, to take their buttons off
    if data.get("flow") == "withdraw" and "destination" in data:
        try:
            requested = await services.wallets.request_withdrawal(
                snapshot, data["currency"], data["amount"], data["destination"], reference=reference
            )
        except AlreadyDone as done:  # requested before; the form (not forgotten, or newer) stays
            withdrawal = done.current
        else:
            withdrawal, notices = requested.value, requested.notices
            finished = data.get("messages", ())
            await close_form(state)
    else:
        # Finished already, by this confirmation's first press or by this press
        # delivered again after its commit; or the form was left.
        made = await services.wallets.requested_with(snapshot, reference)
        if made is None:
            await confirmation.answer(
                _(
                    "⚠️ There is no withdrawal waiting for confirmation. "
                    "Start again from the wallet."
                ),
                reply_markup=back_to_wallet(),
            )
            return
        withdrawal = made
    money = currencies[withdrawal.currency]
    if payouts is not None and withdrawal.amount <= money.auto_payout_up_to:
        # paid at once where the currency allows; does nothing once not pending
        withdrawal = await payouts.pay_unattended(withdrawal.id) or withdrawal
    headline = _(
        "✅ Withdrawal #{id} requested: {amount} to <code>{destination}</code>.\nStatus: {status}."
    ).format(
        id=withdrawal.id,
        amount=money.format(withdrawal.amount),
        destination=escape(withdrawal.destination),
        status=_(WITHDRAWAL_STATUS[WithdrawalStatus(withdrawal.status)]),
    )
    text, markup = committed_wallet(
        await fresh(snapshots, snapshot), currencies, headline, deposits.play_money
    )
    await show_and_notify(
        show_result(bot, confirmation.chat.id, text, markup, edit=confirmation),
        outbox.send(notices, withdrawal, actor=snapshot),
    )
    await strip_keyboards(bot, confirmation.chat.id, finished)


async def withdrawals_button(
    query: CallbackQuery, snapshot: UserSnapshot, services: Services, currencies: Currencies
) -> None:
    items = await services.reads.withdrawals_of(snapshot, RECENT_WITHDRAWALS)
    lines = [_("🧾 <b>Your recent withdrawals</b>"), ""]
    lines += [withdrawal_line(item, currencies) for item in items] or [_("None yet.")]
    if isinstance(query.message, Message):
        await edit(query.message, "\n".join(lines), back_to_wallet())


def router() -> Router:
    router = Router(name="withdraw")
    router.callback_query.register(withdraw_button, WalletMenu.filter(F.screen == "withdraw"))
    router.message.register(withdraw_amount, StateFilter(WalletForm.withdraw_amount), NotACommand())
    router.message.register(
        withdraw_destination, StateFilter(WalletForm.withdraw_destination), NotACommand()
    )
    router.message.register(
        withdraw_waiting, StateFilter(WalletForm.withdraw_confirm), NotACommand()
    )
    router.callback_query.register(withdraw_confirm, WalletMenu.filter(F.screen == "confirm"))
    router.callback_query.register(withdrawals_button, WalletMenu.filter(F.screen == "withdrawals"))
    return router
