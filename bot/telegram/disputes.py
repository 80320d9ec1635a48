"""Disputes as admins see them: a piece of evidence relayed (a photo or a
document under a caption, or a text), and a dispute's file (who opened it, why,
and the evidence, with buttons to settle it or see each piece again); and what
the parties read about a split settlement."""

from __future__ import annotations

import re
from datetime import UTC
from html import escape, unescape

import msgspec
from aiogram import Bot
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from babel.dates import format_datetime

from bot.services.deals.evidence import DisputeFile, EvidenceView
from bot.services.money import Currencies
from bot.services.views import DealView
from bot.telegram import texts
from bot.telegram.i18n import N_, _, current_locale
from bot.telegram.keyboards import SETTLE, AdminCard, AdminDeal, AdminEvidence, Keyboard, Nav
from db.models import DealStatus, EvidenceKind

# Telegram's limits: a caption, a message (characters once entities are parsed).
CAPTION_LENGTH = 1024
MESSAGE_LENGTH = 4096
# How much of a caption or a text the dispute's file lists for each piece.
LISTED_TEXT = 40

KINDS = {
    EvidenceKind.PHOTO: N_("🖼 photo"),
    EvidenceKind.DOCUMENT: N_("📄 document"),
    EvidenceKind.TEXT: N_("💬 text"),
}
ROLES = {"buyer": N_("the buyer"), "seller": N_("the seller")}
_TAG = re.compile(r"<[^>]*>")


def shown_length(html: str) -> int:
    """Characters Telegram shows for `html` (every user-given string is escaped,
    so a "<" starts a tag)."""
    return len(unescape(_TAG.sub("", html)))


def role_words(deal: DealView, user_id: int | None) -> str:
    role = ROLES.get(deal.role_of(user_id) or "")
    return _(role) if role else _("someone")


SPLIT_TO_BUYER = N_(
    "🛡 An admin split the payment: {refund} is back in your wallet, and the seller was "
    "paid {seller}."
)
SPLIT_TO_SELLER = N_(
    "🛡 An admin split the payment: {paid} is in your wallet ({seller} less the fee of "
    "{fee}), and the buyer was refunded {refund}."
)


def split_headline(deal: DealView, user_id: int | None, currencies: Currencies) -> str:
    """What a party (`user_id`) reads about a split: their own amount first."""
    money = currencies[deal.currency]
    part, fee = deal.split_seller or 0, deal.split_fee or 0
    template = SPLIT_TO_SELLER if user_id == deal.seller_id else SPLIT_TO_BUYER
    return _(template).format(
        refund=money.format(deal.refund),
        seller=money.format(part),
        fee=money.format(fee),
        paid=money.format(part - fee),
    )


def relay_text(evidence: EvidenceView, deal: DealView, sender: str) -> str:
    """What admins read with a piece of evidence: who sent it about which deal,
    and its text or caption whole (a text's limit keeps it within a message)."""
    what = _(KINDS[EvidenceKind(evidence.kind)])
    if evidence.file_name:
        what += f" <code>{escape(evidence.file_name)}</code>"
    header = _("📎 Evidence on the dispute over deal #{code}, from {name} ({role}): {what}").format(
        code=deal.code,
        name=escape(sender),
        role=role_words(deal, evidence.sender_id),
        what=what,
    )
    if not evidence.text:
        return header
    return f"{header}\n\n<i>{escape(evidence.text)}</i>"


def relay_keyboard(deal: DealView) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("🗂 Dispute file"), callback_data=AdminCard(code=deal.code).pack()
                )
            ]
        ]
    )


