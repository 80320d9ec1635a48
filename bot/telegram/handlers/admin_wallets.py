"""The admin panel's money screens: pending withdrawals (approve, or reject
with a reason) and deposits credited by hand. Guarded like the rest of the
panel (bot/telegram/handlers/admin.py)."""

from __future__ import annotations

import logging
from html import escape

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.payments.payouts import Payouts
from bot.runtime.notifier import Outbox
from bot.services import Services
from bot.services.errors import InvalidInput, WrongState
from bot.services.money import Currencies
from bot.services.settings import EscrowSettings
from bot.services.views import WithdrawalView
from bot.telegram import texts
from bot.telegram.filters import NotACommand
from bot.telegram.fsm import enter
from bot.telegram.handlers.admin import (
    QUEUE_PAGE,
    AdminCredit,
    AdminForm,
    AdminPanel,
    AdminWithdrawal,
    ConfiguredAdmin,
    cancel_keyboard,
    home_keyboard,
    home_text,
    queue_size,
    refused,
    screen_keyboard,
)
from bot.telegram.handlers.committed import close_form, read_after_commit, show_result
from bot.telegram.handlers.wallet import (
    balances_text,
    bounds,
    edit,
    typed_amount,
    wallet_keyboard,
)
from bot.telegram.refusals import refusal_text
from cache.snapshots import UserSnapshot
from cache.store import SnapshotCache
from db.models import WithdrawalStatus

log = logging.getLogger(__name__)
router = Router(name="admin_wallets")


# -- withdrawals --------------------------------------------------------------------


def pending_screen(
    items: list[WithdrawalView], currencies: Currencies, headline: str = ""
) -> tuple[str, InlineKeyboardMarkup]:
    lines = [headline, ""] if headline else []
    lines += [f"🏦 <b>Pending withdrawals</b> ({queue_size(items)})", ""]
    kb = InlineKeyboardBuilder()
    for item in items:
        lines.append(withdrawal_details(item, currencies))
        kb.row(
            InlineKeyboardButton(
                text=f"✅ Approve #{item.id}",
                callback_data=AdminWithdrawal(action="approve", id=item.id).pack(),
            ),
            InlineKeyboardButton(
                text=f"✖️ Reject #{item.id}",
                callback_data=AdminWithdrawal(action="reject", id=item.id).pack(),
            ),
        )
    if not items:
        lines.append("Nothing to decide.")
    kb.attach(InlineKeyboardBuilder.from_markup(screen_keyboard("withdrawals")))
    return "\n".join(lines), kb.as_markup()


# A page of withdrawals fits one message: each shows this much of its
# destination (the approval's question shows all of it).
LISTED_DESTINATION = 64


def withdrawal_details(item: WithdrawalView, currencies: Currencies) -> str:
    return (
        f"<b>#{item.id}</b> · {currencies[item.currency].format(item.amount)}"
        f" · user <code>{item.telegram_id}</code>\n"
        f"    to <code>{escape(texts.shorten(item.destination, LISTED_DESTINATION))}</code>\n"
        f"    requested {texts.when(item.created_at)}"
    )


@router.callback_query(AdminPanel.filter(F.screen == "withdrawals"), ConfiguredAdmin())
async def withdrawals(
    query: CallbackQuery, snapshot: UserSnapshot, services: Services, currencies: Currencies
) -> None:
    if await refused(query, snapshot) or not isinstance(query.message, Message):
        return
    text, markup = pending_screen(
        await services.reads.pending_withdrawals(snapshot, QUEUE_PAGE), currencies
    )
    await edit(query.message, text, markup)


