"""Invitations as their invitee meets them: the deal behind a link
(`/start <code>`), the same deal from "my deals" (an invitation addressed to
you, found without the link: bot/services/reads.py), and the answer: accept
(join the deal and accept it) or decline (one addressed to you)."""

from __future__ import annotations

from html import escape

from aiogram import Bot, F, Router
from aiogram.filters import CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.services import Services
from bot.services.errors import EscrowError
from bot.services.money import Currencies
from bot.telegram import keyboards, texts
from bot.telegram.handlers.committed import pressed_message, show_and_notify
from bot.telegram.handlers.deals import show_committed_card
from bot.telegram.keyboards import Invite, Signer
from bot.telegram.notices import NoticeSender
from bot.telegram.refusals import refusal_text
from cache.snapshots import UserSnapshot

INVITED = "📨 You are invited to this deal. Accept it to take part."
ACCEPT, DECLINE = "✅ Accept the deal", "Decline"
JOINED, DECLINED = "✅ You joined the deal.", "You declined the deal."


def invitation_keyboard(code: str, addressed: bool) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text=ACCEPT, callback_data=Invite(action="accept", code=code))
    if addressed:
        kb.button(text=DECLINE, callback_data=Invite(action="decline", code=code))
    kb.row(keyboards.menu_button())
    return kb.as_markup()


async def start_with_invitation(
    message: Message,
    command: CommandObject,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    state: FSMContext,
    raw_state: str | None,
) -> None:
    if raw_state is not None:
        await state.clear()
    try:
        preview = await services.deals.preview_invitation(snapshot, command.args or "")
    except EscrowError as refused:
        await message.answer(
            f"⚠️ {escape(refusal_text(refused, currencies))}",
            reply_markup=keyboards.main_menu(snapshot.is_admin),
        )
        return
    await message.answer(
        texts.deal_card(preview.deal, None, currencies, INVITED),
        reply_markup=invitation_keyboard(command.args or "", preview.addressed),
    )


async def show_invitation(
    query: CallbackQuery,
    callback_data: Invite,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
) -> None:
    """An invitation addressed to the viewer, from their list: as its link shows it."""
    message = pressed_message(query)
    if message is None:
        return
    try:
        preview = await services.deals.preview_invitation(snapshot, callback_data.code)
    except EscrowError as refused:
        await message.edit_text(
            f"⚠️ {escape(refusal_text(refused, currencies))}",
            reply_markup=keyboards.back_to_menu(),
        )
        return
    await message.edit_text(
        texts.deal_card(preview.deal, None, currencies, INVITED),
        reply_markup=invitation_keyboard(callback_data.code, preview.addressed),
    )


async def invitation_answer(
    query: CallbackQuery,
    callback_data: Invite,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    signer: Signer,
    outbox: NoticeSender,
    bot: Bot,
) -> None:
    if callback_data.action == "accept":
        outcome = await services.deals.accept_invitation(
            snapshot, callback_data.code, snapshot.username
        )
        headline = JOINED
    else:
        outcome = await services.deals.decline_invitation(
            snapshot, callback_data.code, snapshot.username
        )
        headline = DECLINED
    deal = outcome.value
    edit = pressed_message(query)
    await show_and_notify(
        show_committed_card(bot, deal, snapshot, currencies, signer, headline, edit=edit),
        outbox.send(outcome.notices, deal, actor=snapshot),
    )


def router() -> Router:
    router = Router(name="invitations")
    router.message.register(start_with_invitation, CommandStart(deep_link=True, ignore_case=True))
    router.callback_query.register(show_invitation, Invite.filter(F.action == "show"))
    router.callback_query.register(
        invitation_answer, Invite.filter(F.action.in_(("accept", "decline")))
    )
    return router