async def send_evidence(
    bot: Bot,
    chat_id: int,
    evidence: EvidenceView,
    text: str,
    markup: InlineKeyboardMarkup | None = None,
) -> None:
    """Send a piece of evidence to `chat_id`: the file again by its Telegram
    file id under `text` (or, when `text` is longer than a caption may be, the
    file and then `text`), or the text itself."""
    if evidence.kind == EvidenceKind.TEXT or not evidence.file_id:
        await bot.send_message(chat_id, text, reply_markup=markup)
        return
    send = bot.send_photo if evidence.kind == EvidenceKind.PHOTO else bot.send_document
    if shown_length(text) <= CAPTION_LENGTH:
        await send(chat_id, evidence.file_id, caption=text, reply_markup=markup)
        return
    await send(chat_id, evidence.file_id)
    await bot.send_message(chat_id, text, reply_markup=markup)


# -- a dispute's file ---------------------------------------------------------------


def _listed(number: int, evidence: EvidenceView, deal: DealView, snippets: bool) -> str:
    kind = _(KINDS[EvidenceKind(evidence.kind)])
    sent = format_datetime(
        evidence.created_at, "dd MMM, HH:mm", tzinfo=UTC, locale=current_locale()
    )
    line = f"{number}. {role_words(deal, evidence.sender_id)} · {kind} · {sent}"
    said = evidence.text or evidence.file_name
    if snippets and said:
        line += f" — <i>{escape(texts.shorten(said, LISTED_TEXT))}</i>"
    return line


def dispute_file_text(file: DisputeFile, currencies: Currencies, headline: str = "") -> str:
    """The deal, who opened the dispute and why, and the evidence: within one
    message, listing less of each piece (then of the description) if needed."""
    deal = file.deal

    def render(deal: DealView, snippets: bool) -> str:
        lines = [texts.deal_card(deal, None, currencies, headline), ""]
        if file.opened_by is not None and file.opened_at is not None:
            lines.append(
                _("⚠️ Dispute opened by {name} ({role}), {when}").format(
                    name=escape(file.opened_by_name or _("someone")),
                    role=role_words(deal, file.opened_by),
                    when=texts.when(file.opened_at),
                )
            )
            lines.append(_("Reason: <i>{reason}</i>").format(reason=escape(file.reason or "")))
        if file.evidence:
            evidence = _("📎 <b>Evidence</b> ({count}):").format(count=len(file.evidence))
            lines += ["", evidence]
            lines += [
                _listed(number, item, deal, snippets)
                for number, item in enumerate(file.evidence, 1)
            ]
        elif deal.status == DealStatus.DISPUTED:
            lines += ["", _("📎 No evidence yet.")]
        return "\n".join(lines)

    text = render(deal, snippets=True)
    if shown_length(text) > MESSAGE_LENGTH:
        text = render(deal, snippets=False)
    excess = shown_length(text) - MESSAGE_LENGTH
    if excess > 0:
        shorter = texts.shorten(deal.description, max(len(deal.description) - excess, 1))
        text = render(msgspec.structs.replace(deal, description=shorter), snippets=False)
    return text


def dispute_file_keyboard(file: DisputeFile) -> InlineKeyboardMarkup:
    """Settle (while disputed), see each piece of evidence again or all of them."""
    deal, kb = file.deal, Keyboard()
    if deal.status == DealStatus.DISPUTED:
        for outcome, label in SETTLE.items():
            data = AdminDeal(outcome=outcome, code=deal.code, v=deal.version)
            kb.row(InlineKeyboardButton(text=_(label), callback_data=data.pack()))
    pieces = [
        InlineKeyboardButton(
            text=f"📎 {number}", callback_data=AdminEvidence(code=deal.code, id=item.id).pack()
        )
        for number, item in enumerate(file.evidence, 1)
    ]
    for start in range(0, len(pieces), 5):
        kb.row(*pieces[start : start + 5])
    if len(pieces) > 1:
        again = AdminEvidence(code=deal.code, id=0).pack()
        kb.row(InlineKeyboardButton(text=_("📎 Send all again"), callback_data=again))
    kb.row(
        InlineKeyboardButton(text=_("⟳ Refresh"), callback_data=AdminCard(code=deal.code).pack()),
        InlineKeyboardButton(text=_("« Admin"), callback_data=Nav(to="admin").pack()),
    )
    return kb.as_markup()
