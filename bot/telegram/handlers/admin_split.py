"""An admin settles a dispute by a split: the seller's part typed as an amount,
confirmed, then paid (less the fee on that part) with the rest refunded to the
buyer, in one ledger movement; both parties are told their amounts."""

from __future__ import annotations

from html import escape

from aiogram import Bot, F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

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
from bot.telegram.keyboards import AdminCard, AdminDeal
from bot.telegram.notices import NoticeSender
from bot.telegram.refusals import refusal_text
from cache.snapshots import UserSnapshot
from db.models import DealStatus

SPLIT_DONE = "✂️ Settled by a split."
NOT_DISPUTED = "⚠️ This deal is not in dispute any more."


def not_disputed(deal: DealView, currencies: Currencies, headline: str) -> tuple[str, object]:
    return texts.deal_card(deal, None, currencies, headline), keyboards.admin_deal_keyboard(deal)


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
        f"✂️ <b>Split deal #{deal.code}</b>\n\n"
        f"How much of {money.format(deal.amount)} goes to the seller, "
        f"{escape(deal.seller_name or 'the seller')}? The rest is refunded to the buyer, "
        f"{escape(deal.buyer_name or 'the buyer')}. The fee ({deal.fee_bps / 100:g}%) is "
        "taken from the seller's part only.\n\n"
        f"Send an amount more than 0 and less than {money.format(deal.amount)}, or /cancel.",
        cancel_keyboard(),
    )


async def split_part(
    message: Message, state: FSMContext, snapshot: UserSnapshot, currencies: Currencies
) -> None:
    data = await state.get_data()
    if not snapshot.is_admin or data.get("flow") != "split":
        await state.clear()
        await message.answer(texts.NOT_ADMIN if not snapshot.is_admin else "⚠️ Start again.")
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
            f"⚠️ {refusal_text(bad, currencies)} Send the seller's part again, or /cancel.",
            reply_markup=cancel_keyboard(),
        )
        return
    await state.clear()
    fee = split_fee(data["fee_bps"], part)
    kb = InlineKeyboardBuilder()
    kb.button(
        text="✅ Yes, split it",
        callback_data=AdminSplit(code=data["code"], v=data["v"], part=part),
    )
    kb.button(text="« Back", callback_data=AdminCard(code=data["code"]))
    kb.adjust(1)
    await message.answer(
        f"❓ Split deal #{data['code']}?\n\n"
        f"To the seller, {escape(data['seller'] or 'the seller')}: {money.format(part)} less "
        f"the fee of {money.format(fee)}, <b>{money.format(part - fee)}</b> paid.\n"
        f"Refunded to the buyer, {escape(data['buyer'] or 'the buyer')}: "
        f"<b>{money.format(data['amount'] - part)}</b>.\n\nThis can't be undone.",
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
