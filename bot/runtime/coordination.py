"""What makes several replicas safe to run side by side: a redelivered update
is handled once, one user's updates run one at a time, and a background job
runs on one replica per tick (the webhook, set once per configuration:
`bot/runtime/webhook.py`). All of it is a Redis key under the cache's prefix
(`cache.keys`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aiogram import BaseMiddleware
from aiogram.fsm.middleware import FSMContextMiddleware
from aiogram.fsm.storage.base import BaseEventIsolation, KeyBuilder, StorageKey
from aiogram.types import CallbackQuery, TelegramObject, Update
from redis.asyncio import Redis

from bot.runtime.leases import DONE, Lease, TokenLock, UpdateLease
from bot.telegram.fsm import GuardedStorage, RedisGuard
from bot.telegram.middlewares import ProcessEventIsolation
from cache.client import REDIS_ERRORS
from cache.keys import CacheKeys
from cache.scripts import UpdateLeaseScripts

__all__ = ["DONE", "JobLock", "Lease", "RedisUserLock", "UpdateDedup", "WebhookReply"]

log = logging.getLogger(__name__)


@dataclass
class WebhookReply:
    """What the webhook answers Telegram for the update being handled: set per
    request by the webhook server (bot/runtime/webhook.py), read there after handling."""

    retry_later: bool = False


webhook_reply: ContextVar[WebhookReply | None] = ContextVar("webhook_reply", default=None)


# The user whose lock the current update took with its update_id (UpdateDedup):
# RedisUserLock lets that update through without taking it again.
_taken_with_update: ContextVar[StorageKey | None] = ContextVar("user_taken", default=None)


class UpdateDedup(BaseMiddleware):
    """One replica handles an update_id, however often Telegram posts it, and
    with `users`, one user's updates one at a time: both in one round trip
    before the update (`UpdateLease`), and one after it.

    `<prefix>:update:<id>` is a lease while the update is handled (its
    replica's token, `lease_seconds`, renewed) and `done` for `ttl_seconds`
    after. A redelivery finding `done` is dropped. One finding a lease is in
    hand elsewhere: the webhook answers 503 so that Telegram posts it again
    later; if the replica holding it died, the lease has expired by then and
    the update is handled. If the update fails, the lease is released so a
    redelivery may try again. The user's lock (`RedisUserLock`) is taken with
    the lease, after this process's own lock for the user; if another replica
    holds it, the update waits for it as `RedisUserLock` does.

    Outer middleware on updates for everything but button presses; a press is
    answered first (answering twice is harmless) and checked by the same
    instance registered as an inner middleware of presses, after the answer.

    If Redis cannot answer (or its breaker is open), the update is handled
    without either: its writes are guarded in the database anyway, so a rare
    double is a polite no-op, never a second payout."""

    def __init__(
        self,
        redis: Redis,
        keys: CacheKeys,
        ttl_seconds: int,
        lease_seconds: float,
        guard: RedisGuard | None = None,
        *,
        users: RedisUserLock | None = None,
        contexts: FSMContextMiddleware | None = None,
    ) -> None:
        self.scripts = UpdateLeaseScripts(redis)
        self.keys = keys
        self.ttl_seconds = ttl_seconds
        self.lease_seconds = lease_seconds
        self.guard = guard
        self.users = users
        self.contexts = contexts
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
        user = self._user(data)
        if self.users is None or user is None:
            return await self._handle(handler, event, data, update_id, None)
        # this process's lock for the user first: its updates queue here, not on Redis
        async with self.users.process.lock(user):
            token = _taken_with_update.set(user)
            try:
                return await self._handle(handler, event, data, update_id, user)
            finally:
                _taken_with_update.reset(token)

    def _user(self, data: dict[str, Any]) -> StorageKey | None:
        """The user (their FSM key) whose lock the update takes, if any."""
        if self.users is None or self.contexts is None:
            return None
        context = self.contexts.resolve_event_context(data["bot"], data)
        return context.key if context is not None else None

    async def _handle(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
        update_id: int,
        user: StorageKey | None,
    ) -> Any:
        users = self.users if user is not None else None
        lock = users.key_builder.build(user, "lock") if users and user else None
        # tagged with the user's slot group: one script takes it with their lock
        update = self.keys.update(update_id, user.user_id if user is not None else None)
        lease = UpdateLease(self.scripts, update, lock, self.lease_seconds)
        if self.guard is not None and not self.guard.allow():
            if users is not None:
                users.skipped(lease.lock, "Redis is skipped for a moment after a failure")
            return await handler(event, data)
        form = users.forms.form_keys(user) if users and user and users.forms else None
        try:
            taken = await lease.take(form)
        except REDIS_ERRORS as exc:
            if self.guard is not None:
                self.guard.failed()
            log.warning("update %s: dedup skipped, Redis failed: %r", update_id, exc)
            if users is not None:
                users.skipped(lease.lock, f"Redis failed: {exc!r}")
            return await handler(event, data)
        if self.guard is not None:
            self.guard.succeeded()
        if taken[0] != 1:
            return self._not_ours(update_id, taken[1])
        if users is not None and user is not None:
            if lease.lock in lease.held:
                if users.forms is not None and len(taken) == 4:
                    users.forms.remember(user, users.forms.decode(taken[2], taken[3]))
            elif await users.wait(lease):
                lease.hold(str(lease.lock))
        try:
            result = await handler(event, data)
        except BaseException:
            await lease.release(done=False, done_seconds=self.ttl_seconds)
            raise
        await lease.release(done=True, done_seconds=self.ttl_seconds)
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
        if _taken_with_update.get() == key:  # held already, released with the update
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