@router.callback_query(AdminWithdrawal.filter(F.action == "approve"), ConfiguredAdmin())
async def approve(
    query: CallbackQuery,
    callback_data: AdminWithdrawal,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    outbox: Outbox,
    bot: Bot,
    payouts: Payouts | None,
) -> None:
    if await refused(query, snapshot) or not isinstance(query.message, Message):
        return
    if not callback_data.ok:
        pending = await services.reads.pending_withdrawals(snapshot, QUEUE_PAGE)
        item = next((w for w in pending if w.id == callback_data.id), None)
        if item is None:
            headline = f"⚠️ Withdrawal #{callback_data.id} is not pending any more."
            await edit(query.message, *pending_screen(pending, currencies, headline))
            return
        money = currencies[item.currency]
        kb = InlineKeyboardBuilder()
        if payouts is not None:
            yes = "✅ Yes, pay it through @CryptoBot"
            question = (
                f"❓ Pay withdrawal #{item.id}? {money.format(item.amount)} is sent now from "
                "the Crypto Pay app's balance to the user's @CryptoBot wallet."
            )
        else:
            yes = "✅ Yes, it was sent"
            question = (
                f"❓ Approve withdrawal #{item.id}? Press only once {money.format(item.amount)} "
                f"has been sent to <code>{escape(item.destination)}</code>: the held amount "
                "then leaves the user's wallet."
            )
        kb.button(text=yes, callback_data=AdminWithdrawal(action="approve", id=item.id, ok=True))
        kb.button(text="« Back", callback_data=AdminPanel(screen="withdrawals"))
        kb.adjust(1)
        await edit(
            query.message,
            f"{question}\n\n{withdrawal_details(item, currencies)}",
            kb.as_markup(),
        )
        return
    if payouts is not None:
        await pay_out(query.message, callback_data.id, snapshot, services, currencies, payouts, bot)
        return
    try:
        approved = await services.wallets.approve_withdrawal(snapshot, callback_data.id)
    except WrongState as already:
        headline = f"⚠️ {refusal_text(already, currencies)}"
        text, markup = pending_screen(
            await services.reads.pending_withdrawals(snapshot, QUEUE_PAGE), currencies, headline
        )
        await edit(query.message, text, markup)
        return
    withdrawal = approved.value
    money = currencies[withdrawal.currency]
    headline = f"✅ Withdrawal #{withdrawal.id} approved: {money.format(withdrawal.amount)}."
    await show_decision(bot, snapshot, services, currencies, headline, edit=query.message)
    await outbox.send(approved.notices, withdrawal, actor=snapshot)


async def pay_out(
    message: Message,
    withdrawal_id: int,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    payouts: Payouts,
    bot: Bot,
) -> None:
    """Approve for the provider's payout (committed), then send it: the admin
    sees what became of it — paid, refused (the money back), or still being
    sent (an unknown outcome the reconciler settles)."""
    try:
        withdrawal = await payouts.approve(snapshot, withdrawal_id)
    except WrongState as already:
        text, markup = pending_screen(
            await services.reads.pending_withdrawals(snapshot, QUEUE_PAGE),
            currencies,
            f"⚠️ {refusal_text(already, currencies)}",
        )
        await edit(message, text, markup)
        return
    amount = currencies[withdrawal.currency].format(withdrawal.amount)
    result = await payouts.pay(withdrawal)
    if result is None:
        headline = (
            f"⏳ Withdrawal #{withdrawal.id} ({amount}) approved; Crypto Pay did not confirm "
            "the transfer yet. It is settled within a jobs tick, never paid twice."
        )
    elif result.status == WithdrawalStatus.PAID:
        headline = f"✅ Withdrawal #{withdrawal.id} paid: {amount} sent through @CryptoBot."
    else:
        headline = (
            f"⚠️ Crypto Pay refused withdrawal #{withdrawal.id} ({amount}): the amount is "
            "back in the user's available balance."
        )
    await show_decision(bot, snapshot, services, currencies, headline, edit=message)


async def show_decision(
    bot: Bot,
    admin: UserSnapshot,
    services: Services,
    currencies: Currencies,
    headline: str,
    *,
    edit: Message | None,
) -> None:
    """A committed decision on a withdrawal, above the queue as it is now (or
    alone, with the way back, when the queue can't be read)."""
    pending = await read_after_commit(services.reads.pending_withdrawals(admin, QUEUE_PAGE))
    if pending is None:
        text, markup = home_text(headline), home_keyboard()
    else:
        text, markup = pending_screen(pending, currencies, headline)
    await show_result(bot, admin.telegram_id, text, markup, edit=edit)


