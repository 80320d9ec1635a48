"""The Redis client the bot is built on (cache, FSM, locks): short timeouts,
one retry on a fresh connection, health checks on idle connections.

redis-py retries a failed command up to 10 times with backoff by default; for
a cache that would turn an outage into seconds of waiting per update. Here a
command fails fast and the breaker (cache/breaker.py) decides what comes next.

Only a broken connection is retried, once, at once: after Redis restarted,
every pooled connection is dead, and without the retry each would fail one
update before being replaced. A timeout is never retried (Redis may be hung,
and waiting twice helps nobody). Every command we send may be sent twice (a
SET of a versioned entry, a PUBLISH of an invalidation, a SET NX whose first
reply was lost: its callers check the value they find, see bot/runtime/coordination.py).
An idle connection is PINGed before use after `redis_health_check_seconds`.

With `[redis] cluster = true` the same policy applies to a RedisCluster
(`build_cluster`), which follows MOVED replies and failovers by itself.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisClusterException, RedisError

from cache.settings import CacheSettings, RedisSettings

# What a failing Redis raises. redis-py's cluster client gives up on an
# unreachable cluster with errors that are not RedisErrors.
REDIS_ERRORS = (RedisError, RedisClusterException, OSError)

# Requests sent to Redis in the current context (one bot update, say): whoever
# wants the count sets a one-item list here; None costs one lookup per request.
round_trips: ContextVar[list[int] | None] = ContextVar("redis_round_trips", default=None)


class CountingConnection(Connection):
    """A connection that counts each request (a command or a whole pipeline)
    in `round_trips`, for the per-update metrics."""

    _checking = False  # a health check's PING is not the update's round trip

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        counter = round_trips.get()
        if counter is not None and not self._checking:
            counter[0] += 1
        await super().send_packed_command(command, check_health)

    async def check_health(self) -> None:
        self._checking = True
        try:
            await super().check_health()
        finally:
            self._checking = False


def no_retries() -> Retry:
    return Retry(NoBackoff(), 0)


def fresh_connection_retry() -> Retry:
    """One immediate retry, for a broken connection only (never a timeout)."""
    return Retry(NoBackoff(), 1, supported_errors=(ConnectionError,))


def build_redis(redis: RedisSettings, cache: CacheSettings) -> Redis:
    """The bot's client: one Redis, or with `cluster`, a RedisCluster found
    from the node at `url` (typed as Redis: the commands we use are the same)."""
    timeout = cache.redis_timeout_ms / 1000
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": fresh_connection_retry(),
        "health_check_interval": cache.redis_health_check_seconds,
    }
    if redis.cluster:
        return build_cluster(redis.url, **options)  # type: ignore[return-value]
    return Redis.from_url(redis.url, **options, **counting(redis.url))


def build_cluster(url: str, **options: Any) -> RedisCluster:
    """A RedisCluster whose connections count round trips like one Redis's.

    RedisCluster takes no connection class (it sets redis-py's own), but every
    node it finds, and every connection of a node, is made from its
    `connection_kwargs`; setting the class there before the first command
    counts them all. Its retry differs from one Redis's in one way: redis-py
    retries a timed-out command on a cluster too (after a topology refresh:
    it is how a command follows a failover; a CLUSTERDOWN reply is retried
    after 0.25 s), so a hung master costs an update at most twice
    `redis_timeout_ms` before the breaker opens."""
    cluster = RedisCluster.from_url(url, **options)
    connection_class = counting(url).get("connection_class")
    if connection_class is not None:
        cluster.connection_kwargs["connection_class"] = connection_class
        for node in cluster.startup_nodes:
            node.connection_class = connection_class
    return cluster


def counting(url: str) -> dict[str, Any]:
    """Connection options that count round trips (plain TCP only: TLS and unix
    sockets keep redis-py's own connection classes, uncounted)."""
    return {"connection_class": CountingConnection} if url.startswith("redis://") else {}
