"""The admin panel: its home, open disputes and stats, and what its screens
share (callback data, the guard); withdrawals and deposits by hand are in
admin_wallets.py, the alert for everyone else in fallback.py.

Who may press an admin button is decided by a filter with no I/O (the
configured admin ids), so a refused press gets its alert in the pre-answer;
the handlers also check the snapshot's admin flag, and every service that
changes something checks it once more inside its transaction.
"""

from __future__ import annotations

from functools import cache
from html import escape
from typing import Literal

from aiogram import Bot, F, Router
from aiogram.filters import Command, Filter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.runtime.notifier import Outbox
from bot.services import Services
from bot.services.errors import WrongState
from bot.services.money import Currencies
from bot.services.reads import Stats
from bot.services.settings import EscrowSettings
from bot.services.views import DealView
from bot.telegram import keyboards, texts
from bot.telegram.freshness import DealVersions
from bot.telegram.handlers.committed import show_result
from bot.telegram.handlers.wallet import edit
from bot.telegram.keyboards import AdminDeal, Nav
from bot.telegram.refusals import refusal_text
from cache.snapshots import UserSnapshot
from db.models import DealStatus

router = Router(name="admin")

# Disputes and withdrawals are listed oldest first, this many at a time.
QUEUE_PAGE = 10


class AdminPanel(CallbackData, prefix="ap"):
    """An admin screen: home, disputes, withdrawals, credit, stats."""

    screen: str


class AdminCard(CallbackData, prefix="ac"):
    """A disputed deal's card, as an admin sees it."""

    code: str


class AdminWithdrawal(CallbackData, prefix="aw"):
    """Approve (after a confirmation) or reject a pending withdrawal."""

    action: str
    id: int
    ok: bool = False


class AdminCredit(CallbackData, prefix="acr"):
    """A deposit by hand: the currency picked (amount 0), then its confirmation."""

    telegram_id: int
    currency: str
    amount: int = 0


class AdminForm(StatesGroup):
    reject_note = State()
    credit_user = State()
    credit_amount = State()


class ConfiguredAdmin(Filter):
    """The presser is a configured admin: no I/O, so a refusal is an alert."""

    async def __call__(self, query: CallbackQuery, settings: EscrowSettings) -> bool:
        return query.from_user.id in settings.admins


async def refused(query: CallbackQuery, snapshot: UserSnapshot) -> bool:
    """True (and the user is told) if the stored account is not an admin."""
    if snapshot.is_admin:
        return False
    if isinstance(query.message, Message):
        await query.message.answer(texts.NOT_ADMIN)
    return True


@cache
def home_keyboard() -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text="⚠️ Open disputes", callback_data=AdminPanel(screen="disputes"))
    kb.button(text="🏦 Pending withdrawals", callback_data=AdminPanel(screen="withdrawals"))
    kb.button(text="💰 Credit a deposit", callback_data=AdminPanel(screen="credit"))
    kb.button(text="📊 Stats", callback_data=AdminPanel(screen="stats"))
    kb.adjust(1)
    kb.row(keyboards.menu_button())
    return kb.as_markup()


@cache
def screen_keyboard(screen: str) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text="⟳ Refresh", callback_data=AdminPanel(screen=screen))
    kb.button(text="« Admin", callback_data=AdminPanel(screen="home"))
    return kb.as_markup()


@cache
def cancel_keyboard() -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text="✖️ Cancel", callback_data=AdminPanel(screen="home"))
    return kb.as_markup()


def home_text(headline: str = "") -> str:
    lines = [headline, ""] if headline else []
    return "\n".join([*lines, "🛡 <b>Admin panel</b>", "", "What would you like to look at?"])


def queue_size(items: list) -> str:
    return f"oldest {QUEUE_PAGE} shown" if len(items) >= QUEUE_PAGE else str(len(items))


# -- home ---------------------------------------------------------------------------


@router.message(Command("admin"))
async def admin_command(
    message: Message, snapshot: UserSnapshot, state: FSMContext, raw_state: str | None
) -> None:
    if not snapshot.is_admin:
        await message.answer(texts.NOT_ADMIN, reply_markup=keyboards.back_to_menu())
        return
    if raw_state is not None:
        await state.clear()
    await message.answer(home_text(), reply_markup=home_keyboard())


@router.callback_query(Nav.filter(F.to == "admin"), ConfiguredAdmin())
@router.callback_query(AdminPanel.filter(F.screen == "home"), ConfiguredAdmin())
async def admin_home(query: CallbackQuery, snapshot: UserSnapshot, state: FSMContext) -> None:
    if await refused(query, snapshot) or not isinstance(query.message, Message):
        return
    # Leaving any admin form here, so a later message is not taken for its answer.
    await state.clear()
    await edit(query.message, home_text(), home_keyboard())


# -- disputes -----------------------------------------------------------------------


