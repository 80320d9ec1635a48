"""The deals' clocks (`rules.TIMERS`): expiry past the deadline, the automatic
release of a delivered deal, and the reminders before each clock runs out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.services.base import Outcome
from bot.services.deals.steps import (
    DealSteps,
    changed_event,
)
from bot.services.views import DealView, deal_view
from db import UnitOfWork
from db.events import Event
from db.models import (
    DealStatus,
    NotificationKind,
)
from db.sql.clocks import CLOCKS_NEARING, EXPIRE_DUE, LOCK_DUE_RELEASE, NEARING_DEADLINE
from db.sql.notifications import Notice, decode_notices

AUTO_RELEASED = "released automatically: neither released nor disputed in time"
# The buyer is told a delivery deadline passed if it passed this recently
# (a jobs loop that was down longer does not tell of old ones).
OVERDUE_NOTICE_FOR = timedelta(days=1)
OVERDUE = "overdue"


def reminder_note(status: DealStatus, mark: float | str) -> str:
    """A clock reminder's note: the deal's status, then which reminder ("24h",
    "overdue"); one is written per deal, party and note."""
    return f"{status.value}:{mark if isinstance(mark, str) else f'{mark:g}h'}"


def reminder_due(left: timedelta, marks: tuple[float, ...], clock: float) -> float | None:
    """The reminder due with `left` to go: the nearest mark (hours before the
    clock runs out) already reached, of the marks shorter than the clock itself."""
    reached = [m for m in marks if m < clock and left <= timedelta(hours=m)]
    return min(reached) if reached else None


class DealTimers(DealSteps):
    async def expire_due(self, limit: int = 500) -> Outcome[list[DealView]]:
        """Expire deals not accepted and funded by their deadline (one batch).

        Safe to run on every replica at once: rows another replica is expiring
        are skipped, not waited for."""

        async def work(uow: UnitOfWork) -> list[DealView]:
            rows = (
                await uow.execute(
                    EXPIRE_DUE, {"limit": limit, **self._notify(NotificationKind.EXPIRE, None)}
                )
            ).all()
            deals = [deal_view(row) for row in rows]
            if rows:  # every row carries all the batch's notifications
                uow.outbox(*decode_notices(rows[0].notices))
            uow.record(*(changed_event(deal) for deal in deals))
            return deals

        return await self.transaction(work)

    async def nearing_deadline(self, within_seconds: float, limit: int = 500) -> list[DealView]:
        """Deals still waiting to be accepted or funded whose deadline is within
        `within_seconds` (for reminders; one read, no transaction)."""
        async with self.ctx.db.reader.connect() as conn:
            rows = await conn.execute(
                NEARING_DEADLINE, {"within": timedelta(seconds=within_seconds), "limit": limit}
            )
            return [deal_view(row) for row in rows]

    # -- the automatic release ----------------------------------------------------

    async def release_next_due(self) -> Outcome[DealView | None]:
        """Release the next delivered deal whose release clock ran out, as the
        buyer's release would (held → the seller less the fee, both parties
        told); None when no such deal is left that nobody else holds.

        One short transaction per deal: the deal row is locked with SKIP
        LOCKED (a buyer's release or dispute in flight, or another replica's
        job, keeps it), so every replica may run this at once."""

        async def work(uow: UnitOfWork) -> DealView | None:
            row = (await uow.execute(LOCK_DUE_RELEASE, {"actor_id": None})).first()
            if row is None:
                return None
            deal = deal_view(row)
            changed = await self._transition(
                uow, deal, None, DealStatus.RELEASED, AUTO_RELEASED, notify=NotificationKind.RELEASE
            )
            await self._move_money(uow, deal, DealStatus.RELEASED)
            uow.record(changed_event(changed))
            return changed

        return await self.transaction(work)

    async def release_due(self, limit: int = 500) -> Outcome[list[DealView]]:
        """Release up to `limit` deals whose release clock ran out, each in its
        own transaction (`release_next_due`); what all of them caused."""
        released: list[DealView] = []
        events: list[Event] = []
        notices: list[Notice] = []
        while len(released) < limit:
            outcome = await self.release_next_due()
            if outcome.value is None:
                break
            released.append(outcome.value)
            events += outcome.events
            notices += outcome.notices
        return Outcome(released, tuple(events), tuple(notices))

    # -- reminders of the clocks of funded deals ------------------------------------

    async def clock_reminders(
        self, now: datetime | None = None, limit: int = 500
    ) -> list[tuple[int, int, DealView, str]]:
        """Who is due a reminder of a funded deal's clock now, as (chat, user,
        deal, note): the seller before the delivery deadline, the buyer when it
        has passed (they may cancel for a refund), the buyer before the
        automatic release. One read; the outbox keeps one per deal, party and
        note however often this runs."""
        settings = self.settings
        release_marks = settings.release_reminder_hours if settings.auto_release_after else ()
        deliver_marks = settings.delivery_reminder_hours if settings.deliver_within else ()
        params = {
            "release_within": timedelta(hours=max(release_marks, default=0)),
            "deliver_within": timedelta(hours=max(deliver_marks, default=0)),
            "overdue_for": OVERDUE_NOTICE_FOR if settings.deliver_within else timedelta(0),
            "limit": limit,
        }
        async with self.ctx.db.reader.connect() as conn:
            deals = [deal_view(row) for row in await conn.execute(CLOCKS_NEARING, params)]
        now = now or datetime.now(UTC)
        due = []
        for deal in deals:
            reminded = self._clock_reminder(deal, now, release_marks, deliver_marks)
            if reminded is not None and reminded[0] and reminded[1]:
                chat, user, note = reminded
                due.append((chat, user, deal, note))
        return due

    def _clock_reminder(
        self,
        deal: DealView,
        now: datetime,
        release_marks: tuple[float, ...],
        deliver_marks: tuple[float, ...],
    ) -> tuple[int | None, int | None, str] | None:
        """(chat, user, note) of the reminder `deal` is due now, if any."""
        status = DealStatus(deal.status)
        buyer = (deal.buyer_telegram_id, deal.buyer_id)
        if status is DealStatus.DELIVERED and deal.release_due_at is not None:
            left = deal.release_due_at - now
            mark = reminder_due(left, release_marks, self.settings.auto_release_after_hours)
            return None if mark is None else (*buyer, reminder_note(status, mark))
        if status is DealStatus.FUNDED and deal.deliver_due_at is not None:
            left = deal.deliver_due_at - now
            if left <= timedelta(0):  # the buyer may cancel for a refund now
                return (*buyer, reminder_note(status, OVERDUE))
            mark = reminder_due(left, deliver_marks, self.settings.deliver_within_hours)
            seller = (deal.seller_telegram_id, deal.seller_id)
            return None if mark is None else (*seller, reminder_note(status, mark))
        return None
