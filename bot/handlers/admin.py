"""The admin panel: open disputes, pending withdrawals, deposits by hand, stats.

Who may press an admin button is decided by a filter with no I/O (the
configured admin ids), so a refused press gets its alert in the pre-answer;
the handlers also check the snapshot's admin flag, and every service that
changes something checks it once more inside its transaction.
"""

from __future__ import annotations

import logging
from functools import cache
from html import escape
from typing import Literal

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, Filter, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import keyboards, texts
from bot.filters import NotACommand
from bot.freshness import DealVersions
from bot.handlers.wallet import (
    balances_text,
    bounds,
    edit,
    typed_amount,
    wallet_keyboard,
)
from bot.keyboards import AdminDeal, Nav
from bot.outbox import Outbox
from bot.services import Services
from bot.services.errors import InvalidInput, WrongState
from bot.services.money import Currencies
from bot.services.reads import Stats
from bot.services.settings import EscrowSettings
from bot.services.views import DealView, WithdrawalView
from cache.snapshots import UserSnapshot
from cache.store import SnapshotCache
from db.models import DealStatus

log = logging.getLogger(__name__)
router = Router(name="admin")

NOT_ADMIN_ALERT = {"text": texts.NOT_ADMIN, "show_alert": True}
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
    items = await services.reads.open_disputes(QUEUE_PAGE)
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


# What the admin reads (the parties' text: bot/outbox.py).
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
                texts.deal_card(current, None, currencies, f"⚠️ {already.message}"),
                keyboards.admin_deal_keyboard(current),
            )
            return
        raise
    deal = resolved.value
    deals_seen.note(deal.code, deal.version)
    await edit(
        card,
        texts.deal_card(deal, None, currencies, RESOLVED[outcome]),
        keyboards.admin_deal_keyboard(deal),
    )
    await outbox.send(resolved.notices, deal, actor=snapshot)


# -- withdrawals --------------------------------------------------------------------


def pending_screen(
    items: list[WithdrawalView], currencies: Currencies, headline: str = ""
) -> tuple[str, InlineKeyboardMarkup]:
    lines = [headline, ""] if headline else []
    lines += [f"🏦 <b>Pending withdrawals</b> ({queue_size(items)})", ""]
    kb = InlineKeyboardBuilder()
    for item in items:
        lines.append(withdrawal_details(item, currencies))
        kb.row(
            InlineKeyboardButton(
                text=f"✅ Approve #{item.id}",
                callback_data=AdminWithdrawal(action="approve", id=item.id).pack(),
            ),
            InlineKeyboardButton(
                text=f"✖️ Reject #{item.id}",
                callback_data=AdminWithdrawal(action="reject", id=item.id).pack(),
            ),
        )
    if not items:
        lines.append("Nothing to decide.")
    kb.attach(InlineKeyboardBuilder.from_markup(screen_keyboard("withdrawals")))
    return "\n".join(lines), kb.as_markup()


def queue_size(items: list) -> str:
    return f"oldest {QUEUE_PAGE} shown" if len(items) >= QUEUE_PAGE else str(len(items))


def withdrawal_details(item: WithdrawalView, currencies: Currencies) -> str:
    return (
        f"<b>#{item.id}</b> · {currencies[item.currency].format(item.amount)}"
        f" · user <code>{item.telegram_id}</code>\n"
        f"    to <code>{escape(item.destination)}</code>\n"
        f"    requested {texts.when(item.created_at)}"
    )


@router.callback_query(AdminPanel.filter(F.screen == "withdrawals"), ConfiguredAdmin())
async def withdrawals(
    query: CallbackQuery, snapshot: UserSnapshot, services: Services, currencies: Currencies
) -> None:
    if await refused(query, snapshot) or not isinstance(query.message, Message):
        return
    text, markup = pending_screen(await services.reads.pending_withdrawals(QUEUE_PAGE), currencies)
    await edit(query.message, text, markup)


@router.callback_query(AdminWithdrawal.filter(F.action == "approve"), ConfiguredAdmin())
async def approve(
    query: CallbackQuery,
    callback_data: AdminWithdrawal,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    outbox: Outbox,
) -> None:
    if await refused(query, snapshot) or not isinstance(query.message, Message):
        return
    if not callback_data.ok:
        pending = await services.reads.pending_withdrawals(QUEUE_PAGE)
        item = next((w for w in pending if w.id == callback_data.id), None)
        if item is None:
            headline = f"⚠️ Withdrawal #{callback_data.id} is not pending any more."
            await edit(query.message, *pending_screen(pending, currencies, headline))
            return
        money = currencies[item.currency]
        kb = InlineKeyboardBuilder()
        kb.button(
            text="✅ Yes, it was sent",
            callback_data=AdminWithdrawal(action="approve", id=item.id, ok=True),
        )
        kb.button(text="« Back", callback_data=AdminPanel(screen="withdrawals"))
        kb.adjust(1)
        await edit(
            query.message,
            f"❓ Approve withdrawal #{item.id}? Press only once {money.format(item.amount)} "
            f"has been sent to <code>{escape(item.destination)}</code>: the held amount then "
            f"leaves the user's wallet.\n\n{withdrawal_details(item, currencies)}",
            kb.as_markup(),
        )
        return
    try:
        approved = await services.wallets.approve_withdrawal(snapshot, callback_data.id)
    except WrongState as already:
        headline = f"⚠️ {already.message}"
    else:
        withdrawal = approved.value
        money = currencies[withdrawal.currency]
        headline = f"✅ Withdrawal #{withdrawal.id} approved: {money.format(withdrawal.amount)}."
        await outbox.send(approved.notices, withdrawal, actor=snapshot)
    text, markup = pending_screen(
        await services.reads.pending_withdrawals(QUEUE_PAGE), currencies, headline
    )
    await edit(query.message, text, markup)


