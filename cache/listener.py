"""Every replica's invalidation listener.

It subscribes to the invalidation channels (cache/channels.py: one on one
Redis, one per slot group on a cluster) and drops the L1 entries of the users
it hears about. While it is not subscribed (connecting, Redis down, connection
killed, no PONG; on a cluster, any of these on any master, or a failover
moving channels) the cache reads neither L1 nor L2; on (re)subscribe it checks
that Redis is the one the entries were written to, reads the generations and
starts with an empty L1, so nothing published while it was away can be missed. Redis
delivers every message to a live subscription in order (a subscriber that falls
behind is disconnected, which this listener notices), so L1 entries are kept
while it is subscribed; `l1_ttl_seconds` bounds a message lost anyway.

The check: Redis's run_id (INFO server) changes with every restart and
differs between nodes. A Redis restarted from its saved data, or a replica
promoted after it lagged, brings back entries older than Postgres under the
generation the replicas still use; its run_id is not the one recorded with
the entries (each slot group's `redis_run`), so they are disowned
(cache/scripts.py, RUN_CHECK_SCRIPT: a new generation for each group that
master holds, once, however many replicas reconnect at the same moment) and
the reset is announced.

On a cluster, one master failing over ends the session of every listener, so
all of L1 is dropped, not only the entries of that shard's users: L1 is
trusted as a whole (one subscription state, one breaker), a failover is rare,
and refilling L1 costs one L2 GET per active user, from shards whose entries
stay good (only the failed-over shard's groups get a new generation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec
from redis.asyncio import Redis, RedisCluster

from cache import channels
from cache.channels import ChannelFeed, ShardedFeed
from cache.messages import CacheReset, Message, decode_messages
from cache.scripts import RUN_UNKNOWN, RunCheck
from cache.store import REDIS_ERRORS, SnapshotCache
from db.events import DealChanged, UserChanged

log = logging.getLogger(__name__)


ListenerState = Literal["stopped", "connecting", "subscribed", "disconnected"]
EventHook = Callable[[Message], None]
ConnectedHook = Callable[[], Awaitable[None]]
Feed = ChannelFeed | ShardedFeed


class InvalidationListener:
    """One per replica: drops L1 entries on invalidations, and keeps L1 off
    while it cannot hear them.

    `on_event` hooks see every message (deal changes included) after the cache
    has applied it; `on_subscribed` and `on_idle` hooks run after each
    (re)subscribe and about every `listener_ping_seconds`.
    """

    INITIAL_BACKOFF = 0.05

    def __init__(self, redis: Redis, cache: SnapshotCache) -> None:
        self._redis = redis
        self._cache = cache
        self._ping_seconds = cache.settings.listener_ping_seconds
        self._backoff_max = cache.settings.listener_backoff_max_seconds
        self._run_check = RunCheck(redis, cache.keys)
        self._run_id_unknown_told = False
        self.on_event: list[EventHook] = []
        self.on_subscribed: list[ConnectedHook] = []
        self.on_idle: list[ConnectedHook] = []
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._stopping = False

    @property
    def state(self) -> ListenerState:
        return self._cache.counters.listener_state  # type: ignore[return-value]

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="cache-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            # A cancellation can be swallowed by what the task awaits (a
            # wait_for finishing at that moment, a driver's cleanup): cancel
            # again until it is over; the loop also checks `_stopping`.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
            self._stopping = False
        await self._set_state("stopped")

    async def wait_for(self, state: ListenerState) -> None:
        """Until the listener is in `state` (wrap it in `asyncio.timeout`)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.state == state)

    async def run(self) -> None:
        """Listen until stopped, reconnecting with a capped, jittered backoff."""
        delay = self.INITIAL_BACKOFF
        while not self._stopping:
            subscribed = False
            try:
                await self._set_state("connecting")
                feed = channels.feed(self._redis, self._cache.keys, self._ping_seconds)
                try:
                    await self._subscribe(feed)
                    subscribed = True
                    await self._pump(feed)
                finally:
                    await self._close(feed)
            except REDIS_ERRORS as exc:
                log.warning("cache listener lost Redis (%r); L1 is off until it is back", exc)
            except Exception:
                log.exception("cache listener failed; L1 is off until it is back")
            finally:
                # Invalidations may be missed from now on: stop trusting L1.
                self._cache.set_listening(False)
                if subscribed:
                    self._cache.counters.listener_disconnects += 1
                    delay = self.INITIAL_BACKOFF
            await self._set_state("disconnected")
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self._backoff_max)

    async def _subscribe(self, feed: Feed) -> None:
        await feed.subscribe()
        # Subscribed first, then the check of this Redis, the generations and
        # an empty L1: whatever changes from here on is heard.
        await self._cache.script.load(self._redis)
        await self._check_redis()
        self._cache.clear_local()
        # Pooled connections from before may be dead (a restart) or lead to
        # another node than the one just checked (a failover): reads connect
        # afresh, to where the listener did (a cluster client: to the masters
        # of the slot map the subscription has just refreshed).
        with contextlib.suppress(*REDIS_ERRORS):
            redis = self._cache.redis
            if isinstance(redis, RedisCluster):
                for node in redis.get_nodes():
                    await node.disconnect_free_connections()
            else:
                await redis.connection_pool.disconnect(inuse_connections=False)
        self._cache.set_listening(True)
        # Redis answers: no need to keep readers off it for the rest of the
        # breaker's open time, and held-back invalidations can go out now.
        self._cache.redis_succeeded()
        self._cache.counters.listener_connects += 1
        await self._set_state("subscribed")
        await self._run_hooks(self.on_subscribed)

    async def _check_redis(self) -> None:
        """Learn each slot group's generation, once it is sure that the Redis
        holding the group holds what was written to it (or the group's entries
        are disowned)."""
        cache = self._cache
        results = await self._run_check(cache.highest_generations)
        resets = []
        for group, (outcome, generation) in enumerate(results):
            if outcome == 1:
                resets.append(CacheReset(generation, group))
            elif outcome == RUN_UNKNOWN and not self._run_id_unknown_told:
                self._run_id_unknown_told = True
                log.warning(
                    "Redis does not tell its run_id (INFO refused): a restart from older "
                    "data is not detected; such entries live until l2_ttl_seconds"
                )
            cache.set_generation(group, generation)
        if resets:
            cache.counters.redis_runs_disowned += 1
            log.warning(
                "Redis is not the one the cache entries of %d slot groups were written to "
                "(restarted or failed over): those disowned (generations %s)",
                len(resets),
                sorted({reset.generation for reset in resets}),
            )
            await channels.publish(self._redis, cache.keys, tuple(resets))

    async def _pump(self, feed: Feed) -> None:
        clock = time.monotonic
        next_tick = clock() + self._ping_seconds
        while True:
            data = await feed.next()
            if data is not None:
                self._handle(data)
            now = clock()
            if now >= next_tick:
                next_tick = now + self._ping_seconds
                await feed.tick(now)
                await self._run_hooks(self.on_idle)

    def _handle(self, data: bytes) -> None:
        cache = self._cache
        try:
            messages = decode_messages(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            # From a newer release perhaps: whatever it said, forget everything.
            cache.counters.listener_bad_messages += 1
            cache.clear_local()
            log.warning("undecodable invalidation message; L1 cleared")
            return
        for message in messages:
            match message:
                case UserChanged(telegram_id=telegram_id, version=version):
                    cache.counters.invalidations_received += 1
                    cache.drop_local(telegram_id, version)
                case CacheReset(generation=generation, group=group):
                    # A reset this replica has applied already (its own, or
                    # one it met first in an entry) leaves L1 alone: all of it
                    # was read under that generation.
                    if generation > cache.generation_of(group):
                        cache.set_generation(group, generation)
                case DealChanged():
                    pass
            for hook in self.on_event:
                try:
                    hook(message)
                except Exception:
                    log.exception("invalidation hook %r failed", hook)

    async def _run_hooks(self, hooks: list[ConnectedHook]) -> None:
        for hook in hooks:
            try:
                await hook()
            except Exception:
                log.exception("listener hook %r failed", hook)

    async def _set_state(self, state: ListenerState) -> None:
        async with self._changed:
            self._cache.counters.listener_state = state
            self._changed.notify_all()

    async def _close(self, feed: Feed) -> None:
        try:
            async with asyncio.timeout(1.0):
                await feed.aclose()
        except (TimeoutError, *REDIS_ERRORS):
            pass
