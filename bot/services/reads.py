"""Reads beyond the caller's snapshot: deal lists, admin queues and stats.

Each is one statement on the hot-query registry's indexes (db/queries.py),
except the admin stats, which count the whole table and are for admins only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import msgspec
from sqlalchemy import text

from bot.services.base import Actor, Service
from bot.services.views import WithdrawalView
from db.models import FINAL_DEAL_STATUSES, FUNDED_DEAL_STATUSES, OPEN_DEAL_STATUSES, DealStatus
from db.queries import (
    FIRST_PAGE,
    MY_DEALS_PAGE,
    OPEN_DISPUTES,
    PAGE_SIZE,
    PENDING_WITHDRAWALS,
    USER_WITHDRAWALS,
)

DealFilter = Literal["active", "action", "finished"]

_UNFINISHED = [s.value for s in OPEN_DEAL_STATUSES + FUNDED_DEAL_STATUSES]
_FINISHED = [s.value for s in FINAL_DEAL_STATUSES]
# (buyer's statuses, seller's statuses, only deals awaiting the user)
FILTERS: dict[str, tuple[list[str], list[str], bool]] = {
    "active": (_UNFINISHED, _UNFINISHED, False),
    # what waits for me: accept an invitation, fund, release / deliver
    "action": (
        [DealStatus.PENDING, DealStatus.ACCEPTED, DealStatus.DELIVERED],
        [DealStatus.PENDING, DealStatus.FUNDED],
        True,
    ),
    "finished": (_FINISHED, _FINISHED, False),
}

STATS = text("""
SELECT (SELECT count(*) FROM users) AS users,
       (SELECT count(*) FROM withdrawals WHERE status = 'pending') AS pending_withdrawals
""")
DEALS_BY_STATUS = text("SELECT status, count(*) AS deals FROM escrows GROUP BY status")
VOLUME = text("""
SELECT e.currency, count(*) AS deals, CAST(sum(e.amount) AS bigint) AS volume,
       coalesce((SELECT fees FROM platform_accounts p WHERE p.currency = e.currency), 0) AS fees
FROM escrows e WHERE e.status = 'released' GROUP BY e.currency ORDER BY e.currency
""")


class DealListItem(msgspec.Struct, frozen=True):
    id: int
    code: str
    status: str
    amount: int
    currency: str
    creator_id: int
    buyer_id: int | None
    seller_id: int | None
    created_at: datetime
    description: str
    counterparty: str | None = None  # the other party, as the viewer sees it


class DealPage(msgspec.Struct, frozen=True):
    items: tuple[DealListItem, ...]
    # Cursor of the next page, None on the last one.
    next_before: int | None


class CurrencyVolume(msgspec.Struct, frozen=True):
    currency: str
    deals: int
    volume: int
    fees: int


class Stats(msgspec.Struct, frozen=True):
    users: int
    deals_by_status: dict[str, int]
    released: tuple[CurrencyVolume, ...]
    pending_withdrawals: int


def _item(row: Mapping[str, Any]) -> DealListItem:
    return DealListItem(**{name: row.get(name) for name in DealListItem.__struct_fields__})


class ReadService(Service):
    async def deals_page(
        self, viewer: Actor, kind: DealFilter, before: int | None = None, limit: int = PAGE_SIZE
    ) -> DealPage:
        buyer_statuses, seller_statuses, awaiting_me = FILTERS[kind]
        params = {
            "user_id": viewer.id,
            "buyer_statuses": [str(s) for s in buyer_statuses],
            "seller_statuses": [str(s) for s in seller_statuses],
            "awaiting_me": awaiting_me,
            "before_id": before or FIRST_PAGE,
            "limit": limit + 1,  # one more tells whether there is a next page
        }
        async with self.ctx.db.reader.connect() as conn:
            rows = (await conn.execute(MY_DEALS_PAGE, params)).all()
        items = tuple(_item(row._mapping) for row in rows[:limit])
        return DealPage(items, items[-1].id if len(rows) > limit else None)

    async def open_disputes(self, limit: int = PAGE_SIZE) -> list[DealListItem]:
        async with self.ctx.db.reader.connect() as conn:
            rows = (await conn.execute(OPEN_DISPUTES, {"limit": limit})).all()
        return [_item(row._mapping) for row in rows]

    async def pending_withdrawals(self, limit: int = PAGE_SIZE) -> list[WithdrawalView]:
        async with self.ctx.db.reader.connect() as conn:
            rows = (await conn.execute(PENDING_WITHDRAWALS, {"limit": limit})).all()
        return [WithdrawalView(**row._mapping) for row in rows]

    async def withdrawals_of(self, user: Actor, limit: int = 5) -> list[WithdrawalView]:
        async with self.ctx.db.reader.connect() as conn:
            rows = (
                await conn.execute(USER_WITHDRAWALS, {"user_id": user.id, "limit": limit})
            ).all()
        return [WithdrawalView(**row._mapping) for row in rows]

    async def stats(self) -> Stats:
        async with self.ctx.db.reader.connect() as conn:
            totals = (await conn.execute(STATS)).one()
            by_status = {row.status: row.deals for row in await conn.execute(DEALS_BY_STATUS)}
            released = tuple(
                CurrencyVolume(row.currency, row.deals, row.volume, row.fees)
                for row in await conn.execute(VOLUME)
            )
        return Stats(totals.users, by_status, released, totals.pending_withdrawals)
