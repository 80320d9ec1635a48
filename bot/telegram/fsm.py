"""Form state (aiogram's FSM) in Redis, with the cache's fail-fast policy.

Every typed message reads its sender's state (which wizard step it answers),
so a Redis that hangs must not hang messages: the storage uses the bot's
Redis client (short timeouts, cache/client.py) behind a circuit breaker
shared with the per-user lock and the update dedup (bot/runtime/coordination.py). While
Redis fails, state is not guessed:

- a typed message whose state could not be read raises `StateUnread`: the
  sender is asked to send it again in a moment (it may be a wizard step);
- a press that opens or advances a form raises `StateUnavailable` when the
  form can't be written: the user is told forms are unavailable for a moment;
- a press that only shows something (menu, wallet, deals) reads no state and
  works, from Postgres if the cache can't help.

Both replies come from bot/telegram/handlers/errors.py, which also says nothing was
changed: no use case ran (a state read or write happens before a form's use
case; after it, `close_form` logs a failure instead of raising).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey
from aiogram.fsm.storage.redis import RedisStorage
from redis.exceptions import RedisError

from cache.breaker import CircuitBreaker

T = TypeVar("T")


class StateUnavailable(RedisError):
    """Form state could not be read or written (Redis failed or is skipped)."""


class StateUnread(StateUnavailable):
    """A typed message's state could not be read: it was not handled."""


class RedisGuard:
    """The breaker in front of Redis for state, locks and dedup: after a
    failure they skip Redis for `open_seconds` (one caller then probes), so an
    outage costs an update nothing instead of a timeout each."""

    def __init__(self, open_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.breaker = CircuitBreaker(open_seconds, clock)

    def allow(self) -> bool:
        return self.breaker.allow()

    async def call(self, operation: Awaitable[T]) -> T:
        """`operation`'s result; a Redis failure (or an open breaker, in which
        case it is not awaited) raises `StateUnavailable`."""
        if not self.breaker.allow():
            operation.close()  # type: ignore[attr-defined]
            raise StateUnavailable("Redis is skipped for a moment after a failure")
        try:
            result = await operation
        except (RedisError, OSError) as exc:
            self.breaker.record_failure()
            raise StateUnavailable(f"Redis failed: {exc!r}") from exc
        self.breaker.record_success()
        return result

    def failed(self) -> None:
        self.breaker.record_failure()

    def succeeded(self) -> None:
        self.breaker.record_success()


class GuardedStorage(BaseStorage):
    """An FSM storage (RedisStorage, in the product) behind `RedisGuard`."""

    def __init__(self, storage: BaseStorage, guard: RedisGuard) -> None:
        self.storage = storage
        self.guard = guard

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        await self.guard.call(self.storage.set_state(key, state))

    async def get_state(self, key: StorageKey) -> str | None:
        return await self.guard.call(self.storage.get_state(key))

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await self.guard.call(self.storage.set_data(key, data))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        return await self.guard.call(self.storage.get_data(key))

    async def enter(self, key: StorageKey, step: State, data: Mapping[str, Any]) -> None:
        """Set `data` and `step` together: with Redis, in one MULTI/EXEC (aiogram's
        own writes, queued on a transaction), so a failure leaves both as they were."""
        storage = self.storage
        if not isinstance(storage, RedisStorage):
            await self.set_data(key, data)
            await self.set_state(key, step)
            return

        async def both() -> None:
            async with storage.redis.pipeline(transaction=True) as pipe:
                queued = copy.copy(storage)
                queued.redis = pipe
                await queued.set_data(key, dict(data))
                await queued.set_state(key, step)
                await pipe.execute()

        await self.guard.call(both())

    async def close(self) -> None:
        await self.storage.close()


async def enter(state: FSMContext, step: State, data: Mapping[str, Any]) -> None:
    """Open (or move) a form to `step` with `data`, both or neither: a form is
    never left at a step with another step's data."""
    if isinstance(state.storage, GuardedStorage):
        await state.storage.enter(state.key, step, data)
    else:
        await state.set_data(dict(data))
        await state.set_state(step)
