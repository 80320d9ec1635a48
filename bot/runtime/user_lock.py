"""One user's updates one at a time: across replicas, their lock in Redis
(`RedisUserLock`), taken by `UpdateDedup` (bot/runtime/coordination.py) with
the update's lease in webhook mode; in one process, the process's lock, and
the process keeps its users' forms (`forms_in_redis`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from aiogram.fsm.storage.base import BaseEventIsolation, KeyBuilder, StorageKey
from aiogram.fsm.storage.redis import RedisStorage
from redis.asyncio import Redis

from bot.config import Config
from bot.runtime.leases import Lease, TokenLock, UpdateLease
from bot.telegram.fsm import FormKeyBuilder, GuardedStorage
from bot.telegram.middlewares import ProcessEventIsolation
from bot.telegram.owned_forms import OwnedForms
from bot.telegram.redis_guard import RedisGuard
from cache.client import REDIS_ERRORS, build_redis
from cache.keys import CacheKeys

log = logging.getLogger(__name__)

# The user whose lock the current update took with its update_id (UpdateDedup):
# RedisUserLock lets that update through without taking it again.
taken_with_update: ContextVar[StorageKey | None] = ContextVar("user_taken", default=None)


class RedisUserLock(BaseEventIsolation):
    """One user's updates one at a time across replicas: a `Lease` on
    `<prefix>:fsm:...:lock` (aiogram's key for it), `lease_seconds` long and
    renewed while held, so a lock its holder could not release (Redis away, a
    dead connection, the replica killed) frees the user within
    `lease_seconds`. Updates of one user in this process queue on a process
    lock first, so only one of them polls Redis. In webhook mode the lock is
    taken with the update's lease (`UpdateDedup`), and the update's form read
    with it into `forms`.

    Ordering is a courtesy, not what keeps money right (the database guards
    every move): when Redis fails or its breaker is open, or the lock is not
    free after `2 × lease_seconds` (a holder renewing it that long), the
    update runs without it rather than waiting on."""

    def __init__(
        self,
        redis: Redis,
        key_builder: KeyBuilder,
        lease_seconds: float,
        guard: RedisGuard,
        forms: GuardedStorage | None = None,
    ) -> None:
        self.redis = redis
        self.key_builder = key_builder
        self.lease_seconds = lease_seconds
        self.guard = guard
        self.forms = forms
        self.process = ProcessEventIsolation()
        self.unlocked = 0  # updates run without the Redis lock

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncIterator[None]:
        if taken_with_update.get() == key:  # held already, released with the update
            yield
            return
        async with self.process.lock(key):
            lease = Lease(self.redis, self.key_builder.build(key, "lock"), self.lease_seconds)
            taken, why = False, "Redis is skipped for a moment after a failure"
            if self.guard.allow():
                try:
                    taken = await lease.acquire(wait=2 * self.lease_seconds)
                    self.guard.succeeded()
                    why = "still held after waiting"
                except REDIS_ERRORS as exc:
                    self.guard.failed()
                    why = f"Redis failed: {exc!r}"
            if not taken:
                self.skipped(lease.name, why)
            try:
                yield
            finally:
                if taken:
                    await lease.release()

    async def wait(self, lease: UpdateLease) -> bool:
        """Wait for the user's lock with `lease`'s token, as `lock` does, when it
        was not free as the update was taken."""
        name = str(lease.lock)
        lock = TokenLock(
            self.redis, name, timeout=self.lease_seconds, sleep=0.05, thread_local=False
        )
        why = "still held after waiting"
        try:
            taken = await lock.acquire(
                blocking=True, blocking_timeout=2 * self.lease_seconds, token=lease.token
            )
        except REDIS_ERRORS as exc:
            self.guard.failed()
            taken, why = False, f"Redis failed: {exc!r}"
        if not taken:
            self.skipped(name, why)
        return bool(taken)

    def skipped(self, name: str | None, why: str) -> None:
        self.unlocked += 1
        log.warning("%s: handled without the user's lock (%s)", name, why)

    async def close(self) -> None:
        await self.process.close()


def forms_in_redis(
    config: Config, guard: RedisGuard, replicas: bool
) -> tuple[GuardedStorage, BaseEventIsolation]:
    """Forms in Redis, and what orders one user's updates: this process's lock
    (which gets every update, and keeps its users' forms), or with replicas
    the user's Redis lock, which reads their form with it."""
    redis, day = build_redis(config.redis, config.cache), 24 * 3600
    key_builder = FormKeyBuilder(prefix=CacheKeys(config.cache.key_prefix).forms)
    in_redis = RedisStorage(redis, key_builder, day, day)
    if not replicas:
        return GuardedStorage(in_redis, guard, OwnedForms(in_redis)), ProcessEventIsolation()
    forms = GuardedStorage(in_redis, guard)
    lease = config.runtime.lease_seconds
    return forms, RedisUserLock(redis, key_builder, lease, guard, forms)
