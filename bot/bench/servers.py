"""What the servers did while a mode was measured, read from their own
counters before and after the window: Redis's commands and network bytes
(every client's: the listeners' pub/sub traffic included), Postgres's WAL
bytes and commits. These are the figures a capacity plan scales from
(docs/scaling.md). Both counters are server-wide: run the benchmark on a quiet
machine, or they count other clients too."""

from __future__ import annotations

from typing import Any

import asyncpg
from redis.asyncio import Redis

from bot.bench import data as bench_data
from db.engine import DatabaseSettings
from db.sql.ops import WAL_AND_COMMITS

REDIS_STATS = ("total_commands_processed", "total_net_input_bytes", "total_net_output_bytes")


class ServerTally:
    def __init__(self, settings: DatabaseSettings, redis: Redis | None) -> None:
        self.settings = settings
        self.redis = redis
        self._pg: asyncpg.Connection | None = None

    async def read(self) -> dict[str, int]:
        if self._pg is None:
            self._pg = await bench_data._connect(self.settings)
        out: dict[str, int] = {}
        if self.redis is not None:
            stats = await self.redis.info("stats")
            out.update({key: int(stats[key]) for key in REDIS_STATS})
        row = await self._pg.fetchrow(WAL_AND_COMMITS)
        out["wal_bytes"], out["commits"] = int(row["wal"]), int(row["xact_commit"])
        return out

    async def aclose(self) -> None:
        if self._pg is not None:
            await self._pg.close()
            self._pg = None


def server_figures(
    before: dict[str, int], after: dict[str, int], updates: int, writes: int
) -> dict[str, Any]:
    """Totals over the window, per update, and WAL per write (full-page images
    after a checkpoint included: they are most of it on a big table)."""
    d = {key: after[key] - before[key] for key in after if key in before}

    def per(key: str, count: int) -> float | None:
        return round(d[key] / count, 1) if key in d and count else None

    return {
        "totals": d,
        "redis_commands_per_update": per("total_commands_processed", updates),
        "redis_bytes_in_per_update": per("total_net_input_bytes", updates),
        "redis_bytes_out_per_update": per("total_net_output_bytes", updates),
        "wal_bytes_per_write": per("wal_bytes", writes),
        # every transaction of the database: a read in AUTOCOMMIT is one too
        "transactions_per_update": per("commits", updates),
    }
