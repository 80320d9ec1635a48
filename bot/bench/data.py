"""The benchmark's data set: a database of its own, loaded with COPY, reused.

Users, one wallet per configured currency and deals are generated in Python
(deterministic, no randomness) and streamed into Postgres with COPY while the
secondary indexes are off; the indexes are built afterwards, foreign keys are
not checked (the data is consistent by construction). What was loaded is kept
in `bench_dataset`; a later run with the same size reuses it.

Simulated user number i (1-based) is Telegram id TELEGRAM_BASE + i, named
"Bench i" (@bench_i, language "en"): exactly what `bot.bench.workload` sends, so a
preloaded user is never re-registered by an update.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from bot.bench.rows import (
    DEAL_COLUMNS,
    USER_COLUMNS,
    WALLET_COLUMNS,
    deal_rows,
    user_rows,
    wallet_rows,
)
from bot.ops import migrate
from db.engine import DatabaseSettings, build_engine
from db.sql.dataset import (
    DATASET,
    DATASET_TABLE,
    EMPTY_TABLES,
    INDEX_DEFINITIONS,
    NEWEST_DEAL_CODES,
    PRESENT_INDEXES,
    RECORD_DATASET,
    SECONDARY_INDEXES,
    SET_SEQUENCES,
)

DATA_VERSION = 1
# The seed's composite indexes (dropped and rebuilt around the "no_indexes" mode).
SEED_INDEXES = (
    "idx_escrow_buyer_status",
    "idx_escrow_seller_status",
    "idx_escrow_created_at",
    "idx_wallet_user_currency",
    "idx_invitation_telegram_status",
)
# Keeps wallet upserts (ON CONFLICT (user_id, currency)) working without the
# seed's index; with currency first it cannot serve a lookup by user.
WALLET_STAND_IN = "bench_wallet_currency_user"


@dataclass(frozen=True)
class DataSet:
    settings: DatabaseSettings
    users: int
    deals: int
    loaded: bool  # False: reused from an earlier run
    seconds: float


# -- loading -------------------------------------------------------------------------


async def _connect(settings: DatabaseSettings) -> asyncpg.Connection:
    url = settings.sqlalchemy_url
    return await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database,
        timeout=settings.connect_timeout_seconds,
    )


async def _load(settings: DatabaseSettings, users: int, deals: int, currencies: list[str]) -> None:
    conn = await _connect(settings)
    try:
        await conn.execute(EMPTY_TABLES)
        indexes = await conn.fetch(SECONDARY_INDEXES)
        for index in indexes:
            await conn.execute(f"DROP INDEX {index['name']}")
        await conn.execute("SET synchronous_commit = off")
        # Foreign keys are not checked (consistent by construction).
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SET session_replication_role = replica")
        now = datetime.now(UTC)
        await conn.copy_records_to_table(
            "users", records=user_rows(users, now), columns=USER_COLUMNS
        )
        await conn.copy_records_to_table(
            "wallets", records=wallet_rows(users, currencies), columns=WALLET_COLUMNS
        )
        await conn.copy_records_to_table(
            "escrows", records=deal_rows(users, deals, currencies, now), columns=DEAL_COLUMNS
        )
        await conn.execute(SET_SEQUENCES)
    finally:
        await conn.close()
    await _run_side_by_side(settings, [index["definition"] for index in indexes])
    await _run_side_by_side(settings, ["VACUUM ANALYZE users", "VACUUM ANALYZE wallets"])
    await _run_side_by_side(settings, ["VACUUM ANALYZE escrows"])


async def _run_side_by_side(settings: DatabaseSettings, statements: list[str]) -> None:
    """Run statements two at a time (index builds: one per core)."""
    queue = list(statements)

    async def worker() -> None:
        conn = await _connect(settings)
        try:
            await conn.execute("SET maintenance_work_mem = '256MB'")
            while queue:
                await conn.execute(queue.pop(0))
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(min(2, len(queue)))))


async def prepare(
    settings: DatabaseSettings, users: int, deals: int, currencies: list[str], *, force=False
) -> DataSet:
    """Create and migrate the bench database if needed; load it unless it
    already holds this data set."""
    if users < 10 or deals < 1:
        raise ValueError("the data set needs at least 10 users and 1 deal")
    await migrate.ensure_database(settings)
    engine = build_engine(settings)
    try:
        await migrate.run(engine)
    finally:
        await engine.dispose()
    conn = await _connect(settings)
    try:
        await conn.execute(DATASET_TABLE)
        meta = await conn.fetchrow(DATASET)
        await restore_seed_indexes(conn)  # a run stopped inside "no_indexes"
    finally:
        await conn.close()
    wanted = (DATA_VERSION, users, deals, ",".join(currencies))
    if meta is not None and not force:
        have = (meta["version"], meta["users"], meta["deals"], meta["currencies"])
        if have == wanted:
            return DataSet(settings, users, deals, loaded=False, seconds=meta["seconds"])
    started = time.perf_counter()
    await _load(settings, users, deals, currencies)
    seconds = time.perf_counter() - started
    conn = await _connect(settings)
    try:
        await conn.execute(
            RECORD_DATASET,
            *wanted,
            seconds,
        )
    finally:
        await conn.close()
    return DataSet(settings, users, deals, loaded=True, seconds=seconds)


# -- what the workload needs -------------------------------------------------------


def pick_users(total: int, wanted: int, seed: int = 7) -> list[int]:
    """`wanted` distinct user numbers spread over the data set."""
    return sorted(random.Random(seed).sample(range(1, total + 1), min(wanted, total)))


async def deal_codes(settings: DatabaseSettings, users: list[int], per_user: int = 4):
    """Codes of each user's newest deals (either side): {user number: [code, ...]}."""
    conn = await _connect(settings)
    try:
        rows = await conn.fetch(
            NEWEST_DEAL_CODES,
            users,
            per_user,
        )
    finally:
        await conn.close()
    codes: dict[int, list[str]] = {user: [] for user in users}
    for row in rows:
        codes[row["id"]].append(row["code"])
    return codes


