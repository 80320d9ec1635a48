"""A party's actions on a deal card, and the reason of a dispute.

A deal action goes through three handlers, tried in order: the real one (a
signed button at the newest known version), one for an outdated card, one
for a forged button. The two fallbacks answer with an alert through the
callback-answer flags, before any I/O, and change nothing.
"""

from __future__ import annotations

import logging
from html import escape

from aiogram import Bot, Router
from aiogram.filters import Filter, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot.services import Services
from bot.services.errors import AlreadyDone, WrongState
from bot.services.money import Currencies
from bot.services.rules import DESTINATIONS, Action
from bot.services.views import DealView
from bot.telegram import keyboards, texts
from bot.telegram.filters import NotACommand
from bot.telegram.freshness import DealVersions
from bot.telegram.fsm import advance
from bot.telegram.handlers.committed import close_form, show_and_notify
from bot.telegram.handlers.deals import show_card, show_committed_card
from bot.telegram.i18n import N_, _
from bot.telegram.keyboards import CONFIRMED, DealAct, Signer
from bot.telegram.notices import NoticeSender
from bot.telegram.refusals import refusal_text
from cache.snapshots import UserSnapshot
from cache.store import SnapshotCache
from db.models import DealStatus

log = logging.getLogger(__name__)


class DisputeForm(StatesGroup):
    reason = State()


# What the actor reads after each action (the other party's text: bot/telegram/notices.py).
HEADLINES = {
    Action.ACCEPT: N_("✅ You accepted the deal."),
    Action.DECLINE: N_("You declined the deal."),
    Action.FUND: N_("🔒 Funded: the money is held in escrow."),
    Action.DELIVER: N_("📦 Marked as delivered."),
    Action.RELEASE: N_("✅ Payment released to the seller."),
    Action.DISPUTE: N_("⚠️ Dispute opened. An admin will look at it."),
    Action.CANCEL: N_("The deal is cancelled."),
    Action.REFUND: N_("↩️ Cancelled: your money is back in your wallet."),
}


def headline(action: Action, deal: DealView) -> str:
    """What the actor reads above the card after their action."""
    if action is Action.CANCEL and deal.status == DealStatus.REFUNDED:
        return _("↩️ Cancelled: the buyer is refunded.")
    return _(HEADLINES[action])


class Signed(Filter):
    """The button was made by this bot for this very viewer."""

    async def __call__(self, query: CallbackQuery, callback_data: DealAct, signer: Signer) -> bool:
        return signer.valid(query.from_user.id, callback_data)


class Current(Filter):
    """No newer version of the deal is known than the card showed, or the one
    move since is the presser's own and is where this press asked to take the
    deal (a double tap, a press delivered again after its commit): that press
    goes on, to be told the success it was."""

    async def __call__(
        self,
        query: CallbackQuery,
        callback_data: DealAct,
        deals_seen: DealVersions,
    ) -> bool:
        code, version = callback_data.code, callback_data.v
        if not deals_seen.outdated(code, version):
            return True
        moved_to = deals_seen.moved_on_by(code, version, query.from_user.id)
        if moved_to is None:
            return False
        action = Action(callback_data.action)
        return moved_to in DESTINATIONS[action]


# -- actions ------------------------------------------------------------------------


async def act(
    query: CallbackQuery,
    callback_data: DealAct,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    signer: Signer,
    deals_seen: DealVersions,
    state: FSMContext,
    outbox: NoticeSender,
    bot: Bot,
    snapshots: SnapshotCache,
) -> None:
    action = Action(callback_data.action)
    card = query.message if isinstance(query.message, Message) else None
    if action is Action.DISPUTE:
        await advance(state, DisputeForm.reason, code=callback_data.code)
        if card is not None:
            await card.answer(
                _(
                    "⚠️ What went wrong? Describe it in one message; the admins will read it.\n"
                    "Send /cancel to go back."
                )
            )
        return
    if action in CONFIRMED and not callback_data.ok:
        deal = await services.deals.get(snapshot, callback_data.code)
        if card is not None:
            await ask_to_confirm(card, deal, action, snapshot, currencies, signer)
        return
    method = getattr(services.deals, action.value)
    # A confirmation acts only on the deal it asked about: signed at version v,
    # it is refused if the deal has moved on since, even when this replica has
    # not heard of the move (the Current filter only knows what it heard).
    guard = {"expected_version": callback_data.v} if action in CONFIRMED else {}
    try:
        outcome = await method(snapshot, callback_data.code, **guard)
    except AlreadyDone as done:
        # This user's own move, made before (a double tap, or this press
        # delivered again after its commit): the success it was, told again.
        deals_seen.note(
            done.current.code, done.current.version, done.current.status, snapshot.telegram_id
        )
        await show_committed_card(
            bot,
            done.current,
            snapshot,
            currencies,
            signer,
            headline(action, done.current),
            edit=card,
            snapshots=snapshots,
        )
        return
    except WrongState as refused:
        if card is not None and isinstance(refused.current, DealView):
            deals_seen.note(refused.current.code, refused.current.version)
            await show_card(
                card,
                refused.current,
                snapshot,
                currencies,
                signer,
                f"⚠️ {refusal_text(refused, currencies)}",
                edit=True,
                snapshots=snapshots,
            )
            return
        raise
    # Committed: from here on nothing may claim that nothing changed.
    deal = outcome.value
    deals_seen.note(deal.code, deal.version, deal.status, snapshot.telegram_id)
    await show_and_notify(
        show_committed_card(
            bot,
            deal,
            snapshot,
            currencies,
            signer,
            headline(action, deal),
            edit=card,
            snapshots=snapshots,
        ),
        outbox.send(outcome.notices, deal, actor=snapshot),
    )


