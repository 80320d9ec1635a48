"""A withdrawal in words, as its owner reads it: its status, and a line of the
recent ones (bot/telegram/handlers/withdraw.py)."""

from __future__ import annotations

from html import escape

from bot.services.money import Currencies
from bot.services.views import WithdrawalView
from bot.services.withdrawals import STALE_WITHDRAWAL_NOTE
from bot.telegram.i18n import N_, _
from bot.telegram.moments import when
from bot.telegram.texts import shorten
from db.models import WithdrawalStatus

# A withdrawal's status, as its owner reads it.
WITHDRAWAL_STATUS = {
    WithdrawalStatus.PENDING: N_("⏳ pending: an admin will send it"),
    WithdrawalStatus.APPROVED: N_("✅ sent"),
    WithdrawalStatus.REJECTED: N_("✖️ rejected"),
    WithdrawalStatus.SENDING: N_("📤 approved: being sent through @CryptoBot"),
    WithdrawalStatus.PAID: N_("✅ sent to your @CryptoBot wallet"),
    WithdrawalStatus.FAILED: N_("↩️ could not be sent: the amount is back in your wallet"),
}


# Notes the bot itself writes on a withdrawal (an admin's are shown as written).
BOT_NOTES = {STALE_WITHDRAWAL_NOTE: N_("not decided in time")}


def note_text(note: str) -> str:
    return _(BOT_NOTES[note]) if note in BOT_NOTES else note


# The recent withdrawals fit one message: each shows this much of its
# destination and of an admin's note (the owner was sent the note whole).
LISTED_DESTINATION = 64
LISTED_NOTE = 300


def withdrawal_line(item: WithdrawalView, currencies: Currencies) -> str:
    money = currencies[item.currency]
    destination = escape(shorten(item.destination, LISTED_DESTINATION))
    status = _(WITHDRAWAL_STATUS[WithdrawalStatus(item.status)])
    line = (
        f"<b>#{item.id}</b> · {money.format(item.amount)} → <code>{destination}</code>"
        f"\n    {status} · {when(item.created_at)}"
    )
    if item.note:
        line += f"\n    <i>{escape(shorten(note_text(item.note), LISTED_NOTE))}</i>"
    return line
