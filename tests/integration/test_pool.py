"""The connection pool as configured: at the in-flight bound, updates reuse the
connections they find open instead of opening (and closing) one each, which
costs a server process, type introspection and every statement prepared again."""

from __future__ import annotations

import asyncio

import msgspec
from sqlalchemy import event

from bot.config import Config
from db.engine import DatabaseSettings, build_engine
from db.sql.ops import PING


async def test_a_full_load_opens_no_connection_after_the_first(
    config: Config, pg_settings: DatabaseSettings
):
    settings = msgspec.structs.replace(
        pg_settings,
        pool_size=config.database.pool_size,
        max_overflow=config.database.max_overflow,
    )
    engine = build_engine(settings)
    opened = []
    event.listen(engine.sync_engine, "connect", lambda *_: opened.append(1))
    in_flight = config.max_updates_in_flight
    gate = asyncio.Event()

    async def update() -> None:
        async with engine.connect() as conn:
            await gate.wait()  # every update holds its connection at once
            await conn.execute(PING)

    try:
        for burst in range(5):
            gate.clear()
            tasks = [asyncio.create_task(update()) for _ in range(in_flight)]
            await asyncio.sleep(0.2)
            gate.set()
            await asyncio.gather(*tasks)
            if burst == 0:
                first = len(opened)
        assert first == in_flight
        # later bursts: not one connection opened (with overflow, each burst
        # would open and close max_overflow of them)
        assert len(opened) == first
    finally:
        await engine.dispose()
