"""The admin panel's pending withdrawals: approve (after a confirmation; paid
through the payout provider when there is one), or reject with a reason."""

from __future__ import annotations

from html import escape

from aiogram import Bot, F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.payments.payouts import Payouts
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
    AdminForm,
    AdminPanel,
    AdminWithdrawal,
    admin_router,
    cancel_keyboard,
    home_keyboard,
    home_text,
    queue_size,
    screen_keyboard,
)
from bot.telegram.handlers.committed import (
    close_form,
    read_after_commit,
    show_and_notify,
    show_result,
)
from bot.telegram.handlers.wallet import (
    edit,
)
from bot.telegram.i18n import _
from bot.telegram.notices import NoticeSender
from bot.telegram.refusals import refusal_text
from cache.snapshots import UserSnapshot
from db.models import WithdrawalStatus

# -- withdrawals --------------------------------------------------------------------


def pending_screen(
    items: list[WithdrawalView], currencies: Currencies, headline: str = ""
) -> tuple[str, InlineKeyboardMarkup]:
    lines = [headline, ""] if headline else []
    lines += [_("🏦 <b>Pending withdrawals</b> ({count})").format(count=queue_size(items)), ""]
    kb = InlineKeyboardBuilder()
    for item in items:
        lines.append(withdrawal_details(item, currencies))
        kb.row(
            InlineKeyboardButton(
                text=_("✅ Approve #{id}").format(id=item.id),
                callback_data=AdminWithdrawal(action="approve", id=item.id).pack(),
            ),
            InlineKeyboardButton(
                text=_("✖️ Reject #{id}").format(id=item.id),
                callback_data=AdminWithdrawal(action="reject", id=item.id).pack(),
            ),
        )
    if not items:
        lines.append(_("Nothing to decide."))
    kb.attach(InlineKeyboardBuilder.from_markup(screen_keyboard("withdrawals")))
    return "\n".join(lines), kb.as_markup()


# A page of withdrawals fits one message: each shows this much of its
# destination (the approval's question shows all of it).
LISTED_DESTINATION = 64


def withdrawal_details(item: WithdrawalView, currencies: Currencies) -> str:
    return _(
        "<b>#{id}</b> · {amount} · user <code>{telegram_id}</code>\n"
        "    to <code>{destination}</code>\n"
        "    requested {when}"
    ).format(
        id=item.id,
        amount=currencies[item.currency].format(item.amount),
        telegram_id=item.telegram_id,
        destination=escape(texts.shorten(item.destination, LISTED_DESTINATION)),
        when=texts.when(item.created_at),
    )


async def withdrawals(
    query: CallbackQuery, snapshot: UserSnapshot, services: Services, currencies: Currencies
) -> None:
    text, markup = pending_screen(
        await services.reads.pending_withdrawals(snapshot, QUEUE_PAGE), currencies
    )
    await edit(query.message, text, markup)


async def approve(
    query: CallbackQuery,
    callback_data: AdminWithdrawal,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    outbox: NoticeSender,
    bot: Bot,
    payouts: Payouts | None,
) -> None:
    if not callback_data.ok:
        pending = await services.reads.pending_withdrawals(snapshot, QUEUE_PAGE)
        item = next((w for w in pending if w.id == callback_data.id), None)
        if item is None:
            headline = _("⚠️ Withdrawal #{id} is not pending any more.").format(id=callback_data.id)
            await edit(query.message, *pending_screen(pending, currencies, headline))
            return
        money = currencies[item.currency]
        kb = InlineKeyboardBuilder()
        if payouts is not None:
            yes = _("✅ Yes, pay it through @CryptoBot")
            question = _(
                "❓ Pay withdrawal #{id}? {amount} is sent now from "
                "the Crypto Pay app's balance to the user's @CryptoBot wallet."
            )
        else:
            yes = _("✅ Yes, it was sent")
            question = _(
                "❓ Approve withdrawal #{id}? Press only once {amount} "
                "has been sent to <code>{destination}</code>: the held amount "
                "then leaves the user's wallet."
            )
        question = question.format(
            id=item.id, amount=money.format(item.amount), destination=escape(item.destination)
        )
        kb.button(text=yes, callback_data=AdminWithdrawal(action="approve", id=item.id, ok=True))
        kb.button(text=_("« Back"), callback_data=AdminPanel(screen="withdrawals"))
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
    headline = _("✅ Withdrawal #{id} approved: {amount}.").format(
        id=withdrawal.id, amount=money.format(withdrawal.amount)
    )
    await show_and_notify(
        show_decision(bot, snapshot, services, currencies, headline, edit=query.message),
        outbox.send(approved.notices, withdrawal, actor=snapshot),
    )


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
        headline = _(
            "⏳ Withdrawal #{id} ({amount}) approved; Crypto Pay did not confirm "
            "the transfer yet. It is settled within a jobs tick, never paid twice."
        )
    elif result.status == WithdrawalStatus.PAID:
        headline = _("✅ Withdrawal #{id} paid: {amount} sent through @CryptoBot.")
    else:
        headline = _(
            "⚠️ Crypto Pay refused withdrawal #{id} ({amount}): the amount is "
            "back in the user's available balance."
        )
    headline = headline.format(id=withdrawal.id, amount=amount)
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


async def reject(
    query: CallbackQuery,
    callback_data: AdminWithdrawal,
    settings: EscrowSettings,
    state: FSMContext,
) -> None:
    await enter(state, AdminForm.reject_note, {"flow": "reject", "withdrawal_id": callback_data.id})
    await edit(
        query.message,
        _(
            "✖️ Why is withdrawal #{id} rejected? Send the reason in one message "
            "(at most {limit} characters); the user will read it. /cancel to go back."
        ).format(id=callback_data.id, limit=settings.reason_max_length),
        cancel_keyboard(),
    )


async def reject_note(
    message: Message,
    state: FSMContext,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    outbox: NoticeSender,
    bot: Bot,
) -> None:
    data = await state.get_data()
    if not snapshot.is_admin or data.get("flow") != "reject":
        await state.clear()
        await message.answer(_(texts.NOT_ADMIN) if not snapshot.is_admin else _("⚠️ Start again."))
        return
    if not message.text:
        await message.answer(_("Please send the reason as text, or /cancel."))
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
        again = _("⚠️ {refusal} Send it again, or /cancel.")
        await message.answer(again.format(refusal=refusal_text(bad, currencies)))
        return
    # A form Redis could not forget is refused by the withdrawal: it is decided now.
    await close_form(state)
    withdrawal = rejected.value
    money = currencies[withdrawal.currency]
    headline = _(
        "✖️ Withdrawal #{id} rejected: {amount} is back in the user's available balance."
    ).format(id=withdrawal.id, amount=money.format(withdrawal.amount))
    await show_decision(bot, snapshot, services, currencies, headline, edit=None)
    await outbox.send(rejected.notices, withdrawal, actor=snapshot)


def router() -> Router:
    router = admin_router("admin_withdrawals")
    router.callback_query.register(withdrawals, AdminPanel.filter(F.screen == "withdrawals"))
    router.callback_query.register(approve, AdminWithdrawal.filter(F.action == "approve"))
    router.callback_query.register(reject, AdminWithdrawal.filter(F.action == "reject"))
    router.message.register(reject_note, StateFilter(AdminForm.reject_note), NotACommand())
    return router