@router.callback_query(AdminWithdrawal.filter(F.action == "reject"), ConfiguredAdmin())
async def reject(
    query: CallbackQuery,
    callback_data: AdminWithdrawal,
    snapshot: UserSnapshot,
    settings: EscrowSettings,
    state: FSMContext,
) -> None:
    if await refused(query, snapshot) or not isinstance(query.message, Message):
        return
    await enter(state, AdminForm.reject_note, {"flow": "reject", "withdrawal_id": callback_data.id})
    await edit(
        query.message,
        f"✖️ Why is withdrawal #{callback_data.id} rejected? Send the reason in one message "
        f"(at most {settings.reason_max_length} characters); the user will read it. "
        "/cancel to go back.",
        cancel_keyboard(),
    )


@router.message(StateFilter(AdminForm.reject_note), NotACommand())
async def reject_note(
    message: Message,
    state: FSMContext,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    outbox: Outbox,
    bot: Bot,
) -> None:
    data = await state.get_data()
    if not snapshot.is_admin or data.get("flow") != "reject":
        await state.clear()
        await message.answer(texts.NOT_ADMIN if not snapshot.is_admin else "⚠️ Start again.")
        return
    if not message.text:
        await message.answer("Please send the reason as text, or /cancel.")
        return
    withdrawal_id = data["withdrawal_id"]
    try:
        rejected = await services.wallets.reject_withdrawal(snapshot, withdrawal_id, message.text)
    except WrongState as already:
        await state.clear()
        text, markup = pending_screen(
            await services.reads.pending_withdrawals(snapshot, QUEUE_PAGE),
            currencies,
            f"⚠️ {refusal_text(already, currencies)}",
        )
        await message.answer(text, reply_markup=markup)
        return
    except InvalidInput as bad:  # the step repeats
        await message.answer(f"⚠️ {refusal_text(bad, currencies)} Send it again, or /cancel.")
        return
    # A form Redis could not forget is refused by the withdrawal: it is decided now.
    await close_form(state)
    withdrawal = rejected.value
    money = currencies[withdrawal.currency]
    headline = (
        f"✖️ Withdrawal #{withdrawal.id} rejected: {money.format(withdrawal.amount)} "
        "is back in the user's available balance."
    )
    await show_decision(bot, snapshot, services, currencies, headline, edit=None)
    await outbox.send(rejected.notices, withdrawal, actor=snapshot)


# -- deposits by hand ---------------------------------------------------------------


@router.callback_query(AdminPanel.filter(F.screen == "credit"), ConfiguredAdmin())
async def credit(query: CallbackQuery, snapshot: UserSnapshot, state: FSMContext) -> None:
    if await refused(query, snapshot) or not isinstance(query.message, Message):
        return
    await enter(state, AdminForm.credit_user, {"flow": "credit"})
    await edit(
        query.message,
        "💰 <b>Credit a deposit by hand</b>\n\n"
        "Whose deposit is it? Send the user's Telegram id (a number; they must have "
        "used the bot). /cancel to go back.",
        cancel_keyboard(),
    )


@router.message(StateFilter(AdminForm.credit_user), NotACommand())
async def credit_user(
    message: Message,
    state: FSMContext,
    snapshot: UserSnapshot,
    snapshots: SnapshotCache,
    currencies: Currencies,
) -> None:
    if not snapshot.is_admin:
        await state.clear()
        await message.answer(texts.NOT_ADMIN)
        return
    typed = (message.text or "").strip()
    if not (typed.isascii() and typed.isdigit() and 0 < int(typed) < 2**63):
        await message.answer(
            "⚠️ Send the Telegram id as a number, like 123456789, or /cancel.",
            reply_markup=cancel_keyboard(),
        )
        return
    target = await snapshots.get(int(typed))
    if target is None:
        await message.answer(
            "⚠️ No user with that Telegram id has used the bot. Send another id, or /cancel.",
            reply_markup=cancel_keyboard(),
        )
        return
    await state.clear()
    kb = InlineKeyboardBuilder()
    for money in currencies:
        kb.button(
            text=money.code,
            callback_data=AdminCredit(telegram_id=target.telegram_id, currency=money.code),
        )
    kb.adjust(3)
    kb.attach(InlineKeyboardBuilder.from_markup(cancel_keyboard()))
    await message.answer(f"💰 Credit {who(target)}: which currency?", reply_markup=kb.as_markup())


