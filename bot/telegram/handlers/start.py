"""/start (with or without an invitation), the main menu, /help and /cancel,
and an invitation shown from the viewer's list of deals."""

from __future__ import annotations

from html import escape

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.services import Services
from bot.services.errors import EscrowError
from bot.services.money import Currencies
from bot.services.views import UserView
from bot.services.wallets import DepositProvider
from bot.telegram import keyboards, texts
from bot.telegram.handlers.committed import pressed_message, show_and_notify
from bot.telegram.handlers.deals import show_committed_card
from bot.telegram.handlers.wizard import show_made, wizard_deal
from bot.telegram.handlers.wizard_screens import NewDeal
from bot.telegram.i18n import N_, _, ngettext
from bot.telegram.keyboards import DealList, Invite, Keyboard, Nav, Signer
from bot.telegram.notices import NoticeSender
from bot.telegram.refusals import refusal_text
from bot.telegram.reputation import creator_telegram_id, read_record
from cache.snapshots import UserSnapshot
from cache.store import SnapshotCache

# On the update that registered the user (first contact, or a profile change
# such as a new @username): invitations that now wait for them.
WAITING = N_("📨 Waiting for you")
INVITATION = N_("📨 You are invited to this deal. Accept it to take part.")


def invitation_keyboard(code: str, addressed: bool):
    kb = Keyboard()
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
    snapshots: SnapshotCache,
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
    # whom the invitee would deal with: its creator's record, through the cache
    creator = await read_record(snapshots, creator_telegram_id(preview.deal))
    await message.answer(
        texts.deal_card(preview.deal, None, currencies, _(INVITATION), record=creator),
        reply_markup=invitation_keyboard(command.args or "", preview.addressed),
    )


async def show_invitation(
    query: CallbackQuery,
    callback_data: Invite,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    snapshots: SnapshotCache,
) -> None:
    """An invitation addressed to the viewer, from their list of deals (found
    without the link: bot/services/reads.py), shown as its link shows it."""
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
    creator = await read_record(snapshots, creator_telegram_id(preview.deal))
    await message.edit_text(
        texts.deal_card(preview.deal, None, currencies, _(INVITATION), record=creator),
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
    snapshots: SnapshotCache,
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
        show_committed_card(
            bot, deal, snapshot, currencies, signer, headline, edit=edit, snapshots=snapshots
        ),
        outbox.send(outcome.notices, deal, actor=snapshot),
    )


def menu_screen(
    user: UserSnapshot,
    currencies: Currencies,
    play_money: bool,
    registered: UserView | None,
) -> tuple[str, InlineKeyboardMarkup]:
    """The main menu. Read from the snapshot alone (no SQL on a cache hit),
    except on the update that registered the user: registration counted the
    invitations waiting for them, and the menu says so with a way to them."""
    text = texts.main_menu(user, currencies, play_money)
    markup = keyboards.main_menu(user.is_admin)
    count = registered.invited if registered is not None else 0
    if not count:
        return text, markup
    waiting = ngettext(
        "📨 A deal is waiting for you to accept it.",
        "📨 {count} deals are waiting for you to accept them.",
        count,
    ).format(count=count)
    button = InlineKeyboardButton(text=_(WAITING), callback_data=DealList(kind="action").pack())
    rows = [[button], *markup.inline_keyboard]
    return f"{waiting}\n\n{text}", InlineKeyboardMarkup(inline_keyboard=rows)


async def start(
    message: Message,
    snapshot: UserSnapshot,
    currencies: Currencies,
    state: FSMContext,
    raw_state: str | None,
    deposits: DepositProvider,
    registered: UserView | None = None,
) -> None:
    if raw_state is not None:  # leaving a wizard; with no state, no Redis write
        await state.clear()
    text, markup = menu_screen(snapshot, currencies, deposits.play_money, registered)
    await message.answer(text, reply_markup=markup)


async def menu(
    query: CallbackQuery,
    snapshot: UserSnapshot,
    currencies: Currencies,
    deposits: DepositProvider,
    registered: UserView | None = None,
) -> None:
    # A press reads no FSM state (see ButtonsSkipStateMiddleware), so the menu
    # leaves any wizard state alone; /start, /menu and /cancel clear it.
    if query.message is not None:
        text, markup = menu_screen(snapshot, currencies, deposits.play_money, registered)
        await query.message.edit_text(text, reply_markup=markup)


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
    router.callback_query.register(show_invitation, Invite.filter(F.action == "show"))
    router.callback_query.register(
        invitation_answer, Invite.filter(F.action.in_(("accept", "decline")))
    )
    router.message.register(start, Command("menu", ignore_case=True))
    router.message.register(start, CommandStart(ignore_case=True))
    router.callback_query.register(menu, Nav.filter(F.to == "menu"))
    router.message.register(help_command, Command("help", ignore_case=True))
    router.callback_query.register(help_button, Nav.filter(F.to == "help"))
    router.message.register(cancel, Command("cancel", ignore_case=True))
    return router
