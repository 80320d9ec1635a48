"""The admin panel's pending withdrawals, from its queue or from the admins'
notification of each request: approve (after a confirmation; paid through the
payout provider when there is one), or reject with a reason. What the screens
show is in admin_queue.py."""

from __future__ import annotations

from html import escape

from aiogram import Bot, F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.payments.payouts import Payouts
from bot.services import Services
from bot.services.errors import InvalidInput, WrongState
from bot.services.money import Currencies
from bot.services.settings import EscrowSettings
from bot.telegram import texts
from bot.telegram.filters import NotACommand
from bot.telegram.fsm import enter
from bot.telegram.handlers.admin import (
    AdminForm,
    AdminPanel,
    AdminWithdrawal,
    admin_router,
    cancel_keyboard,
)
from bot.telegram.handlers.admin_queue import (
    pending_or_shown,
    show_decision,
    show_queue,
    withdrawal_details,
)
from bot.telegram.handlers.committed import (
    close_form,
    show_and_notify,
)
from bot.telegram.handlers.wallet import edit
from bot.telegram.i18n import _
from bot.telegram.keyboards import Keyboard
from bot.telegram.notices import NoticeSender
from bot.telegram.refusals import refusal_text
from cache.snapshots import UserSnapshot
from db.models import WithdrawalStatus

# -- withdrawals --------------------------------------------------------------------


async def withdrawals(
    query: CallbackQuery, snapshot: UserSnapshot, services: Services, currencies: Currencies
) -> None:
    await show_queue(query.message, snapshot, services, currencies)


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
        item = await pending_or_shown(
            query.message, callback_data.id, snapshot, services, currencies
        )
        if item is None:
            return
        money = currencies[item.currency]
        kb = Keyboard()
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
        await show_queue(query.message, snapshot, services, currencies, headline)
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
        headline = f"⚠️ {refusal_text(already, currencies)}"
        await show_queue(message, snapshot, services, currencies, headline)
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


async def reject(
    query: CallbackQuery,
    callback_data: AdminWithdrawal,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    settings: EscrowSettings,
    state: FSMContext,
) -> None:
    if (
        await pending_or_shown(query.message, callback_data.id, snapshot, services, currencies)
        is None
    ):
        return
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
        headline = f"⚠️ {refusal_text(already, currencies)}"
        await show_queue(message, snapshot, services, currencies, headline, new=True)
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