def who(user: UserSnapshot) -> str:
    return f"{escape(texts.name_of(user))} (id <code>{user.telegram_id}</code>)"


@router.callback_query(AdminCredit.filter(F.amount == 0), ConfiguredAdmin())
async def credit_currency(
    query: CallbackQuery,
    callback_data: AdminCredit,
    snapshot: UserSnapshot,
    currencies: Currencies,
    state: FSMContext,
) -> None:
    if await refused(query, snapshot) or not isinstance(query.message, Message):
        return
    money = currencies[callback_data.currency]
    await enter(
        state,
        AdminForm.credit_amount,
        {"flow": "credit", "telegram_id": callback_data.telegram_id, "currency": money.code},
    )
    await edit(
        query.message,
        f"💰 How much {money.code} to credit to user <code>{callback_data.telegram_id}</code>? "
        f"Send an amount {bounds(money, money.max_amount)}, or /cancel.",
        cancel_keyboard(),
    )


@router.message(StateFilter(AdminForm.credit_amount), NotACommand())
async def credit_amount(
    message: Message,
    state: FSMContext,
    snapshot: UserSnapshot,
    snapshots: SnapshotCache,
    currencies: Currencies,
) -> None:
    data = await state.get_data()
    if not snapshot.is_admin or data.get("flow") != "credit" or "currency" not in data:
        await state.clear()
        await message.answer(texts.NOT_ADMIN if not snapshot.is_admin else "⚠️ Start again.")
        return
    money = currencies[data["currency"]]
    amount = await typed_amount(message, money)
    if amount is None:
        return
    await state.clear()
    target = await snapshots.get(data["telegram_id"])
    name = who(target) if target else f"user <code>{data['telegram_id']}</code>"
    kb = InlineKeyboardBuilder()
    kb.button(
        text=f"✅ Credit {money.format(amount)}",
        callback_data=AdminCredit(
            telegram_id=data["telegram_id"], currency=money.code, amount=amount
        ),
    )
    kb.button(text="✖️ Cancel", callback_data=AdminPanel(screen="home"))
    kb.adjust(1)
    await message.answer(
        f"❓ Credit <b>{money.format(amount)}</b> to {name}? It is added to their available "
        "balance at once.",
        reply_markup=kb.as_markup(),
    )


@router.callback_query(AdminCredit.filter(F.amount > 0), ConfiguredAdmin())
async def credit_confirm(
    query: CallbackQuery,
    callback_data: AdminCredit,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    snapshots: SnapshotCache,
    bot: Bot,
) -> None:
    if await refused(query, snapshot) or not isinstance(query.message, Message):
        return
    money = currencies[callback_data.currency]
    # The confirmation message is the credit's identity: pressing it twice
    # (even at once) credits once.
    reference = f"tg:{query.message.chat.id}:{query.message.message_id}"
    deposit = (
        await services.wallets.admin_credit(
            snapshot,
            callback_data.telegram_id,
            money.code,
            callback_data.amount,
            reference=reference,
        )
    ).value
    if not deposit.credited:
        # Told apart from the confirmation, which shows the first press's result.
        await query.message.answer("⚠️ This deposit was already credited; nothing changed.")
        return
    target = await read_after_commit(snapshots.get(deposit.telegram_id))
    name = who(target) if target else f"user <code>{deposit.telegram_id}</code>"
    await show_result(
        bot,
        snapshot.telegram_id,
        home_text(f"✅ Credited {money.format(deposit.amount)} to {name}."),
        home_keyboard(),
        edit=query.message,
    )
    if target is None:
        return
    try:
        await bot.send_message(
            target.telegram_id,
            balances_text(
                target,
                currencies,
                f"💰 An admin credited {money.format(deposit.amount)}.",
            ),
            reply_markup=wallet_keyboard(),
        )
    except TelegramAPIError as exc:
        log.info("could not tell %s about a credit: %s", target.telegram_id, exc)
