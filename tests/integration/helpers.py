"""Reading the whole money state of the test database, to compare before/after."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from bot.services.views import DealView
from db import Database

STATE_QUERIES = {
    "wallets": "SELECT user_id, currency, available, held FROM wallets ORDER BY 1, 2",
    "deals": "SELECT id, status, version, buyer_id, seller_id, status_before_dispute"
    " FROM escrows ORDER BY id",
    "users": "SELECT id, version, status FROM users ORDER BY id",
    "ledger": "SELECT count(*) FROM ledger_entries",
    "history": "SELECT count(*) FROM deal_events",
    "invitations": "SELECT id, status, telegram_id FROM invitations ORDER BY id",
    "withdrawals": "SELECT id, status FROM withdrawals ORDER BY id",
    "fees": "SELECT currency, fees FROM platform_accounts ORDER BY 1",
}


async def world(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a use case could change."""
    async with database.engine.connect() as conn:
        return {
            name: [tuple(row) for row in await conn.execute(text(query))]
            for name, query in STATE_QUERIES.items()
        }


async def balance(database: Database, user_id: int, currency: str = "USDT") -> tuple[int, int]:
    """(available, held) of one wallet."""
    async with database.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT available, held FROM wallets WHERE user_id = :u AND currency = :c"),
                {"u": user_id, "c": currency},
            )
        ).one()
    return row.available, row.held


async def fees(database: Database, currency: str = "USDT") -> int:
    async with database.engine.connect() as conn:
        value = await conn.scalar(
            text("SELECT fees FROM platform_accounts WHERE currency = :c"), {"c": currency}
        )
    return value or 0


async def history(database: Database, deal: DealView) -> list[tuple[Any, ...]]:
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT actor_id, from_status, to_status, reason FROM deal_events"
                " WHERE escrow_id = :id ORDER BY id"
            ),
            {"id": deal.id},
        )
        return [tuple(row) for row in rows]


async def ledger(database: Database, key_prefix: str) -> list[tuple[Any, ...]]:
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT kind, account, user_id, amount FROM ledger_entries"
                " WHERE idempotency_key LIKE :k ORDER BY idempotency_key, leg"
            ),
            {"k": key_prefix + "%"},
        )
        return [tuple(row) for row in rows]
