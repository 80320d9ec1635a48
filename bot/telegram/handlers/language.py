"""🌐 Language: the user's own language, chosen in the menu and kept on them
(the snapshot carries it, so every later update reads it for free)."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n

from bot.services import Services
from bot.services.money import Currencies
from bot.services.wallets import DepositProvider
from bot.telegram import keyboards, texts
from bot.telegram.i18n import LANGUAGES, _, language_name, locale_of
from bot.telegram.keyboards import Keyboard, Nav
from cache.snapshots import UserSnapshot


class ChooseLanguage(CallbackData, prefix="lang"):
    """A language from the language screen."""

    code: str


def language_screen(current: str) -> tuple[str, InlineKeyboardMarkup]:
    text = _("🌐 <b>Language</b>\n\nWhich language should I speak to you?")
    kb = Keyboard()
    for code in LANGUAGES:
        mark = "✓ " if code == current else ""
        kb.button(text=mark + language_name(code), callback_data=ChooseLanguage(code=code))
    kb.adjust(2)
    kb.row(keyboards.menu_button())
    return text, kb.as_markup()


async def language_button(query: CallbackQuery, snapshot: UserSnapshot) -> None:
    if isinstance(query.message, Message):
        text, markup = language_screen(locale_of(snapshot))
        await query.message.edit_text(text, reply_markup=markup)


async def language_command(message: Message, snapshot: UserSnapshot) -> None:
    text, markup = language_screen(locale_of(snapshot))
    await message.answer(text, reply_markup=markup)


async def choose(
    query: CallbackQuery,
    callback_data: ChooseLanguage,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    deposits: DepositProvider,
    i18n: I18n,
) -> None:
    code = callback_data.code
    if code not in LANGUAGES:  # an old or forged button: the screen again
        await language_button(query, snapshot)
        return
    await services.users.set_locale(snapshot, code)
    # The snapshot in hand is from before the choice: the menu is said in the
    # new language from here on.
    with i18n.use_locale(code):
        headline = _("✅ I'll speak English to you from now on.")
        menu = texts.main_menu(snapshot, currencies.in_locale(code), deposits.play_money)
        markup = keyboards.main_menu(snapshot.is_admin)
    if isinstance(query.message, Message):
        await query.message.edit_text(f"{headline}\n\n{menu}", reply_markup=markup)


def router() -> Router:
    router = Router(name="language")
    router.callback_query.register(language_button, Nav.filter(F.to == "language"))
    router.message.register(language_command, Command("language", ignore_case=True))
    router.callback_query.register(choose, ChooseLanguage.filter())
    return router
