"""What makes several replicas safe to run side by side: a redelivered update
is handled once, one user's updates run one at a time, and a background job
runs on one replica per tick (the webhook, set once per configuration:
`bot/runtime/webhook.py`). All of it is a Redis key under the cache's prefix
(`cache.keys`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aiogram import BaseMiddleware
from aiogram.fsm.storage.base import BaseEventIsolation, KeyBuilder, StorageKey
from aiogram.types import CallbackQuery, TelegramObject, Update
from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from bot.telegram.fsm import RedisGuard
from bot.telegram.middlewares import ProcessEventIsolation
from cache.keys import CacheKeys

log = logging.getLogger(__name__)


DONE = b"done"


@dataclass
class WebhookReply:
    """What the webhook answers Telegram for the update being handled: set per
    request by the webhook server (bot/runtime/webhook.py), read there after handling."""

    retry_later: bool = False


webhook_reply: ContextVar[WebhookReply | None] = ContextVar("webhook_reply", default=None)


class _Lock(Lock):
    async def do_acquire(self, token: str | bytes) -> bool:
        if await super().do_acquire(token):
            return True
        # A SET NX whose reply was lost is retried on a fresh connection
        # (cache/client.py) and finds the key set: by us, if it holds our token.
        return bool(await self.redis.get(self.name) == token)


class Lease:
    """A Redis key held by one update for `seconds` and renewed while held
    (redis-py's `Lock`, token and all): if its holder dies, or cannot release
    it (Redis away, a dead connection), it is free again within `seconds`."""

    def __init__(self, redis: Redis, name: str, seconds: float) -> None:
        self.name = name
        self.seconds = seconds
        self.token = secrets.token_hex(8).encode()
        self._lock = _Lock(redis, name, timeout=seconds, sleep=0.05, thread_local=False)
        self._renewer: asyncio.Task[None] | None = None

    async def acquire(self, wait: float = 0) -> bool:
        """Take the key, waiting up to `wait` seconds for it; renewed from then on."""
        taken = await self._lock.acquire(
            blocking=wait > 0, blocking_timeout=wait or None, token=self.token
        )
        if taken:
            self._renewer = asyncio.get_running_loop().create_task(self._renew())
        return bool(taken)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                await self._lock.reacquire()
            except LockError:  # expired and taken by someone else (or gone)
                log.warning("%s: lease lost while held", self.name)
                return
            except RedisError as exc:  # tried again at the next third
                log.info("%s: lease not renewed: %r", self.name, exc)

    def _stop_renewing(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None

    async def release(self) -> None:
        """Free the key (best effort: a lease not released expires by itself)."""
        self._stop_renewing()
        try:
            await self._lock.release()
        except (LockError, RedisError) as exc:
            log.info("%s: lease not released (%r); it expires by itself", self.name, exc)

    async def replace(self, value: bytes, ttl_seconds: int) -> None:
        """End the lease by writing `value` (for `ttl_seconds`) in its place."""
        self._stop_renewing()
        await self._lock.redis.set(self.name, value, ex=ttl_seconds)


class UpdateDedup(BaseMiddleware):
    """One replica handles an update_id, however often Telegram posts it.

    `<prefix>:update:<id>` is a lease while the update is handled (its
    replica's token, `lease_seconds`, renewed) and `done` for `ttl_seconds`
    after. A redelivery finding `done` is dropped. One finding a lease is in
    hand elsewhere: the webhook answers 503 so that Telegram posts it again
    later; if the replica holding it died, the lease has expired by then and
    the update is handled. If the update fails, the lease is released so a
    redelivery may try again.

    Outer middleware on updates for everything but button presses; a press is
    answered first (answering twice is harmless) and checked by the same
    instance registered as an inner middleware of presses, after the answer.

    If Redis cannot answer (or its breaker is open), the update is handled:
    its writes are guarded in the database anyway, so a rare double is a
    polite no-op, never a second payout."""

    def __init__(
        self,
        redis: Redis,
        keys: CacheKeys,
        ttl_seconds: int,
        lease_seconds: float,
        guard: RedisGuard | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_seconds = ttl_seconds
        self.lease_seconds = lease_seconds
        self.guard = guard
        self.dropped = 0  # handled already
        self.deferred = 0  # in hand elsewhere: Telegram asked to post it later

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if isinstance(event, Update):
            if event.callback_query is not None:  # checked after its answer
                return await handler(event, data)
            update_id = event.update_id
        elif isinstance(event, CallbackQuery):
            update_id = data["event_update"].update_id
        else:
            return await handler(event, data)
        if self.guard is not None and not self.guard.allow():
            return await handler(event, data)
        lease = Lease(self.redis, self.keys.update(update_id), self.lease_seconds)
        try:
            taken = await lease.acquire()
            holder = None if taken else await self.redis.get(lease.name)
        except RedisError as exc:
            if self.guard is not None:
                self.guard.failed()
            log.warning("update %s: dedup skipped, Redis failed: %r", update_id, exc)
            return await handler(event, data)
        if self.guard is not None:
            self.guard.succeeded()
        if not taken:
            return self._not_ours(update_id, holder)
        try:
            result = await handler(event, data)
        except BaseException:
            await lease.release()
            raise
        try:
            await lease.replace(DONE, self.ttl_seconds)
        except RedisError as exc:  # the lease expires; a redelivery is guarded in the database
            log.warning("update %s: not marked as handled: %r", update_id, exc)
        return result

    def _not_ours(self, update_id: int, holder: bytes | None) -> None:
        reply = webhook_reply.get()
        if holder != DONE and reply is not None:
            reply.retry_later = True
            self.deferred += 1
            log.info("update %s is in hand elsewhere; Telegram will post it again", update_id)
            return
        self.dropped += 1
        log.info("update %s already handled; dropped", update_id)


class RedisUserLock(BaseEventIsolation):
    """One user's updates one at a time across replicas: a `Lease` on
    `<prefix>:fsm:...:lock` (aiogram's key for it), `lease_seconds` long and
    renewed while held, so a lock its holder could not release (Redis away, a
    dead connection, the replica killed) frees the user within
    `lease_seconds`. Updates of one user in this process queue on a process
    lock first, so only one of them polls Redis.

    Ordering is a courtesy, not what keeps money right (the database guards
    every move): when Redis fails or its breaker is open, or the lock is not
    free after `2 × lease_seconds` (a holder renewing it that long), the
    update runs without it rather than waiting on."""

    def __init__(
        self, redis: Redis, key_builder: KeyBuilder, lease_seconds: float, guard: RedisGuard
    ) -> None:
        self.redis = redis
        self.key_builder = key_builder
        self.lease_seconds = lease_seconds
        self.guard = guard
        self.process = ProcessEventIsolation()
        self.unlocked = 0  # updates run without the Redis lock

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncIterator[None]:
        async with self.process.lock(key):
            lease = Lease(self.redis, self.key_builder.build(key, "lock"), self.lease_seconds)
            taken, why = False, "Redis is skipped for a moment after a failure"
            if self.guard.allow():
                try:
                    taken = await lease.acquire(wait=2 * self.lease_seconds)
                    self.guard.succeeded()
                    why = "still held after waiting"
                except RedisError as exc:
                    self.guard.failed()
                    why = f"Redis failed: {exc!r}"
            if not taken:
                self.unlocked += 1
                log.warning("%s: handled without the user's lock (%s)", lease.name, why)
            try:
                yield
            finally:
                if taken:
                    await lease.release()

    async def close(self) -> None:
        await self.process.close()


class JobLock:
    """One replica per tick: `SET <prefix>:job:<name> <token> NX PX <tick>`.

    The key is never released: it expires with the tick, so however many
    replicas wake up in that tick, one runs the job."""

    def __init__(self, redis: Redis, keys: CacheKeys) -> None:
        self.redis = redis
        self.keys = keys
        self.token = secrets.token_hex(8)

    async def acquire(self, name: str, ttl_ms: int) -> bool:
        return bool(await self.redis.set(self.keys.job(name), self.token, nx=True, px=ttl_ms))
