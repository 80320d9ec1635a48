"""What the admin panel shows of withdrawals: the pending queue, one
withdrawal's details, a decision above the queue as it is now, and what an
outdated press (a notification's, another admin's screen) finds instead."""

from __future__ import annotations

from html import escape

from aiogram import Bot
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.services import Services
from bot.services.money import Currencies
from bot.services.views import WithdrawalView
from bot.telegram import texts
from bot.telegram.handlers.admin import (
    QUEUE_PAGE,
    AdminWithdrawal,
    home_keyboard,
    home_text,
    queue_size,
    screen_keyboard,
)
from bot.telegram.handlers.committed import read_after_commit, show_result
from bot.telegram.handlers.wallet import edit
from bot.telegram.i18n import _
from bot.telegram.keyboards import Keyboard
from bot.telegram.refusals import WITHDRAWAL_STATUS_WORDS
from cache.snapshots import UserSnapshot
from db.models import WithdrawalStatus


def pending_screen(
    items: list[WithdrawalView], currencies: Currencies, headline: str = ""
) -> tuple[str, InlineKeyboardMarkup]:
    lines = [headline, ""] if headline else []
    lines += [_("🏦 <b>Pending withdrawals</b> ({count})").format(count=queue_size(items)), ""]
    kb = Keyboard()
    for item in items:
        lines.append(withdrawal_details(item, currencies))
        kb.row(
            InlineKeyboardButton(
                text=_("✅ Approve #{id}").format(id=item.id),
                callback_data=AdminWithdrawal(action="approve", id=item.id).pack(),
            ),
            InlineKeyboardButton(
                text=_("✖️ Reject #{id}").format(id=item.id),
                callback_data=AdminWithdrawal(action="reject", id=item.id).pack(),
            ),
        )
    if not items:
        lines.append(_("Nothing to decide."))
    kb.attach(Keyboard.from_markup(screen_keyboard("withdrawals")))
    return "\n".join(lines), kb.as_markup()


async def show_queue(
    message: Message,
    admin: UserSnapshot,
    services: Services,
    currencies: Currencies,
    headline: str = "",
    *,
    new: bool = False,
) -> None:
    """The queue as it is now, under `headline`: in place of `message`, or below it."""
    pending = await services.reads.pending_withdrawals(admin, QUEUE_PAGE)
    text, markup = pending_screen(pending, currencies, headline)
    if new:
        await message.answer(text, reply_markup=markup)
    else:
        await edit(message, text, markup)


# A page of withdrawals fits one message: each shows this much of its
# destination (the approval's question shows all of it).
LISTED_DESTINATION = 64


def withdrawal_details(item: WithdrawalView, currencies: Currencies) -> str:
    return _(
        "<b>#{id}</b> · {amount} · user <code>{telegram_id}</code>\n"
        "    to <code>{destination}</code>\n"
        "    requested {when}"
    ).format(
        id=item.id,
        amount=currencies[item.currency].format(item.amount),
        telegram_id=item.telegram_id,
        destination=escape(texts.shorten(item.destination, LISTED_DESTINATION)),
        when=texts.when(item.created_at),
    )


async def show_decision(
    bot: Bot,
    admin: UserSnapshot,
    services: Services,
    currencies: Currencies,
    headline: str,
    *,
    edit: Message | None,
) -> None:
    """A committed decision on a withdrawal, above the queue as it is now (or
    alone, with the way back, when the queue can't be read)."""
    pending = await read_after_commit(services.reads.pending_withdrawals(admin, QUEUE_PAGE))
    if pending is None:
        text, markup = home_text(headline), home_keyboard()
    else:
        text, markup = pending_screen(pending, currencies, headline)
    await show_result(bot, admin.telegram_id, text, markup, edit=edit)


async def pending_or_shown(
    message: Message,
    withdrawal_id: int,
    admin: UserSnapshot,
    services: Services,
    currencies: Currencies,
) -> WithdrawalView | None:
    """The withdrawal if it is still pending (one read, whichever page of the
    queue it is on); else None, and the queue is shown under what became of it
    (a notification or a screen pressed after another admin decided)."""
    item = await services.reads.withdrawal(admin, withdrawal_id)
    if item is not None and item.status == WithdrawalStatus.PENDING:
        return item
    if item is None:
        headline = _("⚠️ Withdrawal #{id} is not pending any more.").format(id=withdrawal_id)
    else:
        headline = _("⚠️ Withdrawal #{id} is not pending any more: it is {status}.").format(
            id=withdrawal_id, status=_(WITHDRAWAL_STATUS_WORDS[WithdrawalStatus(item.status)])
        )
    await show_queue(message, admin, services, currencies, headline)
    return None