async def ask_to_confirm(
    card: Message,
    deal: DealView,
    action: Action,
    viewer: UserSnapshot,
    currencies: Currencies,
    signer: Signer,
) -> None:
    money = currencies[deal.currency]
    if action is Action.RELEASE:
        question = _(
            "Release the payment? {amount} goes to {seller} and this can't be undone."
        ).format(
            amount=money.format(deal.payout),
            seller=escape(deal.seller_name or _("the seller")),
        )
        label = _("✅ Yes, release the payment")
    elif action is Action.REFUND:
        question = _(
            "Cancel the deal and get {amount} back? {seller} did not mark it as delivered in time."
        ).format(
            amount=money.format(deal.amount), seller=escape(deal.seller_name or _("The seller"))
        )
        label = _("↩️ Yes, cancel and refund me")
    elif deal.status in (DealStatus.FUNDED, DealStatus.DELIVERED):
        question = _("Cancel the deal and refund {amount} to the buyer?").format(
            amount=money.format(deal.amount)
        )
        label = _("↩️ Yes, cancel and refund")
    else:
        question = _("Cancel this deal?")
        label = _("Yes, cancel the deal")
    await card.edit_text(
        texts.deal_card(deal, viewer.id, currencies, f"❓ {question}"),
        reply_markup=keyboards.confirm_keyboard(deal, action, viewer.telegram_id, signer, label),
    )


async def outdated(
    query: CallbackQuery,
    callback_data: DealAct,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    signer: Signer,
    snapshots: SnapshotCache,
) -> None:
    deal = await services.deals.get(snapshot, callback_data.code)
    if isinstance(query.message, Message):
        await show_card(
            query.message, deal, snapshot, currencies, signer, edit=True, snapshots=snapshots
        )


async def forged(query: CallbackQuery, callback_data: DealAct) -> None:
    log.warning("refused a forged deal button from %s: %s", query.from_user.id, query.data)


# -- disputes -----------------------------------------------------------------------


async def dispute_reason(
    message: Message,
    state: FSMContext,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    signer: Signer,
    deals_seen: DealVersions,
    outbox: NoticeSender,
    bot: Bot,
) -> None:
    if not message.text:
        await message.answer(_("Please describe the problem in a text message, or /cancel."))
        return
    code = (await state.get_data())["code"]
    # A reason that is too long raises InvalidInput: the user is told and the
    # state stays, so the next message is tried again.
    outcome = await services.deals.dispute(snapshot, code, message.text)
    deal = outcome.value
    headline = _(HEADLINES[Action.DISPUTE])
    # A form Redis could not forget is refused by the deal: it is in dispute now.
    reply = texts.deal_card(deal, snapshot.id, currencies, headline)
    await close_form(state, finished_by=message, reply=reply)
    deals_seen.note(deal.code, deal.version, deal.status, snapshot.telegram_id)
    await show_committed_card(bot, deal, snapshot, currencies, signer, headline, edit=None)
    # the other party and the admins, who read the reason
    await outbox.send(outcome.notices, deal, actor=snapshot)


def router() -> Router:
    router = Router(name="deal_actions")
    # An action, then an outdated card, then a forged button: tried in this order.
    router.callback_query.register(act, DealAct.filter(), Signed(), Current())
    router.callback_query.register(
        outdated,
        DealAct.filter(),
        Signed(),
        flags={"callback_answer": {"text": texts.OUTDATED_CARD, "show_alert": True}},
    )
    router.callback_query.register(
        forged,
        DealAct.filter(),
        flags={"callback_answer": {"text": texts.FORGED_BUTTON, "show_alert": True}},
    )
    router.message.register(dispute_reason, StateFilter(DisputeForm.reason), NotACommand())
    return router
