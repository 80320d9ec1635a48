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
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from contextvars import ContextVar, copy_context
from dataclasses import dataclass
from typing import Any

from aiogram import BaseMiddleware
from aiogram.fsm.middleware import FSMContextMiddleware
from aiogram.fsm.storage.base import StorageKey
from aiogram.types import CallbackQuery, TelegramObject, Update
from redis.asyncio import Redis

from bot.runtime.leases import DONE, Lease, UpdateLease
from bot.runtime.user_lock import RedisUserLock, taken_with_update
from bot.telegram.middlewares import InFlightCount
from bot.telegram.redis_guard import RedisGuard
from cache.client import REDIS_ERRORS, round_trips
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


# An update handled without a lease: Redis failed or is skipped (`UpdateDedup`).
UNLEASED: Any = object()


class UpdateDedup(BaseMiddleware):
    """One replica handles an update_id, however often Telegram posts it, and
    with `users`, one user's updates one at a time: both in one round trip
    before the update (`UpdateLease`), and one after it, off the update's path.

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
        in_flight: InFlightCount | None = None,
    ) -> None:
        self.scripts = UpdateLeaseScripts(redis)
        self.keys = keys
        self.ttl_seconds = ttl_seconds
        self.lease_seconds = lease_seconds
        self.guard = guard
        self.users = users
        self.contexts = contexts
        self.in_flight = in_flight
        self._releasing: set[asyncio.Task[None]] = set()
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
            return await self._handle(handler, event, data, update_id, None, None)
        # this process's lock for the user first: its updates queue here, not on
        # Redis; given back once the Redis lock is (after the update, see `_handle`)
        process = self.users.process
        await process.acquire(user)
        token = taken_with_update.set(user)
        try:
            return await self._handle(
                handler, event, data, update_id, user, lambda: process.release(user)
            )
        finally:
            taken_with_update.reset(token)

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
        then: Callable[[], None] | None,
    ) -> Any:
        """The update handled under its lease; `then` is called once the lease
        is given back, or at once if none was taken."""
        handed_over = False
        try:
            lease = await self._take(event, data, update_id, user)
            if lease is None:
                return None
            if lease is UNLEASED:
                return await handler(event, data)
            try:
                result = await handler(event, data)
            except BaseException:
                self._release_later(lease, False, then)
                handed_over = True
                raise
            self._release_later(lease, True, then)
            handed_over = True
            return result
        finally:
            if not handed_over and then is not None:
                then()

    async def _take(
        self, event: TelegramObject, data: dict[str, Any], update_id: int, user: StorageKey | None
    ) -> UpdateLease | None:
        """The update's lease (and the user's lock), `UNLEASED` to handle it
        without, or None: it is not this replica's to handle."""
        users = self.users if user is not None else None
        lock = users.key_builder.build(user, "lock") if users and user else None
        # tagged with the user's slot group: one script takes it with their lock
        update = self.keys.update(update_id, user.user_id if user is not None else None)
        lease = UpdateLease(self.scripts, update, lock, self.lease_seconds)
        if self.guard is not None and not self.guard.allow():
            if users is not None:
                users.skipped(lease.lock, "Redis is skipped for a moment after a failure")
            return UNLEASED
        form = users.forms.form_keys(user) if users and user and users.forms else None
        try:
            taken = await lease.take(form)
        except REDIS_ERRORS as exc:
            if self.guard is not None:
                self.guard.failed()
            log.warning("update %s: dedup skipped, Redis failed: %r", update_id, exc)
            if users is not None:
                users.skipped(lease.lock, f"Redis failed: {exc!r}")
            return UNLEASED
        if self.guard is not None:
            self.guard.succeeded()
        if taken[0] != 1:
            self._not_ours(update_id, taken[1])
            return None
        if users is not None and user is not None:
            if lease.lock in lease.held:
                if users.forms is not None and len(taken) == 4:
                    users.forms.remember(user, users.forms.decode(taken[2], taken[3]))
            elif await users.wait(lease):
                lease.hold(str(lease.lock))
        return lease

    def _release_later(
        self, lease: UpdateLease, done: bool, then: Callable[[], None] | None
    ) -> None:
        """Give the lease back off the update's path: its reply is out already,
        and the webhook answers Telegram without waiting for Redis. The user's
        next update waits for it as before: on another replica for the Redis
        lock, here for the process lock, which `then` gives back after it.
        Counted in flight (a stop waits for it), not in the update's round
        trips (`cache.client.round_trips`)."""
        in_flight = self.in_flight.one() if self.in_flight is not None else nullcontext()
        in_flight.__enter__()

        def released(task: asyncio.Task[None]) -> None:
            # a callback, not the task's `finally`: it runs even for a task
            # cancelled before it started (a loop torn down)
            self._releasing.discard(task)
            if then is not None:
                then()
            in_flight.__exit__(None, None, None)
            if not task.cancelled() and (exc := task.exception()) is not None:
                log.warning("update lease %s: not given back (%r)", lease.update, exc)

        context = copy_context()
        context.run(round_trips.set, None)
        task = asyncio.get_running_loop().create_task(
            lease.release(done=done, done_seconds=self.ttl_seconds), context=context
        )
        self._releasing.add(task)
        task.add_done_callback(released)

    async def settled(self) -> None:
        """Until every lease given back after its update has been."""
        while self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)

    def _not_ours(self, update_id: int, holder: bytes | None) -> None:
        reply = webhook_reply.get()
        if holder != DONE and reply is not None:
            reply.retry_later = True
            self.deferred += 1
            log.info("update %s is in hand elsewhere; Telegram will post it again", update_id)
            return
        self.dropped += 1
        log.info("update %s already handled; dropped", update_id)


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
