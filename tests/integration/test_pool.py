"""The connection pool as configured: at the in-flight bound, updates reuse the
connections they find open instead of opening (and closing) one each, which
costs a server process, type introspection and every statement prepared again."""

from __future__ import annotations

import asyncio

import msgspec
from sqlalchemy import event, text

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


async def test_updates_one_after_another_reuse_the_connection_last_given_back(
    pg_settings: DatabaseSettings,
):
    # After a burst opened several connections, a quieter load keeps to the
    # most recently used one (whose statements are prepared and types known)
    # instead of going round all of them, each preparing everything again.
    engine = build_engine(msgspec.structs.replace(pg_settings, pool_size=4, max_overflow=0))
    gate = asyncio.Event()

    async def backend(wait: bool) -> int:
        async with engine.connect() as conn:
            if wait:
                await gate.wait()
            return (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()

    try:
        burst = [asyncio.create_task(backend(True)) for _ in range(4)]
        await asyncio.sleep(0.1)
        gate.set()
        assert len(set(await asyncio.gather(*burst))) == 4
        one_after_another = [await backend(False) for _ in range(8)]
        assert len(set(one_after_another)) == 1
    finally:
        await engine.dispose()
