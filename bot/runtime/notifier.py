"""Notifications: what the outbox holds, rendered and sent.

A use case writes its notifications in its own transaction (`db/notifications.py`)
and hands them back; right after its own reply the handler calls
`Outbox.send` with what it already holds (the deal, the actor), so the other
party hears at once and no SQL is spent on it. A notification that was not
sent then (the process died between commit and send, Telegram was down) is
due after `outbox_grace_seconds`, and the worker, on every replica, claims it
and sends it, retrying with a doubling backoff up to `outbox_attempts` times.
Both paths judge a refusal alike: a chat that refuses the bot (any 403, "chat
not found") makes the row `undeliverable`; any other refused request (a 400:
markup, length, buttons) is a defect of ours, `failed` at once and logged at
ERROR; anything else (Telegram down, a timeout) is tried again.

Results are kept in memory and recorded in one statement per batch, by the
worker each tick and on shutdown. A crash between a send and that record
sends the message again: delivery is at least once, never lost.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from html import escape

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
)
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.config import RuntimeSettings
from bot.ops.metrics import Metrics
from bot.runtime.ticks import every
from bot.services import Services
from bot.services.deposits import DepositView
from bot.services.notifications import Subjects, Who
from bot.services.rules import Action, allowed_actions
from bot.services.views import DealView, WithdrawalView
from bot.telegram import keyboards, texts
from bot.telegram.keyboards import Nav, Signer, WalletMenu
from cache.snapshots import UserSnapshot
from db.models import DealStatus, NotificationKind, NotificationStatus, WithdrawalStatus
from db.sql.notifications import Notice

log = logging.getLogger(__name__)

# Telegram refuses the request itself (400, 413): the text, its markup or its
# buttons are wrong, which is a defect of ours; sending it again fails again.
REFUSED_REQUEST = (TelegramBadRequest, TelegramEntityTooLarge)
# The 400s that mean the chat is not there for the bot (telegram-bot-api: "chat
# not found", "private chat not found" for a user it has never seen).
CHAT_GONE = "chat not found"


def refuses_the_bot(exc: Exception) -> bool:
    """The chat will not take a message from the bot, however often it is asked:
    the user blocked the bot, never started it or is deactivated (any 403), or
    the chat is gone. Not ours to fix, and nobody to tell."""
    if isinstance(exc, TelegramForbiddenError):
        return True
    return isinstance(exc, TelegramBadRequest) and exc.message.endswith(CHAT_GONE)


LEASE_RAN_OUT = "not sent within its batch's lease; handed back"

# What the other party reads, by what happened ({name}: who did it).
TOLD = {
    NotificationKind.INVITED: (
        "📨 {name} opened a deal with you: you are the {role}. Accept it to go ahead."
    ),
    NotificationKind.JOINED: "✅ {name} accepted your invitation.",
    NotificationKind.INVITATION_DECLINED: "✖️ {name} declined your invitation.",
    NotificationKind.ACCEPT: "✅ {name} accepted the deal.",
    NotificationKind.DECLINE: "✖️ {name} declined the deal.",
    NotificationKind.FUND: (
        "🔒 {name} funded the deal: the money is held in escrow. Deliver, then mark it "
        "as delivered."
    ),
    NotificationKind.DELIVER: (
        "📦 {name} marked the deal as delivered. Check it, then release the payment."
    ),
    NotificationKind.RELEASE: "✅ {name} released the payment: it is in your wallet.",
    NotificationKind.DISPUTE: "⚠️ {name} opened a dispute. An admin will decide.",
    NotificationKind.CANCEL: "✖️ {name} cancelled the deal.",
    NotificationKind.EXPIRE: (
        "⌛ This deal expired: it was not accepted and funded by its deadline."
    ),
}
CANCELLED_AND_REFUNDED = "↩️ {name} cancelled the deal: the money is back in your wallet."
RESOLVED = {
    DealStatus.RELEASED: "🛡 An admin settled the dispute: the payment is released to the seller.",
    DealStatus.REFUNDED: "🛡 An admin settled the dispute: the buyer is refunded.",
}
DISPUTE_OPENED = "🛡 New dispute opened by {name}."
DEPOSIT_CREDITED = "✅ Your deposit of {amount} has arrived: it is in your wallet."
DEPOSIT_FEE = " ({paid} paid, less Crypto Pay's fee of {fee}.)"
WITHDRAWAL_PAID = "✅ Your withdrawal #{id} of {amount} was sent to your @CryptoBot wallet."
WITHDRAWAL_FAILED = (
    "↩️ Your withdrawal #{id} of {amount} could not be sent: the amount is back in your "
    "wallet's available balance. The admins have been told."
)
PAYOUT_FAILED = (
    "⚠️ Crypto Pay refused the payout of withdrawal #{id} ({amount}): <code>{reason}</code>. "
    "The amount is back in the user's available balance. Top up the Crypto Pay app "
    "if its balance ran short."
)
DEPOSIT_MISMATCH = (
    "⚠️ Deposit #{id} (Crypto Pay invoice {invoice}) by {name} (id <code>{telegram_id}</code>) "
    "was paid as {paid}, not the invoiced {amount}. It was not credited: check the payment "
    "in Crypto Pay, and credit it by hand if it is right."
)
WITHDRAWAL_REQUESTED = (
    "🛡 New withdrawal request #{id} from {name} (id <code>{telegram_id}</code>): {amount}."
)
WITHDRAWAL_APPROVED = (
    "✅ Your withdrawal #{id} of {amount} to <code>{destination}</code> was approved and sent."
)
WITHDRAWAL_REJECTED = (
    "✖️ Your withdrawal #{id} of {amount} was rejected: <i>{note}</i>\n"
    "The amount is back in your available balance."
)
WITHDRAWAL_TIMED_OUT = (
    "✖️ Your withdrawal #{id} of {amount} was not decided in time and is cancelled.\n"
    "The amount is back in your available balance."
)
SOMEONE = Who("someone", 0)

Message = tuple[int, str, InlineKeyboardMarkup | None]


# What a reminder asks for: the steps that move a deal on (not cancelling it).
REMINDED_ACTIONS = {Action.ACCEPT: "accept it", Action.FUND: "fund it"}


def reminded_actions(deal: DealView, user_id: int) -> list[Action]:
    """What `user_id` would be reminded to do on `deal` now (nothing: no reminder)."""
    return [action for action in allowed_actions(deal, user_id) if action in REMINDED_ACTIONS]


def reminder_headline(deal: DealView, actions: list[Action], now: datetime) -> str:
    hours = max(1, math.ceil((deal.deadline_at - now).total_seconds() / 3600))
    what = " and ".join(REMINDED_ACTIONS[action] for action in actions)
    return f"⏰ Reminder: this deal expires in {hours} h unless you {what}."


class Gone(LookupError):
    """The deal or withdrawal a notification is about does not exist."""


class Obsolete(LookupError):
    """What the notification says is no longer true (a reminder, the deal moved on)."""


class Outbox:
    def __init__(
        self,
        bot: Bot,
        services: Services,
        signer: Signer,
        runtime: RuntimeSettings,
        metrics: Metrics | None = None,
        batch: int = 100,
    ) -> None:
        self.bot = bot
        self.services = services
        self.currencies = services.ctx.currencies
        self.signer = signer
        self.metrics = metrics
        self.batch = batch
        self.interval = runtime.outbox_interval_seconds
        self.retry = timedelta(seconds=runtime.outbox_retry_seconds)
        self.retry_max = timedelta(seconds=runtime.outbox_retry_max_seconds)
        self.attempts = runtime.outbox_attempts
        self.lease = timedelta(seconds=runtime.outbox_lease_seconds)
        self._results: dict[int, tuple[NotificationStatus, str | None]] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- the handler's attempt --------------------------------------------------------

    async def send(
        self,
        notices: Iterable[Notice],
        *subjects: DealView | WithdrawalView | DepositView,
        actor: UserSnapshot | None = None,
    ) -> int:
        """Send `notices` now, rendered from what the caller holds; the number sent.

        What fails here stays in the outbox for the worker."""
        notices = tuple(notices)
        if not notices:
            return 0
        known = Subjects(
            deals={s.id: s for s in subjects if isinstance(s, DealView)},
            withdrawals={s.id: s for s in subjects if isinstance(s, WithdrawalView)},
            actors={actor.id: Who(texts.name_of(actor), actor.telegram_id)} if actor else {},
            deposits={s.id: s for s in subjects if isinstance(s, DepositView)},
        )
        return await self._deliver(notices, known, "direct")

    # -- the worker -------------------------------------------------------------------

    async def run_once(self) -> int:
        """Record results so far, then claim and send what is due; the number sent."""
        await self.flush()
        sent = 0
        while not self._stop.is_set():
            notices = await self.services.outbox.claim_due(self.batch, self.lease)
            if not notices:
                break
            # Half the lease for sending, the other half for a send in flight
            # and the record: rows are never still ours when another worker
            # may claim them.
            until = time.monotonic() + self.lease.total_seconds() / 2
            subjects = await self.services.outbox.subjects(notices)
            sent += await self._deliver(notices, subjects, "worker", until)
            await self.flush()
            if len(notices) < self.batch:
                break
        return sent

    async def flush(self) -> int:
        """Record the results gathered since the last flush (one statement)."""
        if not self._results:
            return 0
        results, self._results = self._results, {}
        try:
            await self.services.outbox.mark(results, self.retry, self.retry_max)
        except Exception:
            log.warning(
                "recording %d notification results failed; kept for the next tick",
                len(results),
                exc_info=True,
            )
            for key, value in results.items():
                self._results.setdefault(key, value)
            return 0
        return len(results)

    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(
            every(self.interval, self._stop, self.run_once, "the outbox worker"), name="outbox"
        )

    async def stop(self) -> None:
        """Let a running batch finish, then record every result gathered."""
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()

    # -- sending ----------------------------------------------------------------------

    async def _deliver(
        self,
        notices: Iterable[Notice],
        subjects: Subjects,
        path: str,
        until: float = math.inf,
    ) -> int:
        sent = 0
        for notice in notices:
            if time.monotonic() > until:
                # Out of lease: handed back, due again after its backoff.
                self._results[notice.id] = (NotificationStatus.PENDING, LEASE_RAN_OUT)
                continue
            result = await self._deliver_one(notice, subjects, path)
            self._results[notice.id] = result
            if self.metrics is not None:
                self.metrics.notifications.labels(path, result[0].value).inc()
            sent += result[0] is NotificationStatus.SENT
        return sent

    async def _deliver_one(
        self, notice: Notice, subjects: Subjects, path: str
    ) -> tuple[NotificationStatus, str | None]:
        try:
            chat_id, text, markup = self.render(notice, subjects)
        except Gone as exc:
            log.warning("notification %d dropped: %s", notice.id, exc)
            return NotificationStatus.FAILED, str(exc)
        except Obsolete as exc:
            return NotificationStatus.OBSOLETE, str(exc)
        try:
            await self.bot.send_message(chat_id, text, reply_markup=markup)
        except Exception as exc:
            return self._refused(notice, chat_id, path, exc)
        return NotificationStatus.SENT, None

    def _refused(
        self, notice: Notice, chat_id: int, path: str, exc: Exception
    ) -> tuple[NotificationStatus, str | None]:
        """What becomes of a notification whose send raised `exc`."""
        if refuses_the_bot(exc):
            log.info("chat %s refuses notification %d: %s", chat_id, notice.id, exc)
            return NotificationStatus.UNDELIVERABLE, str(exc)
        if isinstance(exc, REFUSED_REQUEST):
            # Retrying would fail the same way, and the user would never know:
            # failed now, loudly, for someone to fix what we render.
            log.error(
                "notification %d (%s) to %s refused by Telegram (%s attempt %d): %s",
                notice.id,
                notice.kind,
                chat_id,
                path,
                notice.attempts,
                exc,
            )
            return NotificationStatus.FAILED, str(exc)
        # Telegram down, a timeout, a 429 past its limit, a 404 or 401 (a wrong
        # API address or token, being fixed perhaps): tried again later.
        given_up = path == "worker" and notice.attempts >= self.attempts
        log.log(
            logging.WARNING if given_up else logging.INFO,
            "notification %d to %s not sent (%s attempt %d): %s",
            notice.id,
            chat_id,
            path,
            notice.attempts,
            exc,
        )
        status = NotificationStatus.FAILED if given_up else NotificationStatus.PENDING
        return status, f"{type(exc).__name__}: {exc}"

    # -- rendering --------------------------------------------------------------------

    def render(self, notice: Notice, subjects: Subjects) -> Message:
        """The chat, text and buttons of `notice`, from the deal or withdrawal as
        `subjects` hold it."""
        kind = NotificationKind(notice.kind)
        who = subjects.actors.get(notice.actor_id or 0, SOMEONE)
        name = escape(who.name)
        if notice.deposit_id is not None:
            deposit = subjects.deposits.get(notice.deposit_id)
            if deposit is None:
                raise Gone(f"deposit {notice.deposit_id} does not exist")
            return self._deposit(notice, kind, deposit, who)
        if notice.withdrawal_id is not None:
            withdrawal = subjects.withdrawals.get(notice.withdrawal_id)
            if withdrawal is None:
                raise Gone(f"withdrawal {notice.withdrawal_id} does not exist")
            return self._withdrawal(notice, kind, withdrawal, who)
        deal = subjects.deals.get(notice.escrow_id or 0)
        if deal is None:
            raise Gone(f"deal {notice.escrow_id} does not exist")
        reason = f"\nReason: <i>{escape(notice.note)}</i>" if notice.note else ""
        if kind is NotificationKind.DISPUTE_OPENED:
            headline = DISPUTE_OPENED.format(name=name) + reason
            return (
                notice.chat_id,
                texts.deal_card(deal, None, self.currencies, headline),
                keyboards.admin_deal_keyboard(deal),
            )
        if kind is NotificationKind.REMIND:
            actions = reminded_actions(deal, notice.user_id or 0)
            if deal.status != notice.note or not actions:
                raise Obsolete(f"deal {deal.code} is {deal.status} now, not {notice.note}")
            headline = reminder_headline(deal, actions, datetime.now(UTC))
        elif kind is NotificationKind.RESOLVE:
            headline = RESOLVED.get(DealStatus(deal.status), RESOLVED[DealStatus.RELEASED])
        elif kind is NotificationKind.CANCEL and deal.status == DealStatus.REFUNDED:
            headline = CANCELLED_AND_REFUNDED.format(name=name)
        else:
            role = "buyer" if notice.user_id == deal.buyer_id else "seller"
            headline = TOLD[kind].format(name=name, role=role) + reason
        return notice.chat_id, *self.card(deal, notice.user_id, notice.chat_id, headline)

    def card(
        self, deal: DealView, user_id: int | None, chat_id: int, headline: str
    ) -> tuple[str, InlineKeyboardMarkup]:
        """A party's card of `deal` under `headline`, with the buttons they may press."""
        text = texts.deal_card(deal, user_id, self.currencies, headline)
        if user_id is None:
            return text, keyboards.admin_deal_keyboard(deal)
        amount = self.currencies[deal.currency].format(deal.amount)
        return text, keyboards.deal_keyboard(deal, user_id, chat_id, self.signer, amount)

    def _deposit(
        self, notice: Notice, kind: NotificationKind, deposit: DepositView, who: Who
    ) -> Message:
        amount = self.currencies[deposit.currency].format(deposit.amount)
        kb = InlineKeyboardBuilder()
        if kind is NotificationKind.DEPOSIT_MISMATCH:
            kb.button(text="🛡 Admin", callback_data=Nav(to="admin"))
            paid = f"{deposit.paid_amount or '?'} {deposit.paid_asset or '?'}"
            text = DEPOSIT_MISMATCH.format(
                id=deposit.id,
                invoice=deposit.invoice_id,
                name=escape(who.name),
                telegram_id=who.telegram_id,
                paid=escape(paid),
                amount=amount,
            )
            return notice.chat_id, text, kb.as_markup()
        kb.button(text="👛 Wallet", callback_data=Nav(to="wallet"))
        money = self.currencies[deposit.currency]
        text = DEPOSIT_CREDITED.format(amount=money.format(deposit.amount - deposit.fee))
        if deposit.fee:
            text += DEPOSIT_FEE.format(paid=amount, fee=money.format(deposit.fee))
        return notice.chat_id, text, kb.as_markup()

    def _withdrawal(
        self, notice: Notice, kind: NotificationKind, withdrawal: WithdrawalView, who: Who
    ) -> Message:
        amount = self.currencies[withdrawal.currency].format(withdrawal.amount)
        kb = InlineKeyboardBuilder()
        if kind is NotificationKind.WITHDRAWAL_REQUESTED:
            if withdrawal.status != WithdrawalStatus.PENDING:  # paid unattended, say
                raise Obsolete(f"withdrawal {withdrawal.id} is {withdrawal.status} now")
            kb.button(text="🛡 Admin", callback_data=Nav(to="admin"))
            text = WITHDRAWAL_REQUESTED.format(
                id=withdrawal.id,
                name=escape(who.name),
                telegram_id=who.telegram_id,
                amount=amount,
            )
            return notice.chat_id, text, kb.as_markup()
        if kind is NotificationKind.PAYOUT_FAILED:
            kb.button(text="🛡 Admin", callback_data=Nav(to="admin"))
            text = PAYOUT_FAILED.format(
                id=withdrawal.id, amount=amount, reason=escape(notice.note or "refused")
            )
            return notice.chat_id, text, kb.as_markup()
        kb.button(text="🧾 My withdrawals", callback_data=WalletMenu(screen="withdrawals"))
        kb.button(text="👛 Wallet", callback_data=Nav(to="wallet"))
        if kind is NotificationKind.WITHDRAWAL_PAID:
            text = WITHDRAWAL_PAID.format(id=withdrawal.id, amount=amount)
            return notice.chat_id, text, kb.as_markup()
        if kind is NotificationKind.WITHDRAWAL_FAILED:
            text = WITHDRAWAL_FAILED.format(id=withdrawal.id, amount=amount)
            return notice.chat_id, text, kb.as_markup()
        if withdrawal.status == WithdrawalStatus.APPROVED:
            template = WITHDRAWAL_APPROVED
        elif notice.actor_id is None:
            template = WITHDRAWAL_TIMED_OUT
        else:
            template = WITHDRAWAL_REJECTED
        text = template.format(
            id=withdrawal.id,
            amount=amount,
            destination=escape(withdrawal.destination),
            note=escape(withdrawal.note or ""),
        )
        return notice.chat_id, text, kb.as_markup()
