"""/start and the main menu, /help and /cancel (/start with an invitation:
invitations.py)."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.services import Services
from bot.services.money import Currencies
from bot.services.views import UserView
from bot.services.wallets import DepositProvider
from bot.telegram import keyboards, texts
from bot.telegram.handlers.wizard_create import show_made, wizard_deal
from bot.telegram.handlers.wizard_screens import NewDeal
from bot.telegram.keyboards import DealList, Nav, Signer
from cache.snapshots import UserSnapshot

# On the update that registered the user (first contact, or a profile change
# such as a new @username): invitations that now wait for them.
INVITED = {
    1: "📨 A deal is waiting for you to accept it.",
    2: "📨 {count} deals are waiting for you to accept them.",
}
WAITING = "📨 Waiting for you"


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
    waiting = INVITED[min(count, 2)].format(count=count)
    button = InlineKeyboardButton(text=WAITING, callback_data=DealList(kind="action").pack())
    return f"{waiting}\n\n{text}", InlineKeyboardMarkup(
        inline_keyboard=[[button], *markup.inline_keyboard]
    )


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
    await message.answer(texts.HELP, reply_markup=keyboards.back_to_menu())


async def help_button(query: CallbackQuery) -> None:
    if query.message is not None:
        await query.message.edit_text(texts.HELP, reply_markup=keyboards.back_to_menu())


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
        texts.CANCELLED if raw_state is not None else texts.NOTHING_TO_CANCEL,
        reply_markup=keyboards.back_to_menu(),
    )


def router() -> Router:
    router = Router(name="start")
    router.message.register(start, Command("menu", ignore_case=True))
    router.message.register(start, CommandStart(ignore_case=True))
    router.callback_query.register(menu, Nav.filter(F.to == "menu"))
    router.message.register(help_command, Command("help", ignore_case=True))
    router.callback_query.register(help_button, Nav.filter(F.to == "help"))
    router.message.register(cancel, Command("cancel", ignore_case=True))
    return router
