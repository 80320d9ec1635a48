"""Reads beyond the caller's snapshot: deal lists, admin queues and stats.

Each is one statement of `db.sql.reads` on the hot-statement registry's
indexes (`db.sql.hot`), except the admin stats, which count the whole table.
Each only shows and decides nothing, so each may be served by a hot standby
(`Database.read`: the primary for whoever just wrote, db/standby.py).
The admin reads take the admin as their actor and check, in that statement,
that the admin's own row is an active admin (`read_as_admin`): a cached
snapshot is not enough.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import msgspec
from sqlalchemy import Executable, Row

from bot.services.base import Actor, Service
from bot.services.errors import NotAllowed, Refusal
from bot.services.views import WithdrawalView
from db.driver import Statements
from db.models import FINAL_DEAL_STATUSES, FUNDED_DEAL_STATUSES, OPEN_DEAL_STATUSES, DealStatus
from db.sql.reads import (
    ADMIN_WITHDRAWAL,
    FIRST_PAGE,
    MY_DEALS_PAGE,
    OPEN_DISPUTES,
    PAGE_SIZE,
    PENDING_WITHDRAWALS,
    STATS,
    USER_WITHDRAWALS,
)
from db.standby import Work

DealFilter = Literal["active", "action", "finished"]

_UNFINISHED = [s.value for s in OPEN_DEAL_STATUSES + FUNDED_DEAL_STATUSES]
_FINISHED = [s.value for s in FINAL_DEAL_STATUSES]
# (buyer's statuses, seller's statuses, only deals awaiting the user, with
# the deals the user is invited to)
FILTERS: dict[str, tuple[list[str], list[str], bool, bool]] = {
    "active": (_UNFINISHED, _UNFINISHED, False, True),
    # what waits for me: accept an invitation, fund, release / deliver
    "action": (
        [DealStatus.PENDING, DealStatus.ACCEPTED, DealStatus.DELIVERED],
        [DealStatus.PENDING, DealStatus.FUNDED],
        True,
        True,
    ),
    "finished": (_FINISHED, _FINISHED, False, False),
}


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
    # The code of the invitation addressed to the viewer, for a deal they are
    # invited to and not a party to yet.
    invitation: str | None = None


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


async def read_as_admin(
    conn: Statements, statement: Executable, admin: Actor, params: dict[str, Any]
) -> list[Row[Any]]:
    """The rows of an admin-only statement (`db.sql.reads.admin_only`), or
    NotAllowed unless `admin`'s own row is an active admin."""
    rows = (await conn.execute(statement, {**params, "admin_id": admin.id})).all()
    if not rows or not rows[0].admin_ok:
        raise NotAllowed(Refusal.ADMINS_ONLY)
    # an admin with nothing to see gets the gate's row alone, all NULLs after admin_ok
    return [row for row in rows if any(value is not None for value in row[1:])]


def rows_of(statement: Executable, params: dict[str, Any]) -> Work[list[Row[Any]]]:
    """A read of `statement`'s rows, for `Database.read`."""

    async def read(conn: Statements) -> list[Row[Any]]:
        return list((await conn.execute(statement, params)).all())

    return read


def admin_rows(statement: Executable, admin: Actor, params: dict[str, Any]) -> Work[list[Row[Any]]]:
    """`read_as_admin`, for `Database.read`."""
    return functools.partial(read_as_admin, statement=statement, admin=admin, params=params)


class ReadService(Service):
    async def deals_page(
        self,
        viewer: Actor,
        kind: DealFilter,
        before: int | None = None,
        limit: int = PAGE_SIZE,
        *,
        username: str | None = None,
    ) -> DealPage:
        """A page of the viewer's deals; in the active and waiting lists, also
        the deals an invitation waits for them in: addressed to their Telegram
        id, or to `username` (the @username they hold now, as Telegram reported
        it with this update) while nobody has claimed it."""
        buyer_statuses, seller_statuses, awaiting_me, invited = FILTERS[kind]
        params = {
            "user_id": viewer.id,
            "telegram_id": viewer.telegram_id,
            "username": username.lower() if username else None,
            "invited": invited,
            "buyer_statuses": [str(s) for s in buyer_statuses],
            "seller_statuses": [str(s) for s in seller_statuses],
            "awaiting_me": awaiting_me,
            "before_id": before or FIRST_PAGE,
            "limit": limit + 1,  # one more tells whether there is a next page
        }
        rows = await self.ctx.db.read(rows_of(MY_DEALS_PAGE, params), viewer.telegram_id)
        items = tuple(_item(row._mapping) for row in rows[:limit])
        return DealPage(items, items[-1].id if len(rows) > limit else None)

    async def open_disputes(self, admin: Actor, limit: int = PAGE_SIZE) -> list[DealListItem]:
        read = admin_rows(OPEN_DISPUTES, admin, {"limit": limit})
        rows = await self.ctx.db.read(read, admin.telegram_id)
        return [_item(row._mapping) for row in rows]

    async def pending_withdrawals(
        self, admin: Actor, limit: int = PAGE_SIZE
    ) -> list[WithdrawalView]:
        """Every user's pending withdrawal with its destination: admins only."""
        read = admin_rows(PENDING_WITHDRAWALS, admin, {"limit": limit})
        rows = await self.ctx.db.read(read, admin.telegram_id)
        fields = WithdrawalView.__struct_fields__
        return [WithdrawalView(**{name: row._mapping[name] for name in fields}) for row in rows]

    async def withdrawal(self, admin: Actor, withdrawal_id: int) -> WithdrawalView | None:
        """One withdrawal, whatever its status, with its destination: admins only."""
        read = admin_rows(ADMIN_WITHDRAWAL, admin, {"id": withdrawal_id})
        rows = await self.ctx.db.read(read, admin.telegram_id)
        fields = WithdrawalView.__struct_fields__
        return WithdrawalView(**{name: rows[0]._mapping[name] for name in fields}) if rows else None

    async def withdrawals_of(self, user: Actor, limit: int = 5) -> list[WithdrawalView]:
        read = rows_of(USER_WITHDRAWALS, {"user_id": user.id, "limit": limit})
        rows = await self.ctx.db.read(read, user.telegram_id)
        return [WithdrawalView(**row._mapping) for row in rows]

    async def stats(self, admin: Actor) -> Stats:
        [totals] = await self.ctx.db.read(admin_rows(STATS, admin, {}), admin.telegram_id)
        return Stats(
            totals.users,
            totals.deals_by_status,
            msgspec.convert(totals.released, tuple[CurrencyVolume, ...]),
            totals.pending_withdrawals,
        )