# -- the "no composite indexes" ablation ---------------------------------------------


async def drop_seed_indexes(settings: DatabaseSettings) -> dict[str, str]:
    """Drop the seed's indexes (keeping wallet upserts possible); their definitions."""
    conn = await _connect(settings)
    try:
        rows = await conn.fetch(
            INDEX_DEFINITIONS,
            list(SEED_INDEXES),
        )
        await conn.execute(
            f"CREATE UNIQUE INDEX IF NOT EXISTS {WALLET_STAND_IN} ON wallets (currency, user_id)"
        )
        for row in rows:
            await conn.execute(f"DROP INDEX {row['indexname']}")
        await conn.execute("ANALYZE escrows; ANALYZE wallets; ANALYZE invitations")
    finally:
        await conn.close()
    return {row["indexname"]: row["indexdef"] for row in rows}


async def restore_seed_indexes(conn: asyncpg.Connection) -> list[str]:
    """Rebuild whichever seed index is missing (from the models) and drop the stand-in."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateIndex

    from db.models import Base

    present = {
        row["indexname"]
        for row in await conn.fetch(
            PRESENT_INDEXES,
            [*SEED_INDEXES, WALLET_STAND_IN],
        )
    }
    missing = [
        index
        for table in Base.metadata.sorted_tables
        for index in table.indexes
        if index.name in SEED_INDEXES and index.name not in present
    ]
    if missing:
        await conn.execute("SET maintenance_work_mem = '256MB'")
    for index in missing:
        await conn.execute(str(CreateIndex(index).compile(dialect=postgresql.dialect())))
    if WALLET_STAND_IN in present:
        await conn.execute(f"DROP INDEX {WALLET_STAND_IN}")
    if missing:
        await conn.execute("ANALYZE escrows; ANALYZE wallets; ANALYZE invitations")
    return [index.name for index in missing if index.name]


async def restore_indexes(settings: DatabaseSettings) -> list[str]:
    conn = await _connect(settings)
    try:
        return await restore_seed_indexes(conn)
    finally:
        await conn.close()