@router.callback_query(AdminWithdrawal.filter(F.action == "reject"), ConfiguredAdmin())
async def reject(
    query: CallbackQuery,
    callback_data: AdminWithdrawal,
    snapshot: UserSnapshot,
    settings: EscrowSettings,
    state: FSMContext,
) -> None:
    if await refused(query, snapshot) or not isinstance(query.message, Message):
        return
    await state.set_state(AdminForm.reject_note)
    await state.set_data({"flow": "reject", "withdrawal_id": callback_data.id})
    await edit(
        query.message,
        f"✖️ Why is withdrawal #{callback_data.id} rejected? Send the reason in one message "
        f"(at most {settings.reason_max_length} characters); the user will read it. "
        "/cancel to go back.",
        cancel_keyboard(),
    )


@router.message(StateFilter(AdminForm.reject_note), NotACommand())
async def reject_note(
    message: Message,
    state: FSMContext,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    outbox: Outbox,
) -> None:
    data = await state.get_data()
    if not snapshot.is_admin or data.get("flow") != "reject":
        await state.clear()
        await message.answer(texts.NOT_ADMIN if not snapshot.is_admin else "⚠️ Start again.")
        return
    if not message.text:
        await message.answer("Please send the reason as text, or /cancel.")
        return
    withdrawal_id = data["withdrawal_id"]
    try:
        rejected = await services.wallets.reject_withdrawal(snapshot, withdrawal_id, message.text)
    except WrongState as already:
        await state.clear()
        headline = f"⚠️ {already.message}"
    except InvalidInput as bad:  # the step repeats
        await message.answer(f"⚠️ {bad.message} Send it again, or /cancel.")
        return
    else:
        await state.clear()
        withdrawal = rejected.value
        money = currencies[withdrawal.currency]
        headline = (
            f"✖️ Withdrawal #{withdrawal.id} rejected: {money.format(withdrawal.amount)} "
            "is back in the user's available balance."
        )
        await outbox.send(rejected.notices, withdrawal, actor=snapshot)
    text, markup = pending_screen(
        await services.reads.pending_withdrawals(QUEUE_PAGE), currencies, headline
    )
    await message.answer(text, reply_markup=markup)


# -- deposits by hand ---------------------------------------------------------------


@router.callback_query(AdminPanel.filter(F.screen == "credit"), ConfiguredAdmin())
async def credit(query: CallbackQuery, snapshot: UserSnapshot, state: FSMContext) -> None:
    if await refused(query, snapshot) or not isinstance(query.message, Message):
        return
    await state.set_state(AdminForm.credit_user)
    await state.set_data({"flow": "credit"})
    await edit(
        query.message,
        "💰 <b>Credit a deposit by hand</b>\n\n"
        "Whose deposit is it? Send the user's Telegram id (a number; they must have "
        "used the bot). /cancel to go back.",
        cancel_keyboard(),
    )


@router.message(StateFilter(AdminForm.credit_user), NotACommand())
async def credit_user(
    message: Message,
    state: FSMContext,
    snapshot: UserSnapshot,
    snapshots: SnapshotCache,
    currencies: Currencies,
) -> None:
    if not snapshot.is_admin:
        await state.clear()
        await message.answer(texts.NOT_ADMIN)
        return
    typed = (message.text or "").strip()
    if not (typed.isascii() and typed.isdigit() and 0 < int(typed) < 2**63):
        await message.answer(
            "⚠️ Send the Telegram id as a number, like 123456789, or /cancel.",
            reply_markup=cancel_keyboard(),
        )
        return
    target = await snapshots.get(int(typed))
    if target is None:
        await message.answer(
            "⚠️ No user with that Telegram id has used the bot. Send another id, or /cancel.",
            reply_markup=cancel_keyboard(),
        )
        return
    await state.clear()
    kb = InlineKeyboardBuilder()
    for money in currencies:
        kb.button(
            text=money.code,
            callback_data=AdminCredit(telegram_id=target.telegram_id, currency=money.code),
        )
    kb.adjust(3)
    kb.attach(InlineKeyboardBuilder.from_markup(cancel_keyboard()))
    await message.answer(f"💰 Credit {who(target)}: which currency?", reply_markup=kb.as_markup())


