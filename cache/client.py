"""The Redis client the cache is built on: short timeouts, no retries.

redis-py retries a failed command up to 10 times with backoff by default; for
a cache that would turn an outage into seconds of waiting per update. Here a
command fails fast and the breaker (cache/breaker.py) decides what comes next.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from cache.settings import CacheSettings, RedisSettings


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
    )
