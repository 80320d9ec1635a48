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
from contextvars import ContextVar
from typing import Any, NamedTuple, TypeVar

from aiogram import BaseMiddleware
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey
from aiogram.fsm.storage.redis import DefaultKeyBuilder, RedisStorage
from aiogram.types import TelegramObject
from redis.asyncio import RedisCluster
from redis.exceptions import RedisError

from cache.breaker import CircuitBreaker
from cache.client import REDIS_ERRORS
from cache.keys import tag_of

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
        except REDIS_ERRORS as exc:
            self.breaker.record_failure()
            raise StateUnavailable(f"Redis failed: {exc!r}") from exc
        self.breaker.record_success()
        return result

    def failed(self) -> None:
        self.breaker.record_failure()

    def succeeded(self) -> None:
        self.breaker.record_success()


class FormKeyBuilder(DefaultKeyBuilder):
    """aiogram's key layout with the hash tag of the user's slot group after
    the prefix (cache/keys.py): a user's form keys and lock share a slot with
    their update leases, so one script or MULTI may touch them together on
    Redis Cluster."""

    def build(self, key: StorageKey, part: str | None = None) -> str:
        built = super().build(key, part)
        head = self.prefix + self.separator
        return f"{head}{tag_of(key.user_id)}{self.separator}{built[len(head) :]}"


class Form(NamedTuple):
    """A user's form as one update sees it: the step and the data."""

    state: str | None
    data: dict[str, Any]


# The forms read during the current update, by key: set per update by
# `FormScope`; None (outside an update) reads Redis every time.
_forms: ContextVar[dict[StorageKey, Form] | None] = ContextVar("forms", default=None)


class FormScope(BaseMiddleware):
    """Outer middleware on updates: the update reads its sender's form (step
    and data) at most once, whichever of them it asks for first.

    What was read stays true for the update: it runs under the user's lock,
    so no other update of the user writes the form meanwhile, and the
    update's own writes replace what it remembers."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        token = _forms.set({})
        try:
            return await handler(event, data)
        finally:
            _forms.reset(token)


class GuardedStorage(BaseStorage):
    """An FSM storage (RedisStorage, in the product) behind `RedisGuard`.

    With Redis, a form costs one round trip to read (its step and data keys,
    aiogram's layout, in one MGET, remembered for the update: `FormScope`)
    and one to write both (`write`: MULTI/EXEC)."""

    def __init__(self, storage: BaseStorage, guard: RedisGuard) -> None:
        self.storage = storage
        self.guard = guard

    async def get_state(self, key: StorageKey) -> str | None:
        return (await self.read(key)).state

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        # a copy: the caller may change it without changing what is remembered
        return copy.deepcopy((await self.read(key)).data)

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        await self._write(key, self.storage.set_state(key, state))
        known = self._known(key)
        if known is not None:
            self.remember(key, Form(_state_name(state), known.data))

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await self._write(key, self.storage.set_data(key, data))
        known = self._known(key)
        if known is not None:
            self.remember(key, Form(known.state, copy.deepcopy(dict(data))))

    async def read(self, key: StorageKey) -> Form:
        """The form's step and data: remembered for the update after the first read."""
        known = self._known(key)
        if known is not None:
            return known
        form = await self.guard.call(self._fetch(key))
        self.remember(key, form)
        return form

    async def write(self, key: StorageKey, state: StateType, data: Mapping[str, Any]) -> None:
        """Set `state` and `data` together: with Redis, in one MULTI/EXEC (aiogram's
        own writes, queued on a transaction), so a failure leaves both as they were."""
        storage = self.storage
        if isinstance(storage, RedisStorage):

            async def both() -> None:
                async with storage.redis.pipeline(transaction=True) as pipe:
                    queued = copy.copy(storage)
                    queued.redis = _Queue(pipe)  # type: ignore[assignment]
                    await queued.set_data(key, dict(data))
                    await queued.set_state(key, state)
                    await pipe.execute()

            await self._write(key, both())
        else:
            await self._write(key, storage.set_data(key, dict(data)))
            await self._write(key, storage.set_state(key, state))
        self.remember(key, Form(_state_name(state), copy.deepcopy(dict(data))))

    def form_keys(self, key: StorageKey) -> tuple[str, str] | None:
        """The Redis keys of the form's step and data (None: not in Redis)."""
        if not isinstance(self.storage, RedisStorage):
            return None
        build = self.storage.key_builder.build
        return build(key, "state"), build(key, "data")

    def decode(self, state: bytes | None, data: bytes | None) -> Form:
        """A form from its two Redis values, as aiogram's RedisStorage reads them."""
        assert isinstance(self.storage, RedisStorage)
        return Form(
            state.decode() if state is not None else None,
            self.storage.json_loads(data) if data is not None else {},
        )

    def remember(self, key: StorageKey, form: Form) -> None:
        """Keep `form` as the form's value for the rest of the update."""
        forms = _forms.get()
        if forms is not None:
            forms[key] = form

    def _known(self, key: StorageKey) -> Form | None:
        forms = _forms.get()
        return forms.get(key) if forms is not None else None

    async def _fetch(self, key: StorageKey) -> Form:
        keys = self.form_keys(key)
        if keys is None:
            return Form(await self.storage.get_state(key), await self.storage.get_data(key))
        assert isinstance(self.storage, RedisStorage)
        state, data = await self.storage.redis.mget(keys)
        return self.decode(state, data)

    async def _write(self, key: StorageKey, operation: Awaitable[None]) -> None:
        try:
            await self.guard.call(operation)
        except StateUnavailable:
            # written or not: read again if asked
            forms = _forms.get()
            if forms is not None:
                forms.pop(key, None)
            raise

    async def close(self) -> None:
        storage = self.storage
        if isinstance(storage, RedisStorage) and isinstance(storage.redis, RedisCluster):
            # aiogram closes the client with an argument only one Redis takes
            await storage.redis.aclose()
            return
        await storage.close()


class _Queue:
    """A MULTI as aiogram's storage sees a client: each command it awaits is
    queued. (Awaiting a cluster pipeline itself would empty its queue.)"""

    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe

    def __getattr__(self, name: str) -> Callable[..., Awaitable[None]]:
        command = getattr(self._pipe, name)

        async def queue(*args: Any, **kwargs: Any) -> None:
            command(*args, **kwargs)

        return queue


def _state_name(state: StateType) -> str | None:
    return state.state if isinstance(state, State) else state


async def enter(state: FSMContext, step: State | None, data: Mapping[str, Any]) -> None:
    """Open (or move, or with `step` None leave) a form: `step` with `data`, both
    or neither, so a form is never left at a step with another step's data."""
    if isinstance(state.storage, GuardedStorage):
        await state.storage.write(state.key, step, data)
    else:
        await state.set_data(dict(data))
        await state.set_state(step)


async def advance(state: FSMContext, step: State, **changes: Any) -> None:
    """Move a form to `step`, adding `changes` to its data (one write)."""
    data = await state.get_data()
    data.update(changes)
    await enter(state, step, data)