@router.callback_query(AdminPanel.filter(F.screen == "disputes"), ConfiguredAdmin())
async def disputes(
    query: CallbackQuery, snapshot: UserSnapshot, services: Services, currencies: Currencies
) -> None:
    if await refused(query, snapshot) or not isinstance(query.message, Message):
        return
    items = await services.reads.open_disputes(snapshot, QUEUE_PAGE)
    lines = [f"⚠️ <b>Open disputes</b> ({queue_size(items)})", ""]
    kb = InlineKeyboardBuilder()
    for item in items:
        money = currencies[item.currency].format(item.amount)
        lines.append(f"<b>#{item.code}</b> · {money} · <i>{escape(item.description[:60])}</i>")
        kb.button(text=f"#{item.code} · {money}", callback_data=AdminCard(code=item.code))
    if not items:
        lines.append("No open disputes.")
    kb.adjust(1)
    kb.attach(InlineKeyboardBuilder.from_markup(screen_keyboard("disputes")))
    await edit(query.message, "\n".join(lines), kb.as_markup())


@router.callback_query(AdminCard.filter(), ConfiguredAdmin())
async def admin_card(
    query: CallbackQuery,
    callback_data: AdminCard,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
) -> None:
    if await refused(query, snapshot) or not isinstance(query.message, Message):
        return
    deal = await services.deals.get(snapshot, callback_data.code, as_admin=True)
    await edit(
        query.message,
        texts.deal_card(deal, None, currencies),
        keyboards.admin_deal_keyboard(deal),
    )


def resolve_question(deal: DealView, outcome: str, currencies: Currencies) -> tuple[str, str]:
    """(the question, the confirming button's label)"""
    money = currencies[deal.currency]
    if outcome == "release":
        return (
            f"❓ Release {money.format(deal.payout)} to "
            f"{escape(deal.seller_name or 'the seller')} (fee {money.format(deal.fee)})? "
            "This can't be undone.",
            "✅ Yes, release to the seller",
        )
    return (
        f"❓ Refund {money.format(deal.amount)} to {escape(deal.buyer_name or 'the buyer')}? "
        "This can't be undone.",
        "↩️ Yes, refund the buyer",
    )


# What the admin reads (the parties' text: bot/runtime/notifier.py).
RESOLVED = {"release": "✅ Released to the seller.", "refund": "↩️ Refunded to the buyer."}


@router.callback_query(AdminDeal.filter(F.outcome.in_(RESOLVED)), ConfiguredAdmin())
async def resolve(
    query: CallbackQuery,
    callback_data: AdminDeal,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    deals_seen: DealVersions,
    outbox: Outbox,
    bot: Bot,
) -> None:
    if await refused(query, snapshot) or not isinstance(query.message, Message):
        return
    card = query.message
    outcome: Literal["release", "refund"] = (
        "release" if callback_data.outcome == "release" else "refund"
    )
    if not callback_data.ok:
        deal = await services.deals.get(snapshot, callback_data.code, as_admin=True)
        if deal.status != DealStatus.DISPUTED:
            headline = "⚠️ This deal is not in dispute any more."
            await edit(
                card,
                texts.deal_card(deal, None, currencies, headline),
                keyboards.admin_deal_keyboard(deal),
            )
            return
        question, label = resolve_question(deal, outcome, currencies)
        kb = InlineKeyboardBuilder()
        kb.button(
            text=label,
            callback_data=AdminDeal(outcome=outcome, code=deal.code, v=deal.version, ok=True),
        )
        kb.button(text="« Back", callback_data=AdminCard(code=deal.code))
        kb.adjust(1)
        await edit(card, texts.deal_card(deal, None, currencies, question), kb.as_markup())
        return
    try:
        resolved = await services.deals.resolve(snapshot, callback_data.code, outcome)
    except WrongState as already:
        # A double press, or another admin was first: nothing moved this time.
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
    await show_result(
        bot,
        snapshot.telegram_id,
        texts.deal_card(deal, None, currencies, RESOLVED[outcome]),
        keyboards.admin_deal_keyboard(deal),
        edit=card,
    )
    await outbox.send(resolved.notices, deal, actor=snapshot)


# -- stats --------------------------------------------------------------------------


def stats_text(stats: Stats, currencies: Currencies) -> str:
    lines = ["📊 <b>Stats</b>", "", f"Users: {stats.users}"]
    total = sum(stats.deals_by_status.values())
    lines.append(f"Deals: {total}")
    for status in DealStatus:
        if count := stats.deals_by_status.get(status.value):
            lines.append(f"    {texts.SHORT_STATUS[status]}: {count}")
    lines += ["", "Released:"]
    for volume in stats.released:
        money = currencies[volume.currency]
        lines.append(
            f"    {money.code}: {volume.deals} deal{'' if volume.deals == 1 else 's'}"
            f" · {money.format(volume.volume)}"
            f" · fees {money.format(volume.fees)}"
        )
    if not stats.released:
        lines.append("    nothing yet")
    lines += ["", f"Pending withdrawals: {stats.pending_withdrawals}"]
    return "\n".join(lines)


@router.callback_query(AdminPanel.filter(F.screen == "stats"), ConfiguredAdmin())
async def stats(
    query: CallbackQuery, snapshot: UserSnapshot, services: Services, currencies: Currencies
) -> None:
    if await refused(query, snapshot) or not isinstance(query.message, Message):
        return
    text = stats_text(await services.reads.stats(snapshot), currencies)
    await edit(query.message, text, screen_keyboard("stats"))
