"""Anti-spam: how many deals one user may open in an hour, and how many of them
may be addressed to strangers (people they never had a funded deal with) in a
day ([escrow] deals_per_hour, strangers_per_day; 0: no limit).

The count is Postgres's: the creator's deals in the window, read through an
index on (creator_id, created_at), after the creator's row is locked in the
same transaction (two creates at once are counted one after the other). It is
the authority because the deals are: a Redis counter could be lost, restored
older or fail, and would then let more through, or refuse someone under the
limit; this costs one statement in a transaction that is being made anyway.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.services.deals.steps import DealSteps
from bot.services.errors import Paced, Refusal
from db import UnitOfWork
from db.sql.clocks import CREATION_PACE

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# A limit that is off looks at no deal: a NULL window matches none. (An empty
# one would still match a deal committed by a transaction that started after
# this one, whose created_at is later than this transaction's now().)
NO_WINDOW = None


class DealPace(DealSteps):
    async def _pace(
        self,
        uow: UnitOfWork,
        creator_id: int,
        other_id: int | None,
        *,
        addressed: bool,
    ) -> bool:
        """Refuse a new deal over the creator's limits (`Paced`, saying when
        one is allowed again); else whether it is addressed to a stranger:
        anyone but the user `other_id` if the creator had a funded deal with
        them (an invitation to an id or @username not on the bot always is).
        The creator's row must be locked already (`_require_active(lock=True)`)."""
        deals, strangers = self.settings.deals_per_hour, self.settings.strangers_per_day
        if not (deals or strangers):
            return False
        params: dict[str, Any] = {
            "creator_id": creator_id,
            "other_id": other_id,
            "addressed": addressed,
            "deal_window": HOUR if deals else NO_WINDOW,
            "deal_limit": max(deals, 1),
            "stranger_window": DAY if strangers else NO_WINDOW,
            "stranger_limit": max(strangers, 1),
        }
        pace = (await uow.execute(CREATION_PACE, params)).one()
        if pace.deals_until is not None:
            raise Paced(
                Refusal.TOO_MANY_DEALS,
                limit=deals,
                until=pace.deals_until,
                wait=pace.deals_until - pace.now,
            )
        if pace.to_stranger and pace.strangers_until is not None:
            raise Paced(
                Refusal.TOO_MANY_STRANGERS,
                limit=strangers,
                until=pace.strangers_until,
                wait=pace.strangers_until - pace.now,
            )
        return bool(pace.to_stranger)
