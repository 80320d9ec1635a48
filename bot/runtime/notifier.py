"""The notification worker: what the outbox holds, sent (what each one says
and its buttons: `bot/telegram/notices.py`).

A use case writes its notifications in its own transaction (`db/sql/notifications.py`)
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
from collections.abc import Iterable, Mapping
from datetime import timedelta

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
)

from bot.config import RuntimeSettings
from bot.ops.metrics import Metrics
from bot.runtime.send_rate import SendDeferred, deferrable
from bot.runtime.ticks import every
from bot.services import Services
from bot.services.deals.evidence import EvidenceView
from bot.services.deposits import DepositView
from bot.services.notifications import Subjects
from bot.services.views import DealView, WithdrawalView
from bot.telegram.disputes import send_evidence
from bot.telegram.keyboards import Signer
from bot.telegram.notices import Gone, Notices, Obsolete, who_is
from bot.telegram.reputation import SnapshotReader, records_for
from cache.snapshots import UserSnapshot
from db.models import NotificationStatus
from db.sql.notifications import DEFERRED, Notice

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


class Outbox:
    def __init__(
        self,
        bot: Bot,
        services: Services,
        signer: Signer,
        runtime: RuntimeSettings,
        metrics: Metrics | None = None,
        batch: int = 100,
        snapshots: SnapshotReader | None = None,
    ) -> None:
        self.bot = bot
        self.services = services
        # Where the records a notification shows are read (the cache).
        self.snapshots = snapshots
        self.notices = Notices(services.ctx.currencies, signer)
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
        *subjects: DealView | WithdrawalView | DepositView | EvidenceView,
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
            actors={actor.id: who_is(actor)} if actor else {},
            deposits={s.id: s for s in subjects if isinstance(s, DepositView)},
            evidence={s.id: s for s in subjects if isinstance(s, EvidenceView)},
        )
        # the actor is whose record a party asked to accept or fund is shown, mostly
        mine = {actor.telegram_id: actor} if actor else {}
        records = await records_for(notices, known.deals, self.snapshots, mine)
        with deferrable():  # all in the outbox: one the budget would hold up is the worker's
            return await self._deliver(notices, known, "direct", records=records)

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
            records = await records_for(notices, subjects.deals, self.snapshots, {})
            sent += await self._deliver(notices, subjects, "worker", until, records)
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
        records: Mapping[int, UserSnapshot] | None = None,
    ) -> int:
        sent = 0
        for notice in notices:
            if time.monotonic() > until:
                # Out of lease: handed back, due again after its backoff.
                self._results[notice.id] = (NotificationStatus.PENDING, LEASE_RAN_OUT)
                continue
            result = await self._deliver_one(notice, subjects, path, records)
            self._results[notice.id] = result
            if self.metrics is not None:
                self.metrics.notifications.labels(path, result[0].value).inc()
            sent += result[0] is NotificationStatus.SENT
        return sent

    async def _deliver_one(
        self,
        notice: Notice,
        subjects: Subjects,
        path: str,
        records: Mapping[int, UserSnapshot] | None = None,
    ) -> tuple[NotificationStatus, str | None]:
        try:
            chat_id, text, markup = self.notices.render(notice, subjects, records)
        except Gone as exc:
            log.warning("notification %d dropped: %s", notice.id, exc)
            return NotificationStatus.FAILED, str(exc)
        except Obsolete as exc:
            return NotificationStatus.OBSOLETE, str(exc)
        evidence = self.notices.attachment(notice, subjects)
        try:
            if evidence is not None:  # the photo or document itself, under the text
                await send_evidence(self.bot, chat_id, evidence, text, markup)
            else:
                await self.bot.send_message(chat_id, text, reply_markup=markup)
        except Exception as exc:
            return self._refused(notice, chat_id, path, exc)
        return NotificationStatus.SENT, None

    def _refused(
        self, notice: Notice, chat_id: int, path: str, exc: Exception
    ) -> tuple[NotificationStatus, str | None]:
        """What becomes of a notification whose send raised `exc`."""
        if isinstance(exc, SendDeferred):  # the budget is the worker's to wait for
            log.info("notification %d to %s left to the outbox worker: %s", notice.id, chat_id, exc)
            return NotificationStatus.PENDING, DEFERRED
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
