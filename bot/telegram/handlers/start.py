"""/start (with or without an invitation), the main menu, /help and /cancel."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.services import Services
from bot.services.errors import EscrowError
from bot.services.money import Currencies
from bot.services.wallets import DepositProvider
from bot.telegram import keyboards, texts
from bot.telegram.handlers.committed import pressed_message, show_and_notify
from bot.telegram.handlers.deals import show_committed_card
from bot.telegram.handlers.wizard import show_made, wizard_deal
from bot.telegram.handlers.wizard_screens import NewDeal
from bot.telegram.i18n import _
from bot.telegram.keyboards import Nav, Signer
from bot.telegram.notices import NoticeSender
from bot.telegram.refusals import refusal_text
from cache.snapshots import UserSnapshot


class Invite(CallbackData, prefix="iv"):
    """Take up (or turn down) the invitation behind a deep link."""

    action: str
    code: str


def invitation_keyboard(code: str, addressed: bool):
    kb = InlineKeyboardBuilder()
    kb.button(text=_("✅ Accept the deal"), callback_data=Invite(action="accept", code=code))
    if addressed:
        kb.button(text=_("Decline"), callback_data=Invite(action="decline", code=code))
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
            f"⚠️ {refusal_text(refused, currencies)}",
            reply_markup=keyboards.main_menu(snapshot.is_admin),
        )
        return
    headline = _("📨 You are invited to this deal. Accept it to take part.")
    await message.answer(
        texts.deal_card(preview.deal, None, currencies, headline),
        reply_markup=invitation_keyboard(command.args or "", preview.addressed),
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
        headline = _("✅ You joined the deal.")
    else:
        outcome = await services.deals.decline_invitation(
            snapshot, callback_data.code, snapshot.username
        )
        headline = _("You declined the deal.")
    deal = outcome.value
    edit = pressed_message(query)
    await show_and_notify(
        show_committed_card(bot, deal, snapshot, currencies, signer, headline, edit=edit),
        outbox.send(outcome.notices, deal, actor=snapshot),
    )


async def start(
    message: Message,
    snapshot: UserSnapshot,
    currencies: Currencies,
    state: FSMContext,
    raw_state: str | None,
    deposits: DepositProvider,
) -> None:
    if raw_state is not None:  # leaving a wizard; with no state, no Redis write
        await state.clear()
    await message.answer(
        texts.main_menu(snapshot, currencies, deposits.play_money),
        reply_markup=keyboards.main_menu(snapshot.is_admin),
    )


async def menu(
    query: CallbackQuery,
    snapshot: UserSnapshot,
    currencies: Currencies,
    deposits: DepositProvider,
) -> None:
    # A press reads no FSM state (see ButtonsSkipStateMiddleware), so the menu
    # leaves any wizard state alone; /start, /menu and /cancel clear it.
    if query.message is not None:
        await query.message.edit_text(
            texts.main_menu(snapshot, currencies, deposits.play_money),
            reply_markup=keyboards.main_menu(snapshot.is_admin),
        )


async def help_command(message: Message) -> None:
    await message.answer(_(texts.HELP), reply_markup=keyboards.back_to_menu())


async def help_button(query: CallbackQuery) -> None:
    if query.message is not None:
        await query.message.edit_text(_(texts.HELP), reply_markup=keyboards.back_to_menu())


async def cancel(
    message: Message,
    state: FSMContext,
    raw_state: str | None,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    signer: Signer,
    bot: Bot,
) -> None:
    if raw_state == NewDeal.confirm.state:
        # Create may have been pressed (an unknown outcome): say what it made.
        made = await wizard_deal(state, raw_state, snapshot, services)
        if made is not None:
            await show_made(state, raw_state, made, snapshot, currencies, signer, bot)
            return
    await state.clear()
    await message.answer(
        _(texts.CANCELLED if raw_state is not None else texts.NOTHING_TO_CANCEL),
        reply_markup=keyboards.back_to_menu(),
    )


def router() -> Router:
    router = Router(name="start")
    router.message.register(start_with_invitation, CommandStart(deep_link=True, ignore_case=True))
    router.callback_query.register(invitation_answer, Invite.filter())
    router.message.register(start, Command("menu", ignore_case=True))
    router.message.register(start, CommandStart(ignore_case=True))
    router.callback_query.register(menu, Nav.filter(F.to == "menu"))
    router.message.register(help_command, Command("help", ignore_case=True))
    router.callback_query.register(help_button, Nav.filter(F.to == "help"))
    router.message.register(cancel, Command("cancel", ignore_case=True))
    return router
