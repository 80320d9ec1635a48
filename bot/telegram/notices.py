"""What a notification says: the text and buttons a party, an owner or an
admin receives about a deal, a deposit or a withdrawal someone else moved.

The outbox worker (`bot/runtime/notifier.py`) sends what `Notices.render` returns; a
notification whose subject is gone (`Gone`) or no longer true (`Obsolete`) is not sent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from html import escape
from typing import Protocol

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import I18n

from bot.services.deals.evidence import EvidenceView
from bot.services.deposits import DepositView
from bot.services.money import Currencies
from bot.services.notifications import Subjects, Who
from bot.services.rules import Action, allowed_actions
from bot.services.views import DealView, WithdrawalView
from bot.telegram import clocks, keyboards, reputation, texts
from bot.telegram.disputes import relay_keyboard, relay_text, role_words, split_headline
from bot.telegram.i18n import Catalogs, _, locale_for
from bot.telegram.keyboards import AdminWithdrawal, Keyboard, Nav, Signer, WalletMenu
from bot.telegram.notice_texts import (
    CANCELLED_AND_REFUNDED,
    DEPOSIT_CREDITED,
    DEPOSIT_FEE,
    DEPOSIT_MISMATCH,
    DISPUTE_OPENED,
    INVITED_AS,
    PAYOUT_FAILED,
    REASON,
    REMINDED_ACTIONS,
    REMINDERS,
    RESOLVED,
    SOMEONE,
    TOLD,
    WITHDRAWAL_APPROVED,
    WITHDRAWAL_FAILED,
    WITHDRAWAL_PAID,
    WITHDRAWAL_REJECTED,
    WITHDRAWAL_REQUESTED,
    WITHDRAWAL_TIMED_OUT,
)
from cache.snapshots import UserSnapshot
from db.models import DealStatus, NotificationKind, WithdrawalStatus
from db.sql.notifications import Notice

Message = tuple[int, str, InlineKeyboardMarkup | None]


def reminded_actions(deal: DealView, user_id: int) -> list[Action]:
    """What `user_id` would be reminded to do on `deal` now (nothing: no reminder)."""
    return [action for action in allowed_actions(deal, user_id) if action in REMINDED_ACTIONS]


def reminder_headline(deal: DealView, actions: list[Action], now: datetime) -> str:
    hours = max(1, math.ceil((deal.deadline_at - now).total_seconds() / 3600))
    return _(REMINDERS[frozenset(actions)]).format(hours=hours)


def who_is(actor: UserSnapshot) -> Who:
    """How a notification names `actor`."""
    return Who(texts.name_of(actor), actor.telegram_id)


class NoticeSender(Protocol):
    """What a handler sends a committed change's notifications through, at once:
    the runtime's outbox (`bot/runtime/notifier.py`), which leaves what fails
    to its worker."""

    async def send(
        self,
        notices: Iterable[Notice],
        *subjects: DealView | WithdrawalView | DepositView | EvidenceView,
        actor: UserSnapshot | None = None,
    ) -> int: ...


class Gone(LookupError):
    """The deal or withdrawal a notification is about does not exist."""


class Obsolete(LookupError):
    """What the notification says is no longer true (a reminder, the deal moved on)."""


class Notices:
    """Renders notifications with the currencies' formats and the buttons' signer,
    each in its recipient's language."""

    def __init__(self, currencies: Currencies, signer: Signer, i18n: I18n | None = None) -> None:
        self.currencies = currencies
        self.signer = signer
        self.i18n = i18n or Catalogs()

    def render(
        self,
        notice: Notice,
        subjects: Subjects,
        records: Mapping[int, UserSnapshot] | None = None,
    ) -> Message:
        """The chat, text and buttons of `notice`, from the deal or withdrawal as
        `subjects` hold it, in its recipient's language when it was written
        (English for a chat not on the bot); a party asked to accept or fund is
        shown the other party's record from `records` (by Telegram id) if there."""
        locale = locale_for(notice.language)
        with self.i18n.context(), self.i18n.use_locale(locale):
            return self._render(notice, subjects, records, self.currencies.in_locale(locale))

    def _render(
        self,
        notice: Notice,
        subjects: Subjects,
        records: Mapping[int, UserSnapshot] | None,
        currencies: Currencies,
    ) -> Message:
        kind = NotificationKind(notice.kind)
        who = subjects.actors.get(notice.actor_id or 0) or Who(_(SOMEONE), 0)
        name = escape(who.name)
        if kind in texts.ACCOUNT_NOTICES:  # a user blocked or unblocked, with the reason
            told = _(texts.ACCOUNT_NOTICES[kind]).format(reason=escape(notice.note or ""))
            return notice.chat_id, told, keyboards.back_to_menu()
        if notice.deposit_id is not None:
            deposit = subjects.deposits.get(notice.deposit_id)
            if deposit is None:
                raise Gone(f"deposit {notice.deposit_id} does not exist")
            return self._deposit(notice, kind, deposit, who, currencies)
        if notice.withdrawal_id is not None:
            withdrawal = subjects.withdrawals.get(notice.withdrawal_id)
            if withdrawal is None:
                raise Gone(f"withdrawal {notice.withdrawal_id} does not exist")
            return self._withdrawal(notice, kind, withdrawal, who, currencies)
        deal = subjects.deals.get(notice.escrow_id or 0)
        if deal is None:
            raise Gone(f"deal {notice.escrow_id} does not exist")
        if kind is NotificationKind.DISPUTE_EVIDENCE:
            evidence = self.attachment(notice, subjects)
            if evidence is None:
                raise Gone(f"evidence {notice.evidence_id} does not exist")
            text = relay_text(evidence, deal, who.name)
            return notice.chat_id, text, relay_keyboard(deal)
        reason = "\n" + _(REASON).format(reason=escape(notice.note)) if notice.note else ""
        if kind is NotificationKind.DISPUTE_OPENED:
            role = role_words(deal, notice.actor_id)
            headline = _(DISPUTE_OPENED).format(name=name, role=role) + reason
            return (
                notice.chat_id,
                texts.deal_card(deal, None, currencies, headline),
                keyboards.admin_deal_keyboard(deal),
            )
        if kind is NotificationKind.REMIND and ":" in (notice.note or ""):
            clock = clocks.reminder(deal, notice.note or "", datetime.now(UTC))
            if clock is None:
                raise Obsolete(f"deal {deal.code} is {deal.status} now: {notice.note} is moot")
            headline = clock
        elif kind is NotificationKind.RELEASE and notice.actor_id is None:
            headline = clocks.auto_released(deal, notice.user_id)
        elif kind is NotificationKind.REMIND:
            actions = reminded_actions(deal, notice.user_id or 0)
            if deal.status != notice.note or not actions:
                raise Obsolete(f"deal {deal.code} is {deal.status} now, not {notice.note}")
            headline = reminder_headline(deal, actions, datetime.now(UTC))
        elif kind is NotificationKind.RESOLVE and deal.status == DealStatus.SPLIT:
            headline = split_headline(deal, notice.user_id, currencies)
        elif kind is NotificationKind.RESOLVE:
            headline = _(RESOLVED.get(DealStatus(deal.status), RESOLVED[DealStatus.RELEASED]))
        elif kind is NotificationKind.CANCEL and deal.status == DealStatus.REFUNDED:
            headline = (
                clocks.refunded_past_deadline(deal, name)  # the buyer's refund, told the seller
                if notice.user_id == deal.seller_id
                else _(CANCELLED_AND_REFUNDED).format(name=name)
            )
        elif kind is NotificationKind.INVITED:
            role = "buyer" if notice.user_id == deal.buyer_id else "seller"
            headline = _(INVITED_AS[role]).format(name=name) + reason
        else:
            headline = _(TOLD[kind]).format(name=name) + reason
        judged = reputation.judged(deal, notice.user_id) if notice.user_id is not None else None
        record = (records or {}).get(judged) if judged is not None else None
        return notice.chat_id, *self.card(
            deal, notice.user_id, notice.chat_id, headline, record, currencies
        )

    def attachment(self, notice: Notice, subjects: Subjects) -> EvidenceView | None:
        """The evidence a notification relays (sent as a photo or document under
        its text), if it is about one."""
        return subjects.evidence.get(notice.evidence_id) if notice.evidence_id else None

    def card(
        self,
        deal: DealView,
        user_id: int | None,
        chat_id: int,
        headline: str,
        record: UserSnapshot | None = None,
        currencies: Currencies | None = None,
    ) -> tuple[str, InlineKeyboardMarkup]:
        """A party's card of `deal` under `headline`, with the buttons they may press."""
        currencies = currencies or self.currencies
        text = texts.deal_card(deal, user_id, currencies, headline, record=record)
        if user_id is None:
            return text, keyboards.admin_deal_keyboard(deal)
        amount = currencies[deal.currency].format(deal.amount)
        return text, keyboards.deal_keyboard(deal, user_id, chat_id, self.signer, amount)

    def _deposit(
        self,
        notice: Notice,
        kind: NotificationKind,
        deposit: DepositView,
        who: Who,
        currencies: Currencies,
    ) -> Message:
        money = currencies[deposit.currency]
        amount = money.format(deposit.amount)
        kb = Keyboard()
        if kind is NotificationKind.DEPOSIT_MISMATCH:
            kb.button(text=_("🛡 Admin"), callback_data=Nav(to="admin"))
            paid = f"{deposit.paid_amount or '?'} {deposit.paid_asset or '?'}"
            text = _(DEPOSIT_MISMATCH).format(
                id=deposit.id,
                invoice=deposit.invoice_id,
                name=escape(who.name),
                telegram_id=who.telegram_id,
                paid=escape(paid),
                amount=amount,
            )
            return notice.chat_id, text, kb.as_markup()
        kb.button(text=_("👛 Wallet"), callback_data=Nav(to="wallet"))
        text = _(DEPOSIT_CREDITED).format(amount=money.format(deposit.amount - deposit.fee))
        if deposit.fee:
            text += _(DEPOSIT_FEE).format(paid=amount, fee=money.format(deposit.fee))
        return notice.chat_id, text, kb.as_markup()

    def _withdrawal(
        self,
        notice: Notice,
        kind: NotificationKind,
        withdrawal: WithdrawalView,
        who: Who,
        currencies: Currencies,
    ) -> Message:
        amount = currencies[withdrawal.currency].format(withdrawal.amount)
        kb = Keyboard()
        if kind is NotificationKind.WITHDRAWAL_REQUESTED:
            if withdrawal.status != WithdrawalStatus.PENDING:  # paid unattended, say
                raise Obsolete(f"withdrawal {withdrawal.id} is {withdrawal.status} now")
            # decided from here: the same presses as the admin panel's queue
            kb.button(
                text=_("✅ Approve"),
                callback_data=AdminWithdrawal(action="approve", id=withdrawal.id),
            )
            kb.button(
                text=_("✖️ Reject"),
                callback_data=AdminWithdrawal(action="reject", id=withdrawal.id),
            )
            kb.button(text=_("🛡 Admin"), callback_data=Nav(to="admin"))
            kb.adjust(2, 1)
            text = _(WITHDRAWAL_REQUESTED).format(
                id=withdrawal.id,
                name=escape(who.name),
                telegram_id=who.telegram_id,
                amount=amount,
                destination=escape(withdrawal.destination),
            )
            return notice.chat_id, text, kb.as_markup()
        if kind is NotificationKind.PAYOUT_FAILED:
            kb.button(text=_("🛡 Admin"), callback_data=Nav(to="admin"))
            text = _(PAYOUT_FAILED).format(
                id=withdrawal.id, amount=amount, reason=escape(notice.note or _("refused"))
            )
            return notice.chat_id, text, kb.as_markup()
        kb.button(text=_("🧾 My withdrawals"), callback_data=WalletMenu(screen="withdrawals"))
        kb.button(text=_("👛 Wallet"), callback_data=Nav(to="wallet"))
        if kind is NotificationKind.WITHDRAWAL_PAID:
            text = _(WITHDRAWAL_PAID).format(id=withdrawal.id, amount=amount)
            return notice.chat_id, text, kb.as_markup()
        if kind is NotificationKind.WITHDRAWAL_FAILED:
            text = _(WITHDRAWAL_FAILED).format(id=withdrawal.id, amount=amount)
            return notice.chat_id, text, kb.as_markup()
        if withdrawal.status == WithdrawalStatus.APPROVED:
            template = WITHDRAWAL_APPROVED
        elif notice.actor_id is None:
            template = WITHDRAWAL_TIMED_OUT
        else:
            template = WITHDRAWAL_REJECTED
        text = _(template).format(
            id=withdrawal.id,
            amount=amount,
            destination=escape(withdrawal.destination),
            note=escape(withdrawal.note or ""),
        )
        return notice.chat_id, text, kb.as_markup()
