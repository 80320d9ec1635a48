"""One bot replica's cache: the store, its publisher and its listener, wired.

The composition root builds one and passes `replica.cache` to the snapshot
middleware and `replica.publisher` as the services' event sink:

    replica = CacheReplica.from_settings(config.redis, config.cache, db.engine)
    await replica.start()
    ctx = ServiceContext(db=db, ..., events=replica.publisher)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from cache import channels
from cache.client import build_redis
from cache.invalidation import InvalidationPublisher
from cache.listener import InvalidationListener
from cache.loader import PostgresSnapshotLoader, SnapshotLoader
from cache.settings import CacheSettings, RedisSettings
from cache.snapshots import CODEC, SnapshotCodec
from cache.store import REDIS_ERRORS, SnapshotCache
from db.standby import StandbyReads

log = logging.getLogger(__name__)


class CacheReplica:
    def __init__(
        self,
        cache: SnapshotCache,
        publisher: InvalidationPublisher,
        listener: InvalidationListener,
        owned: tuple[Redis, ...] = (),
    ) -> None:
        self.cache = cache
        self.publisher = publisher
        self.listener = listener
        self._owned = owned

    @classmethod
    def build(
        cls,
        redis: Redis,
        loader: SnapshotLoader,
        settings: CacheSettings,
        *,
        listener_redis: Redis | None = None,
        codec: SnapshotCodec = CODEC,
        clock: Callable[[], float] = time.monotonic,
    ) -> CacheReplica:
        cache = SnapshotCache(redis, loader, settings, codec=codec, clock=clock)
        publisher = InvalidationPublisher(cache)
        listener = InvalidationListener(listener_redis or redis, cache)
        # Invalidations held back by an outage go out as soon as Redis is back.
        listener.on_subscribed.append(publisher.flush_pending)
        listener.on_idle.append(publisher.flush_pending)
        return cls(cache, publisher, listener)

    @classmethod
    def from_settings(
        cls,
        redis: RedisSettings,
        settings: CacheSettings,
        engine: AsyncEngine,
        standby: StandbyReads | None = None,
    ) -> CacheReplica:
        client = build_redis(redis, settings)
        replica = cls.build(client, PostgresSnapshotLoader(engine, standby), settings)
        replica._owned = (client,)
        return replica

    async def start(self, wait_seconds: float | None = 5.0) -> None:
        """Start listening; wait a little for the first subscribe, but a replica
        without Redis still starts (it reads from Postgres until Redis is back)."""
        await self.check_database()
        self.listener.start()
        if wait_seconds:
            try:
                async with asyncio.timeout(wait_seconds):
                    await self.listener.wait_for("subscribed")
            except TimeoutError:
                log.warning("cache listener not subscribed after %.1fs; L1 stays off", wait_seconds)

    async def check_database(self) -> None:
        """Entries in Redis come from one database. If they were loaded from
        another (it was recreated or restored, or this prefix pointed elsewhere)
        or nobody recorded which, their versions mean nothing here: disown them
        all (a new generation, announced to running replicas) before any read."""
        identity = getattr(self.cache.loader, "identity", None)
        if identity is None:  # a loader with no database behind it
            return
        cache, keys = self.cache, self.cache.keys
        ours = await identity()
        try:
            recorded = await cache.redis.get(keys.database)
            if recorded is not None and recorded.decode() == ours:
                return
            resets = await cache.reset_generation()
            await channels.publish(cache.redis, keys, resets)
            await cache.redis.set(keys.database, ours)
        except REDIS_ERRORS as exc:  # reads go to Postgres meanwhile; checked at next start
            log.warning("could not check which database the cache holds: %r", exc)
            return
        log.warning(
            "cache entries were loaded from %s, this is database %s: all disowned (generation %d)",
            recorded.decode() if recorded is not None else "an unrecorded database",
            ours,
            cache.generation,
        )

    async def aclose(self) -> None:
        await self.listener.stop()
        await self.cache.aclose()
        for client in self._owned:
            await client.aclose()
        self._owned = ()

    async def __aenter__(self) -> CacheReplica:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = ["CacheReplica"]
