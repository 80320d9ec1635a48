"""Read-through snapshot cache: in-process L1, Redis L2, Postgres behind both.

One read per update: an L1 hit is a dict lookup (no Redis, no SQL), an L2 hit
one GET, a miss one GET + one SQL statement + one EVALSHA (the set-if-newer
fill). Concurrent misses for one user in this process share one task (single
flight): a burst of updates from one user costs one GET and one load.

Consistency (each bound, with its setting: docs/cache.md, "Staleness bounds"):

- L2 is never overwritten by an older version: fills and tombstones both go
  through FILL_SCRIPT, which compares `users.version` (and the schema) with
  what is there. An invalidation writes a tombstone carrying the new version
  instead of a DEL, so a reader that loaded the old version before the commit
  cannot put it back (delete-then-set race); a fill whose load started more
  than half of `tombstone_ttl_seconds` ago is not written.
- L1 is trusted only while the invalidation listener is subscribed and the
  Redis breaker is closed; losing either clears it. Invalidations bump a
  striped epoch, and a read that raced one does not keep its result in L1.
- L2 is read only while the listener is subscribed, and only entries of
  their slot group's current generation (cache/keys.py): what a Redis that is
  not the one they were written to holds (a restart from saved data, a lagging
  failover) is disowned on (re)subscribe.
- While Redis is failing, reads go straight to Postgres, single-flighted, no
  L1; invalidations are kept and sent when it is back (cache/invalidation.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis, RedisCluster

from cache.breaker import CircuitBreaker
from cache.client import REDIS_ERRORS
from cache.keys import SLOT_GROUPS, CacheKeys, group_of
from cache.loader import SnapshotLoader
from cache.local import LocalSnapshots, Mark
from cache.messages import CacheReset
from cache.metrics import CacheCounters
from cache.scripts import STALE_GENERATION, FillScript, bump_generations
from cache.settings import CacheSettings
from cache.snapshots import CODEC, SnapshotCodec, UserSnapshot, parse_header

log = logging.getLogger(__name__)

__all__ = ["REDIS_ERRORS", "SnapshotCache"]


class SnapshotCache:
    def __init__(
        self,
        redis: Redis,
        loader: SnapshotLoader,
        settings: CacheSettings,
        *,
        codec: SnapshotCodec = CODEC,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if redis.get_encoder().decode_responses:
            raise ValueError("the snapshot cache needs a Redis client returning bytes")
        self.redis = redis
        # Redis Cluster: sharded invalidation channels, one per slot group.
        self.sharded = isinstance(redis, RedisCluster)
        self.settings = settings
        self.keys = CacheKeys(settings.key_prefix)
        self.counters = CacheCounters()
        self.breaker = CircuitBreaker(settings.breaker_open_seconds, clock)
        self.loader = loader
        self._codec = codec
        self._clock = clock
        self._l1 = LocalSnapshots(settings.l1_size, settings.l1_ttl_seconds, clock)
        self._l1_trusted = False
        self._listening = False
        # Bumped whenever the listener subscribes or loses Redis: a read that
        # spans a change does not use what Redis answered.
        self._session = 0
        self._inflight: dict[int, asyncio.Task[UserSnapshot | None]] = {}
        # Per slot group: the generation reads are made under, the highest used.
        self._generations = [0] * SLOT_GROUPS
        self._highest = [0] * SLOT_GROUPS
        self._l2_ttl_ms = settings.l2_ttl_seconds * 1000
        self.script = FillScript(redis, self.keys, int(settings.tombstone_ttl_seconds * 1000))
        self._fill_deadline = settings.tombstone_ttl_seconds / 2

    # -- reading ------------------------------------------------------------------

    async def get(self, telegram_id: int) -> UserSnapshot | None:
        """The user's snapshot, or None if no such user (not cached)."""
        if self._l1_trusted:
            snapshot = self._l1.get(telegram_id)
            if snapshot is not None:
                self.counters.l1_hits += 1
                return snapshot
            self.counters.l1_misses += 1
        else:
            self.counters.l1_bypassed += 1
        task = self._inflight.get(telegram_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(telegram_id))
            self._inflight[telegram_id] = task
            task.add_done_callback(functools.partial(self._landed, telegram_id))
        else:
            self.counters.load_joins += 1
        # Shielded: a caller that gives up does not cancel the others' load.
        return await asyncio.shield(task)

    def _landed(self, telegram_id: int, task: asyncio.Task[UserSnapshot | None]) -> None:
        if self._inflight.get(telegram_id) is task:
            del self._inflight[telegram_id]
        if not task.cancelled():
            task.exception()  # retrieved: the callers see it through the shield

    async def _fetch(self, telegram_id: int) -> UserSnapshot | None:
        trusted = self._l1_trusted
        mark = self._l1.mark(telegram_id)
        key = self.keys.snapshot(telegram_id)
        # L2 only while the listener is subscribed: it has checked that this
        # Redis holds what was written to it (not an older copy brought back
        # by a restart or a failover) and hears every change since.
        session = self._session
        group = group_of(telegram_id)
        # The generation the read is made under: a fill whose read began
        # before a reset is refused, whatever was learned meanwhile.
        generation = self._generations[group]
        use_redis = self._listening and self.breaker.allow()
        raw: bytes | None = None
        if use_redis:
            try:
                raw = await self.redis.get(key)
            except REDIS_ERRORS as exc:
                self.redis_failed(exc)
                use_redis = False
            else:
                self.redis_succeeded()
                # The listener lost Redis while the GET was out: the answer may
                # come from a Redis it has not checked yet.
                use_redis = session == self._session
        if not use_redis:
            self.counters.l2_skipped += 1
        elif raw is not None and (snapshot := self._decode_entry(raw, group)) is not None:
            self.counters.l2_hits += 1
            if trusted:
                self._remember(telegram_id, snapshot, mark)
            return snapshot
        else:
            self.counters.l2_misses += 1
        started = self._clock()
        self.counters.loads += 1
        snapshot = await self.loader(telegram_id)
        if snapshot is None:
            self.counters.unknown_users += 1
            return None
        if use_redis and await self._fill(snapshot, started, session, generation) and trusted:
            self._remember(telegram_id, snapshot, mark)
        return snapshot

    def _decode_entry(self, raw: bytes, group: int) -> UserSnapshot | None:
        header = parse_header(raw)
        if header is None:
            return None
        if header.generation != self._generations[group]:
            if header.generation < self._generations[group]:
                return None
            self.set_generation(group, header.generation)  # a reset not heard of yet
        return self._codec.decode(raw, header)

    async def _fill(
        self, snapshot: UserSnapshot, started: float, session: int, generation: int
    ) -> bool:
        """Write the loaded snapshot to L2 unless something newer is there;
        True if L2 now holds this version."""
        if not self.breaker.closed or session != self._session:
            return False
        if self._clock() - started > self._fill_deadline:
            # Its tombstone may have expired: writing it could resurrect it.
            self.counters.fills_skipped += 1
            return False
        try:
            outcome, current = await self.script.fill(
                snapshot.telegram_id,
                snapshot.version,
                self._codec.schema,
                generation,
                self._codec.encode(snapshot),
                self._l2_ttl_ms,
            )
        except REDIS_ERRORS as exc:
            self.redis_failed(exc)
            return False
        self.redis_succeeded()
        if outcome == STALE_GENERATION:
            self.set_generation(group_of(snapshot.telegram_id), current)
        if outcome < 0:
            self.counters.fills_refused += 1
            return False
        self.counters.fills += outcome
        return True

    def _remember(self, telegram_id: int, snapshot: UserSnapshot, mark: Mark) -> None:
        if not self._l1_trusted or not self._l1.remember(telegram_id, snapshot, mark):
            self.counters.l1_fills_skipped += 1

    # -- invalidating -------------------------------------------------------------

    def drop_local(self, telegram_id: int, version: int | None = None) -> None:
        """Forget what this process holds about the user (older than `version`).

        Also detaches an in-flight load, so reads from now on start a new one,
        and bumps the user's epoch stripe, so a read already past L2 does not
        put what it got into L1."""
        self._l1.drop(telegram_id, version)
        self._inflight.pop(telegram_id, None)

    def clear_local(self) -> None:
        self._l1.clear()
        self._inflight.clear()

    def cached_locally(self, telegram_id: int) -> UserSnapshot | None:
        """What L1 would answer now (no counters); for tests and tools."""
        return self._l1.get(telegram_id) if self._l1_trusted else None

    @property
    def l1_trusted(self) -> bool:
        return self._l1_trusted

    @property
    def l1_len(self) -> int:
        return len(self._l1)

    def set_listening(self, listening: bool) -> None:
        """Called by the listener: L1 and L2 are read only while it is subscribed."""
        if listening != self._listening:
            self._session += 1
        self._listening = listening
        self._update_trust()

    def _update_trust(self) -> None:
        trusted = self._l1.enabled and self._listening and self.breaker.closed
        if trusted != self._l1_trusted:
            self._l1_trusted = trusted
            self.clear_local()

    # -- Redis health -------------------------------------------------------------

    def redis_failed(self, exc: BaseException) -> None:
        self.counters.redis_errors += 1
        if self.breaker.record_failure():
            self.counters.breaker_opens += 1
            seconds = self.settings.breaker_open_seconds
            log.warning("Redis failed (%r): snapshots from Postgres for %.1fs", exc, seconds)
        self._update_trust()

    def redis_succeeded(self) -> None:
        if self.breaker.record_success():
            log.info("Redis answers again: snapshot cache back in use")
            self._update_trust()

    # -- generation ---------------------------------------------------------------

    @property
    def generation(self) -> int:
        """The highest of the slot groups' generations (for tools and tests)."""
        return max(self._generations)

    def generation_of(self, group: int) -> int:
        return self._generations[group]

    @property
    def highest_generations(self) -> list[int]:
        """Per group, the highest generation used (a restored Redis may hold less)."""
        return list(self._highest)

    def set_generation(self, group: int, generation: int) -> None:
        """Switch the group to the generation Redis has (learned on subscribe,
        from a reset message, an entry or a refused fill); a change clears L1."""
        self._highest[group] = max(self._highest[group], generation)
        if generation != self._generations[group]:
            self._generations[group] = generation
            self.counters.generation_changes += 1
            self.clear_local()

    async def reset_generation(self) -> tuple[CacheReset, ...]:
        """Disown every L2 entry (every slot group's generation bumped, one
        pipeline); the caller publishes the returned resets."""
        generations = await bump_generations(self.redis, self.keys)
        self.counters.generation_resets += 1
        resets = tuple(CacheReset(g, group) for group, g in enumerate(generations))
        for reset in resets:
            self.set_generation(reset.group, reset.generation)
        return resets

    async def aclose(self) -> None:
        tasks, self._inflight = list(self._inflight.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
