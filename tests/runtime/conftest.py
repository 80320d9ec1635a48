"""The runtime on the test database and Redis: the e2e app and people, and a
configuration for whole replicas (local mode, webhook mode)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

import msgspec
import pytest

from bot.config import Config
from cache.settings import RedisSettings
from db import Database
from tests.conftest import ADMIN_TELEGRAM_ID
from tests.e2e.conftest import app, people, redis_settings, telegram

__all__ = ["app", "people", "redis_settings", "telegram"]


@pytest.fixture
def replica_config(
    config: Config, pg_settings, database: Database, redis_settings: RedisSettings
) -> Config:
    """A replica's configuration on this session's database (emptied) and Redis
    (one, or the session's cluster: `redis_settings`),
    under a key prefix of its own, with no side server."""
    return msgspec.structs.replace(
        config,
        database=pg_settings,
        redis=redis_settings,
        cache=msgspec.structs.replace(config.cache, key_prefix=f"rt{secrets.token_hex(4)}"),
        escrow=msgspec.structs.replace(config.escrow, admins=()),
        observability=msgspec.structs.replace(config.observability, http_port=0),
        runtime=msgspec.structs.replace(config.runtime, local_admin_id=ADMIN_TELEGRAM_ID),
    )


async def eventually(condition: Callable[[], object], seconds: float = 10.0) -> None:
    """Wait until `condition()` is true (polling every 10 ms), or fail."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not true after {seconds}s: {condition}")
