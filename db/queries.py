"""Hot-path reads as Core statements, compiled once and cached by SQLAlchemy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import users, wallets

# User and wallets in one round trip: one row per wallet (or one row with NULL
# wallet columns for a user without wallets).
SNAPSHOT_BY_TELEGRAM_ID = (
    select(
        users.c.id,
        users.c.telegram_id,
        users.c.username,
        users.c.first_name,
        users.c.last_name,
        users.c.language_code,
        users.c.status,
        users.c.is_admin,
        users.c.version,
        wallets.c.currency,
        wallets.c.available,
        wallets.c.held,
    )
    .select_from(users.outerjoin(wallets, wallets.c.user_id == users.c.id))
    .where(users.c.telegram_id == bindparam("telegram_id"))
    .order_by(wallets.c.currency)
)


async def load_snapshot_rows(connection: AsyncConnection, telegram_id: int) -> Sequence[Row[Any]]:
    """The rows of one user's snapshot; empty when the user is unknown."""
    result = await connection.execute(SNAPSHOT_BY_TELEGRAM_ID, {"telegram_id": telegram_id})
    return result.all()
