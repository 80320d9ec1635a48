"""Deal cards and "my deals"; the parties' actions on a card are in
deal_actions.py."""

from __future__ import annotations

from html import escape

from aiogram import Bot, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot.services import Services
from bot.services.money import Currencies
from bot.services.ratings import Rating
from bot.services.views import DealView
from bot.telegram import keyboards, texts
from bot.telegram.handlers.committed import show_result
from bot.telegram.i18n import N_, _
from bot.telegram.keyboards import DealCard, DealList, Invite, Keyboard, Nav, Signer
from bot.telegram.reputation import SnapshotReader, record_for
from bot.telegram.statuses import list_status
from cache.snapshots import UserSnapshot
from cache.store import SnapshotCache


def card_markup(
    deal: DealView,
    viewer: UserSnapshot,
    currencies: Currencies,
    signer: Signer,
    given: Rating | None = None,
) -> InlineKeyboardMarkup:
    amount = currencies[deal.currency].format(deal.amount)
    return keyboards.deal_keyboard(deal, viewer.id, viewer.telegram_id, signer, amount, given)


async def show_committed_card(
    bot: Bot,
    deal: DealView,
    viewer: UserSnapshot,
    currencies: Currencies,
    signer: Signer,
    headline: str,
    *,
    edit: Message | None,
    snapshots: SnapshotReader | None = None,
    given: Rating | None = None,
) -> None:
    """The card after a change this update committed (see bot/telegram/handlers/committed.py);
    with `snapshots`, the other party's record if the viewer is to accept or fund."""
    record = await record_for(deal, viewer.id, snapshots)
    text = texts.deal_card(deal, viewer.id, currencies, headline, record=record, given=given)
    markup = card_markup(deal, viewer, currencies, signer, given)
    await show_result(bot, viewer.telegram_id, text, markup, edit=edit)


async def show_card(
    target: Message,
    deal: DealView,
    viewer: UserSnapshot,
    currencies: Currencies,
    signer: Signer,
    headline: str = "",
    *,
    edit: bool,
    snapshots: SnapshotReader | None = None,
) -> None:
    record = await record_for(deal, viewer.id, snapshots)
    text = texts.deal_card(deal, viewer.id, currencies, headline, record=record)
    markup = card_markup(deal, viewer, currencies, signer)
    if not edit:
        await target.answer(text, reply_markup=markup)
        return
    try:
        await target.edit_text(text, reply_markup=markup)
    except TelegramBadRequest as exc:
        if "message is not modified" not in exc.message:
            raise


# -- cards --------------------------------------------------------------------------


async def open_card(
    query: CallbackQuery,
    callback_data: DealCard,
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


async def deal_command(
    message: Message,
    command: CommandObject,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    signer: Signer,
    snapshots: SnapshotCache,
) -> None:
    if not command.args:
        await message.answer(_("Send <code>/deal CODE</code>, e.g. <code>/deal 7KQ2MXPA</code>."))
        return
    deal = await services.deals.get(snapshot, command.args)
    await show_card(message, deal, snapshot, currencies, signer, edit=False, snapshots=snapshots)


# -- my deals -----------------------------------------------------------------------

INVITED = N_("invites you")  # a deal the viewer is invited to, in a list
LIST_TITLES = {
    "active": N_("Active deals"),
    "action": N_("Deals waiting for you"),
    "finished": N_("Finished deals"),
}


TABS = (("active", N_("Active")), ("action", N_("Waiting for me")), ("finished", N_("Done")))


def deals_list(
    page, kind: str, currencies: Currencies, viewer: UserSnapshot
) -> tuple[str, InlineKeyboardMarkup]:
    kb = Keyboard()
    lines = [f"📋 <b>{_(LIST_TITLES[kind])}</b>", ""]
    if not page.items:
        lines.append(_("Nothing here yet."))
    for item in page.items:
        money = currencies[item.currency].format(item.amount)
        status = list_status(item, viewer.id)  # "waiting for you to fund"
        who = (
            _(" · with {name}").format(name=escape(item.counterparty)) if item.counterparty else ""
        )
        if item.invitation is not None:  # not a party yet: its invitation opens it
            lines.append(f"<b>#{item.code}</b> · {money} · {_(INVITED)}{who}")
            data: CallbackData = Invite(action="show", code=item.invitation)
            kb.button(text=f"📨 #{item.code} · {money} · {_(INVITED)}", callback_data=data)
            continue
        lines.append(f"<b>#{item.code}</b> · {money} · {status}{who}")
        kb.button(text=f"#{item.code} · {money} · {status}", callback_data=DealCard(code=item.code))
    tabs = Keyboard()
    for other, title in TABS:
        tabs.button(
            text=("• " if other == kind else "") + _(title), callback_data=DealList(kind=other)
        )
    kb.adjust(1)
    kb.attach(tabs)
    nav = Keyboard()
    if page.next_before:
        nav.button(text=_("Older »"), callback_data=DealList(kind=kind, before=page.next_before))
    nav.button(text=_("« Menu"), callback_data=Nav(to="menu"))
    kb.attach(nav)
    return "\n".join(lines), kb.as_markup()


async def list_deals(
    query: CallbackQuery,
    callback_data: DealList,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
) -> None:
    kind = callback_data.kind if callback_data.kind in LIST_TITLES else "active"
    page = await services.reads.deals_page(
        snapshot,
        kind,  # type: ignore[arg-type]
        callback_data.before or None,
        username=snapshot.username,
    )
    text, markup = deals_list(page, kind, currencies, snapshot)
    if isinstance(query.message, Message):
        await query.message.edit_text(text, reply_markup=markup)


async def deals_command(
    message: Message, snapshot: UserSnapshot, services: Services, currencies: Currencies
) -> None:
    page = await services.reads.deals_page(snapshot, "active", username=snapshot.username)
    text, markup = deals_list(page, "active", currencies, snapshot)
    await message.answer(text, reply_markup=markup)


def router() -> Router:
    router = Router(name="deals")
    router.callback_query.register(open_card, DealCard.filter())
    router.message.register(deal_command, Command("deal", ignore_case=True))
    router.callback_query.register(list_deals, DealList.filter())
    router.message.register(deals_command, Command("deals", ignore_case=True))
    return router
