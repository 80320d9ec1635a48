"""The Redis client the cache is built on: short timeouts, no retries.

redis-py retries a failed command up to 10 times with backoff by default; for
a cache that would turn an outage into seconds of waiting per update. Here a
command fails fast and the breaker (cache/breaker.py) decides what comes next.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from cache.settings import CacheSettings, RedisSettings

# Requests sent to Redis in the current context (one bot update, say): whoever
# wants the count sets a one-item list here; None costs one lookup per request.
round_trips: ContextVar[list[int] | None] = ContextVar("redis_round_trips", default=None)


class CountingConnection(Connection):
    """A connection that counts each request (a command or a whole pipeline)
    in `round_trips`, for the per-update metrics."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        counter = round_trips.get()
        if counter is not None:
            counter[0] += 1
        await super().send_packed_command(command, check_health)


def no_retries() -> Retry:
    return Retry(NoBackoff(), 0)


def build_redis(redis: RedisSettings, cache: CacheSettings) -> Redis:
    timeout = cache.redis_timeout_ms / 1000
    return Redis.from_url(
        redis.url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=no_retries(),
        health_check_interval=0,  # the listener pings on its own schedule
        **counting(redis.url),
    )


def counting(url: str) -> dict[str, Any]:
    """Connection options that count round trips (plain TCP only: TLS and unix
    sockets keep redis-py's own connection classes, uncounted)."""
    return {"connection_class": CountingConnection} if url.startswith("redis://") else {}