def who(user: UserSnapshot) -> str:
    return f"{escape(texts.name_of(user))} (id <code>{user.telegram_id}</code>)"


@router.callback_query(AdminCredit.filter(F.amount == 0), ConfiguredAdmin())
async def credit_currency(
    query: CallbackQuery,
    callback_data: AdminCredit,
    snapshot: UserSnapshot,
    currencies: Currencies,
    state: FSMContext,
) -> None:
    if await refused(query, snapshot) or not isinstance(query.message, Message):
        return
    money = currencies[callback_data.currency]
    await state.set_state(AdminForm.credit_amount)
    await state.set_data(
        {"flow": "credit", "telegram_id": callback_data.telegram_id, "currency": money.code}
    )
    await edit(
        query.message,
        f"💰 How much {money.code} to credit to user <code>{callback_data.telegram_id}</code>? "
        f"Send an amount {bounds(money, money.max_amount)}, or /cancel.",
        cancel_keyboard(),
    )


@router.message(StateFilter(AdminForm.credit_amount), NotACommand())
async def credit_amount(
    message: Message,
    state: FSMContext,
    snapshot: UserSnapshot,
    snapshots: SnapshotCache,
    currencies: Currencies,
) -> None:
    data = await state.get_data()
    if not snapshot.is_admin or data.get("flow") != "credit" or "currency" not in data:
        await state.clear()
        await message.answer(texts.NOT_ADMIN if not snapshot.is_admin else "⚠️ Start again.")
        return
    money = currencies[data["currency"]]
    amount = await typed_amount(message, money)
    if amount is None:
        return
    await state.clear()
    target = await snapshots.get(data["telegram_id"])
    name = who(target) if target else f"user <code>{data['telegram_id']}</code>"
    kb = InlineKeyboardBuilder()
    kb.button(
        text=f"✅ Credit {money.format(amount)}",
        callback_data=AdminCredit(
            telegram_id=data["telegram_id"], currency=money.code, amount=amount
        ),
    )
    kb.button(text="✖️ Cancel", callback_data=AdminPanel(screen="home"))
    kb.adjust(1)
    await message.answer(
        f"❓ Credit <b>{money.format(amount)}</b> to {name}? It is added to their available "
        "balance at once.",
        reply_markup=kb.as_markup(),
    )


@router.callback_query(AdminCredit.filter(F.amount > 0), ConfiguredAdmin())
async def credit_confirm(
    query: CallbackQuery,
    callback_data: AdminCredit,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    snapshots: SnapshotCache,
    bot: Bot,
) -> None:
    if await refused(query, snapshot) or not isinstance(query.message, Message):
        return
    money = currencies[callback_data.currency]
    # The confirmation message is the credit's identity: pressing it twice
    # (even at once) credits once.
    reference = f"tg:{query.message.chat.id}:{query.message.message_id}"
    deposit = (
        await services.wallets.admin_credit(
            snapshot,
            callback_data.telegram_id,
            money.code,
            callback_data.amount,
            reference=reference,
        )
    ).value
    if not deposit.credited:
        # Told apart from the confirmation, which shows the first press's result.
        await query.message.answer("⚠️ This deposit was already credited; nothing changed.")
        return
    target = await snapshots.get(deposit.telegram_id)
    name = who(target) if target else f"user <code>{deposit.telegram_id}</code>"
    await edit(
        query.message,
        home_text(f"✅ Credited {money.format(deposit.amount)} to {name}."),
        home_keyboard(),
    )
    if target is None:
        return
    try:
        await bot.send_message(
            target.telegram_id,
            balances_text(
                target,
                currencies,
                f"💰 An admin credited {money.format(deposit.amount)}.",
            ),
            reply_markup=wallet_keyboard(),
        )
    except TelegramAPIError as exc:
        log.info("could not tell %s about a credit: %s", target.telegram_id, exc)


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
    text = stats_text(await services.reads.stats(), currencies)
    await edit(query.message, text, screen_keyboard("stats"))


# -- everyone else ------------------------------------------------------------------


@router.callback_query(Nav.filter(F.to == "admin"), flags={"callback_answer": NOT_ADMIN_ALERT})
@router.callback_query(AdminPanel.filter(), flags={"callback_answer": NOT_ADMIN_ALERT})
@router.callback_query(AdminCard.filter(), flags={"callback_answer": NOT_ADMIN_ALERT})
@router.callback_query(AdminDeal.filter(), flags={"callback_answer": NOT_ADMIN_ALERT})
@router.callback_query(AdminWithdrawal.filter(), flags={"callback_answer": NOT_ADMIN_ALERT})
@router.callback_query(AdminCredit.filter(), flags={"callback_answer": NOT_ADMIN_ALERT})
async def not_an_admin(query: CallbackQuery) -> None:
    log.info("refused an admin button from %s: %s", query.from_user.id, query.data)
