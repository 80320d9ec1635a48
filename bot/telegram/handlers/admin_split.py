"""An admin settles a dispute by a split: the seller's part typed as an amount,
confirmed, then paid (less the fee on that part) with the rest refunded to the
buyer, in one ledger movement; both parties are told their amounts."""

from __future__ import annotations

from html import escape

from aiogram import Bot, F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.services import Services
from bot.services.deals.settlement import split_fee
from bot.services.errors import AlreadyDone, InvalidInput, Refusal, WrongState
from bot.services.money import Currencies, parse_minor_units
from bot.services.views import DealView
from bot.telegram import keyboards, texts
from bot.telegram.filters import NotACommand
from bot.telegram.freshness import DealVersions
from bot.telegram.fsm import enter
from bot.telegram.handlers.admin import (
    AdminForm,
    AdminSplit,
    admin_router,
    cancel_keyboard,
)
from bot.telegram.handlers.committed import show_and_notify, show_result
from bot.telegram.handlers.wallet import edit
from bot.telegram.i18n import N_, _
from bot.telegram.keyboards import AdminCard, AdminDeal, Keyboard
from bot.telegram.notices import NoticeSender
from bot.telegram.refusals import refusal_text
from cache.snapshots import UserSnapshot
from db.models import DealStatus

SPLIT_DONE = N_("✂️ Settled by a split.")
NOT_DISPUTED = N_("⚠️ This deal is not in dispute any more.")


def not_disputed(deal: DealView, currencies: Currencies, headline: str) -> tuple[str, object]:
    """The admin's card under `headline` (a catalog key or a text already said)."""
    card = texts.deal_card(deal, None, currencies, _(headline))
    return card, keyboards.admin_deal_keyboard(deal)


async def split_start(
    query: CallbackQuery,
    callback_data: AdminDeal,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    state: FSMContext,
) -> None:
    deal = await services.deals.get(snapshot, callback_data.code, as_admin=True)
    if deal.status != DealStatus.DISPUTED:
        await edit(query.message, *not_disputed(deal, currencies, NOT_DISPUTED))
        return
    money = currencies[deal.currency]
    await enter(
        state,
        AdminForm.split_part,
        {"flow": "split", "code": deal.code, "v": deal.version, "amount": deal.amount,
         "currency": deal.currency, "fee_bps": deal.fee_bps,
         "buyer": deal.buyer_name, "seller": deal.seller_name},
    )  # fmt: skip
    await edit(
        query.message,
        _(
            "✂️ <b>Split deal #{code}</b>\n\n"
            "How much of {amount} goes to the seller, {seller}? The rest is refunded to the "
            "buyer, {buyer}. The fee ({rate}%) is taken from the seller's part only.\n\n"
            "Send an amount more than 0 and less than {amount}, or /cancel."
        ).format(
            code=deal.code,
            amount=money.format(deal.amount),
            seller=escape(deal.seller_name or _("the seller")),
            buyer=escape(deal.buyer_name or _("the buyer")),
            rate=texts.percent(deal.fee_bps),
        ),
        cancel_keyboard(),
    )


async def split_part(
    message: Message, state: FSMContext, snapshot: UserSnapshot, currencies: Currencies
) -> None:
    data = await state.get_data()
    if not snapshot.is_admin or data.get("flow") != "split":
        await state.clear()
        await message.answer(_(texts.NOT_ADMIN) if not snapshot.is_admin else _("⚠️ Start again."))
        return
    money = currencies[data["currency"]]
    try:
        part = parse_minor_units(message.text or "", money.decimals, money.code)
        if not 0 < part < data["amount"]:
            raise InvalidInput(
                Refusal.SPLIT_OUT_OF_RANGE, amount=data["amount"], currency=money.code
            )
    except InvalidInput as bad:  # the step repeats
        await message.answer(
            _("⚠️ {refusal} Send the seller's part again, or /cancel.").format(
                refusal=refusal_text(bad, currencies)
            ),
            reply_markup=cancel_keyboard(),
        )
        return
    await state.clear()
    fee = split_fee(data["fee_bps"], part)
    kb = Keyboard()
    kb.button(
        text=_("✅ Yes, split it"),
        callback_data=AdminSplit(code=data["code"], v=data["v"], part=part),
    )
    kb.button(text=_("« Back"), callback_data=AdminCard(code=data["code"]))
    kb.adjust(1)
    await message.answer(
        _(
            "❓ Split deal #{code}?\n\n"
            "To the seller, {seller}: {part} less the fee of {fee}, <b>{paid}</b> paid.\n"
            "Refunded to the buyer, {buyer}: <b>{refund}</b>.\n\nThis can't be undone."
        ).format(
            code=data["code"],
            seller=escape(data["seller"] or _("the seller")),
            part=money.format(part),
            fee=money.format(fee),
            paid=money.format(part - fee),
            buyer=escape(data["buyer"] or _("the buyer")),
            refund=money.format(data["amount"] - part),
        ),
        reply_markup=kb.as_markup(),
    )


async def split_confirm(
    query: CallbackQuery,
    callback_data: AdminSplit,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    deals_seen: DealVersions,
    outbox: NoticeSender,
    bot: Bot,
) -> None:
    card = query.message
    try:
        split = await services.deals.split(
            snapshot, callback_data.code, callback_data.part, expected_version=callback_data.v
        )
    except AlreadyDone as done:
        # This admin's own split, pressed again or delivered again after its
        # commit: the success it was.
        deals_seen.note(done.current.code, done.current.version)
        await show_result(
            bot, snapshot.telegram_id, *not_disputed(done.current, currencies, SPLIT_DONE),
            edit=card,
        )  # fmt: skip
        return
    except WrongState as moved:
        # Settled by another admin first, or changed since the question: nothing moved now.
        if not isinstance(moved.current, DealView):
            raise
        headline = f"⚠️ {refusal_text(moved, currencies)}"
        await edit(card, *not_disputed(moved.current, currencies, headline))
        return
    deal = split.value
    deals_seen.note(deal.code, deal.version)
    await show_and_notify(
        show_result(
            bot, snapshot.telegram_id, *not_disputed(deal, currencies, SPLIT_DONE), edit=card
        ),
        outbox.send(split.notices, deal, actor=snapshot),
    )


def router() -> Router:
    router = admin_router("admin_split")
    router.callback_query.register(split_start, AdminDeal.filter(F.outcome == "split"))
    router.message.register(split_part, StateFilter(AdminForm.split_part), NotACommand())
    router.callback_query.register(split_confirm, AdminSplit.filter())
    return router
