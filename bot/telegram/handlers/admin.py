"""The admin panel: its home and stats, and what its screens share (callback
data, the guard); open disputes are in admin_disputes.py (split settlements in
admin_split.py), withdrawals in admin_withdrawals.py, deposits by hand in
admin_deposits.py, blocking users in admin_users.py, the alert for everyone
else in fallback.py.

Who may use the panel is decided by a filter with no I/O (the configured
admin ids), set once on each admin router, so a refused press gets its alert
in the pre-answer; a press also needs the snapshot's admin flag (StoredAdmin),
and every service that changes something checks it once more inside its
transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, F, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message, TelegramObject

from bot.services import Services
from bot.services.money import Currencies
from bot.services.reads import Stats
from bot.telegram import keyboards, texts
from bot.telegram.filters import ConfiguredAdmin
from bot.telegram.handlers.wallet import edit
from bot.telegram.i18n import _, ngettext, per_locale
from bot.telegram.keyboards import AdminCard as AdminCard
from bot.telegram.keyboards import AdminWithdrawal as AdminWithdrawal  # re-exported
from bot.telegram.keyboards import Keyboard, Nav  # re-exported: its old home
from cache.snapshots import UserSnapshot
from db.models import DealStatus

# Disputes and withdrawals are listed oldest first, this many at a time.
QUEUE_PAGE = 10


class AdminPanel(CallbackData, prefix="ap"):
    """An admin screen: home, disputes, withdrawals, credit, users, stats."""

    screen: str


class AdminSplit(CallbackData, prefix="as"):
    """A split of a disputed deal, confirmed: `part` (minor units) to the seller."""

    code: str
    v: int
    part: int


class AdminUser(CallbackData, prefix="au"):
    """A user as an admin sees them (show), to block (asks why) or unblock."""

    action: str
    telegram_id: int


class AdminCredit(CallbackData, prefix="acr"):
    """A deposit by hand: the currency picked (amount 0), then its confirmation."""

    telegram_id: int
    currency: str
    amount: int = 0


class AdminForm(StatesGroup):
    reject_note = State()
    credit_user = State()
    credit_amount = State()
    split_part = State()
    user_lookup = State()
    block_reason = State()


class StoredAdmin(BaseMiddleware):
    """Inner middleware of the admin routers' presses (their filter has let a
    configured admin through): the stored account must say admin too, or the
    user is told; and the press needs a message to show its screen in, so
    the handlers take `query.message` for the message pressed."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        snapshot: UserSnapshot = data["snapshot"]
        pressed = event.message if isinstance(event, CallbackQuery) else None
        if not snapshot.is_admin:
            if isinstance(pressed, Message):
                await pressed.answer(_(texts.NOT_ADMIN))
            return None
        if not isinstance(pressed, Message):
            return None
        return await handler(event, data)


def admin_router(name: str) -> Router:
    """A router of the admin panel. Only configured admins get past its filter,
    set once for all its handlers; everyone else's update goes on to the
    routers after it (fallback.py answers them)."""
    router = Router(name=name)
    router.message.filter(ConfiguredAdmin())
    router.callback_query.filter(ConfiguredAdmin())
    router.callback_query.middleware(StoredAdmin())
    return router


@per_locale
def home_keyboard() -> InlineKeyboardMarkup:
    kb = Keyboard()
    kb.button(text=_("⚠️ Open disputes"), callback_data=AdminPanel(screen="disputes"))
    kb.button(text=_("🏦 Pending withdrawals"), callback_data=AdminPanel(screen="withdrawals"))
    kb.button(text=_("💰 Credit a deposit"), callback_data=AdminPanel(screen="credit"))
    kb.button(text=_("👤 Users"), callback_data=AdminPanel(screen="users"))
    kb.button(text=_("📊 Stats"), callback_data=AdminPanel(screen="stats"))
    kb.adjust(1)
    kb.row(keyboards.menu_button())
    return kb.as_markup()


@per_locale
def screen_keyboard(screen: str) -> InlineKeyboardMarkup:
    kb = Keyboard()
    kb.button(text=_("⟳ Refresh"), callback_data=AdminPanel(screen=screen))
    kb.button(text=_("« Admin"), callback_data=AdminPanel(screen="home"))
    return kb.as_markup()


@per_locale
def cancel_keyboard() -> InlineKeyboardMarkup:
    kb = Keyboard()
    kb.button(text=_("✖️ Cancel"), callback_data=AdminPanel(screen="home"))
    return kb.as_markup()


def home_text(headline: str = "") -> str:
    lines = [headline, ""] if headline else []
    title, question = _("🛡 <b>Admin panel</b>"), _("What would you like to look at?")
    return "\n".join([*lines, title, "", question])


def queue_size(items: list) -> str:
    if len(items) >= QUEUE_PAGE:
        return _("oldest {count} shown").format(count=QUEUE_PAGE)
    return str(len(items))


# -- home ---------------------------------------------------------------------------


async def admin_command(
    message: Message, snapshot: UserSnapshot, state: FSMContext, raw_state: str | None
) -> None:
    if not snapshot.is_admin:
        await message.answer(_(texts.NOT_ADMIN), reply_markup=keyboards.back_to_menu())
        return
    if raw_state is not None:
        await state.clear()
    await message.answer(home_text(), reply_markup=home_keyboard())


async def admin_home(query: CallbackQuery, state: FSMContext) -> None:
    # Leaving any admin form here, so a later message is not taken for its answer.
    await state.clear()
    await edit(query.message, home_text(), home_keyboard())


# -- stats --------------------------------------------------------------------------


def stats_text(stats: Stats, currencies: Currencies) -> str:
    lines = [_("📊 <b>Stats</b>"), "", _("Users: {count}").format(count=stats.users)]
    total = sum(stats.deals_by_status.values())
    lines.append(_("Deals: {count}").format(count=total))
    for status in DealStatus:
        if count := stats.deals_by_status.get(status.value):
            lines.append(f"    {_(texts.SHORT_STATUS[status])}: {count}")
    lines += ["", _("Released:")]
    for volume in stats.released:
        money = currencies[volume.currency]
        deals = ngettext("{count} deal", "{count} deals", volume.deals).format(count=volume.deals)
        fees = _("fees {amount}").format(amount=money.format(volume.fees))
        lines.append(f"    {money.code}: {deals} · {money.format(volume.volume)} · {fees}")
    if not stats.released:
        lines.append("    " + _("nothing yet"))
    lines += ["", _("Pending withdrawals: {count}").format(count=stats.pending_withdrawals)]
    return "\n".join(lines)


async def stats(
    query: CallbackQuery, snapshot: UserSnapshot, services: Services, currencies: Currencies
) -> None:
    text = stats_text(await services.reads.stats(snapshot), currencies)
    await edit(query.message, text, screen_keyboard("stats"))


def router() -> Router:
    router = admin_router("admin")
    router.message.register(admin_command, Command("admin", ignore_case=True))
    router.callback_query.register(admin_home, AdminPanel.filter(F.screen == "home"))
    router.callback_query.register(admin_home, Nav.filter(F.to == "admin"))
    router.callback_query.register(stats, AdminPanel.filter(F.screen == "stats"))
    return router
