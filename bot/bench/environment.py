"""What a benchmark ran on: the machine, and the servers' versions and settings."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bot.bench.run import Plan
from db.sql.dataset import SERVER_SETTINGS


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"nproc": os.cpu_count(), "python": platform.python_version()}
    info["platform"] = platform.platform()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(
            line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line
        )
        mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
        info["memory_gib"] = round(int(mem) / 2**20, 1)
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    return info


async def versions(plan: Plan) -> dict[str, str]:
    url = plan.config.database.sqlalchemy_url
    conn = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username,
                                 password=url.password, database=url.database)  # fmt: skip
    try:
        postgres = (await conn.fetchval("SHOW server_version")).split()[0]
        settings = dict(await conn.fetch(
            SERVER_SETTINGS,
            ["synchronous_commit", "shared_buffers", "fsync", "max_connections"],
        ))  # fmt: skip
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(plan.config.redis.url)
    try:
        redis = (await client.info("server"))["redis_version"]
        # what the run left in Redis (its own key prefix only)
        keys = [key async for key in client.scan_iter(match=f"{plan.prefix}*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.unlink(*keys[start : start + 500])
    finally:
        await client.aclose()
    return {"postgres": postgres, "postgres_settings": settings, "redis": redis}
