"""The admin panel's open disputes: the queue, a dispute's file (the deal, who
opened the dispute and why, the evidence, each piece sent again on request),
and its resolution (release to the seller or refund the buyer, after a
confirmation; a split is in admin_split.py)."""

from __future__ import annotations

from html import escape
from typing import Literal

from aiogram import Bot, F, Router
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot.services import Services
from bot.services.errors import AlreadyDone, WrongState
from bot.services.money import Currencies
from bot.services.views import DealView
from bot.telegram import keyboards, texts
from bot.telegram.disputes import (
    dispute_file_keyboard,
    dispute_file_text,
    relay_keyboard,
    relay_text,
    send_evidence,
)
from bot.telegram.freshness import DealVersions
from bot.telegram.handlers.admin import (
    QUEUE_PAGE,
    AdminPanel,
    admin_router,
    queue_size,
    screen_keyboard,
)
from bot.telegram.handlers.committed import show_and_notify, show_result
from bot.telegram.handlers.wallet import edit
from bot.telegram.i18n import N_, _
from bot.telegram.keyboards import AdminCard, AdminDeal, AdminEvidence, Keyboard
from bot.telegram.notices import NoticeSender
from bot.telegram.refusals import refusal_text
from cache.snapshots import UserSnapshot
from db.models import DealStatus

# -- disputes -----------------------------------------------------------------------


async def disputes(
    query: CallbackQuery, snapshot: UserSnapshot, services: Services, currencies: Currencies
) -> None:
    items = await services.reads.open_disputes(snapshot, QUEUE_PAGE)
    lines = [_("⚠️ <b>Open disputes</b> ({count})").format(count=queue_size(items)), ""]
    kb = Keyboard()
    for item in items:
        money = currencies[item.currency].format(item.amount)
        lines.append(f"<b>#{item.code}</b> · {money} · <i>{escape(item.description[:60])}</i>")
        kb.button(text=f"#{item.code} · {money}", callback_data=AdminCard(code=item.code))
    if not items:
        lines.append(_("No open disputes."))
    kb.adjust(1)
    kb.attach(Keyboard.from_markup(screen_keyboard("disputes")))
    await edit(query.message, "\n".join(lines), kb.as_markup())


async def show_screen(message: Message, text: str, markup: InlineKeyboardMarkup) -> None:
    """In place of the message pressed, or below it when it is a photo or a
    document (relayed evidence), whose text can't become a screen."""
    if message.text is None:
        await message.answer(text, reply_markup=markup)
    else:
        await edit(message, text, markup)


async def admin_card(
    query: CallbackQuery,
    callback_data: AdminCard,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
) -> None:
    file = await services.deals.dispute_file(snapshot, callback_data.code)
    await show_screen(
        query.message, dispute_file_text(file, currencies), dispute_file_keyboard(file)
    )


async def send_evidence_again(
    query: CallbackQuery,
    callback_data: AdminEvidence,
    snapshot: UserSnapshot,
    services: Services,
    bot: Bot,
) -> None:
    """A piece of the dispute's evidence (id 0: every piece), sent to the admin
    again, as it was relayed; read from the file, so an admin sees only what
    the database says is there."""
    file = await services.deals.dispute_file(snapshot, callback_data.code)
    deal = file.deal
    chosen = [item for item in file.evidence if callback_data.id in (0, item.id)]
    if not chosen:
        await query.message.answer(_("⚠️ That evidence is not in this dispute's file."))
        return
    for item in chosen:
        sender = deal.buyer_name if item.sender_id == deal.buyer_id else deal.seller_name
        text = relay_text(item, deal, sender or _("someone"))
        await send_evidence(bot, snapshot.telegram_id, item, text, relay_keyboard(deal))


def resolve_question(deal: DealView, outcome: str, currencies: Currencies) -> tuple[str, str]:
    """(the question, the confirming button's label)"""
    money = currencies[deal.currency]
    if outcome == "release":
        return (
            _("❓ Release {amount} to {seller} (fee {fee})? This can't be undone.").format(
                amount=money.format(deal.payout),
                seller=escape(deal.seller_name or _("the seller")),
                fee=money.format(deal.fee),
            ),
            _("✅ Yes, release to the seller"),
        )
    return (
        _("❓ Refund {amount} to {buyer}? This can't be undone.").format(
            amount=money.format(deal.amount), buyer=escape(deal.buyer_name or _("the buyer"))
        ),
        _("↩️ Yes, refund the buyer"),
    )


# What the admin reads (the parties' text: bot/telegram/notices.py).
RESOLVED = {"release": N_("✅ Released to the seller."), "refund": N_("↩️ Refunded to the buyer.")}


async def resolve(
    query: CallbackQuery,
    callback_data: AdminDeal,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    deals_seen: DealVersions,
    outbox: NoticeSender,
    bot: Bot,
) -> None:
    card = query.message
    outcome: Literal["release", "refund"] = (
        "release" if callback_data.outcome == "release" else "refund"
    )
    if not callback_data.ok:
        deal = await services.deals.get(snapshot, callback_data.code, as_admin=True)
        if deal.status != DealStatus.DISPUTED:
            headline = _("⚠️ This deal is not in dispute any more.")
            await edit(
                card,
                texts.deal_card(deal, None, currencies, headline),
                keyboards.admin_deal_keyboard(deal),
            )
            return
        question, label = resolve_question(deal, outcome, currencies)
        kb = Keyboard()
        kb.button(
            text=label,
            callback_data=AdminDeal(outcome=outcome, code=deal.code, v=deal.version, ok=True),
        )
        kb.button(text=_("« Back"), callback_data=AdminCard(code=deal.code))
        kb.adjust(1)
        await edit(card, texts.deal_card(deal, None, currencies, question), kb.as_markup())
        return
    try:
        resolved = await services.deals.resolve(snapshot, callback_data.code, outcome)
    except AlreadyDone as done:
        # This admin's own settlement, pressed again or delivered again after
        # its commit: the success it was.
        deals_seen.note(done.current.code, done.current.version)
        await show_result(
            bot,
            snapshot.telegram_id,
            texts.deal_card(done.current, None, currencies, _(RESOLVED[outcome])),
            keyboards.admin_deal_keyboard(done.current),
            edit=card,
        )
        return
    except WrongState as already:
        # Another admin was first: nothing moved this time.
        if isinstance(already.current, DealView):
            current = already.current
            await edit(
                card,
                texts.deal_card(
                    current, None, currencies, f"⚠️ {refusal_text(already, currencies)}"
                ),
                keyboards.admin_deal_keyboard(current),
            )
            return
        raise
    deal = resolved.value
    deals_seen.note(deal.code, deal.version)
    await show_and_notify(
        show_result(
            bot,
            snapshot.telegram_id,
            texts.deal_card(deal, None, currencies, _(RESOLVED[outcome])),
            keyboards.admin_deal_keyboard(deal),
            edit=card,
        ),
        outbox.send(resolved.notices, deal, actor=snapshot),
    )


def router() -> Router:
    router = admin_router("admin_disputes")
    router.callback_query.register(disputes, AdminPanel.filter(F.screen == "disputes"))
    router.callback_query.register(admin_card, AdminCard.filter())
    router.callback_query.register(send_evidence_again, AdminEvidence.filter())
    router.callback_query.register(resolve, AdminDeal.filter(F.outcome.in_(RESOLVED)))
    return router
