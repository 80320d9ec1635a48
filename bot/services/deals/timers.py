"""The deals' clock: expiry past the deadline and the reminders before it."""

from __future__ import annotations

from datetime import timedelta

from bot.services.base import Outcome
from bot.services.deals.steps import (
    DealSteps,
    changed_event,
)
from bot.services.views import DealView, deal_view
from db import UnitOfWork
from db.models import (
    NotificationKind,
)
from db.sql.deals import EXPIRE_DUE, NEARING_DEADLINE
from db.sql.notifications import decode_notices


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
