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
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

from aiogram import BaseMiddleware
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey
from aiogram.fsm.storage.redis import DefaultKeyBuilder, RedisStorage
from aiogram.types import TelegramObject
from redis.asyncio import RedisCluster

from bot.telegram.owned_forms import Form, OwnedForms
from bot.telegram.redis_guard import FormMoved, RedisGuard, StateUnavailable
from cache.keys import tag_of

T = TypeVar("T")


class FormKeyBuilder(DefaultKeyBuilder):
    """aiogram's key layout with the hash tag of the user's slot group after
    the prefix (cache/keys.py): a user's form keys and lock share a slot with
    their update leases, so one script or MULTI may touch them together on
    Redis Cluster."""

    def build(self, key: StorageKey, part: str | None = None) -> str:
        built = super().build(key, part)
        head = self.prefix + self.separator
        return f"{head}{tag_of(key.user_id)}{self.separator}{built[len(head) :]}"


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
    and one to write both (`write`: MULTI/EXEC). With `owned` (one process
    gets every update), none to read a form this process wrote before (or
    found absent), and one to write it if unchanged meanwhile (`OwnedForms`)."""

    def __init__(
        self, storage: BaseStorage, guard: RedisGuard, owned: OwnedForms | None = None
    ) -> None:
        self.storage = storage
        self.guard = guard
        self.owned = owned

    async def get_state(self, key: StorageKey) -> str | None:
        return (await self.read(key)).state

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        # a copy: the caller may change it without changing what is remembered
        return copy.deepcopy((await self.read(key)).data)

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        await self._write(key, self.storage.set_state(key, state))
        if self.owned is not None:
            self.owned.wrote(key, state=_state_name(state))
        known = self._known(key)
        if known is not None:
            self.remember(key, Form(_state_name(state), known.data))

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await self._write(key, self.storage.set_data(key, data))
        if self.owned is not None:
            self.owned.wrote(key, data=copy.deepcopy(dict(data)))
        known = self._known(key)
        if known is not None:
            self.remember(key, Form(known.state, copy.deepcopy(dict(data))))

    async def read(self, key: StorageKey) -> Form:
        """The form's step and data: remembered for the update after the first read."""
        known = self._known(key) or (self.owned.get(key) if self.owned else None)
        if known is not None:
            self.remember(key, known)
            return known
        form = await self.guard.call(self._fetch(key))
        self.remember(key, form)
        return form

    async def write(self, key: StorageKey, state: StateType, data: Mapping[str, Any]) -> None:
        """Set `state` and `data` together: with Redis, in one MULTI/EXEC (aiogram's
        own writes, queued on a transaction), so a failure leaves both as they were;
        a form this process owns, in one script if unchanged (`OwnedForms.write`)."""
        storage = self.storage
        form = Form(_state_name(state), copy.deepcopy(dict(data)))
        keys = self.form_keys(key)
        if self.owned is not None and keys is not None:
            written = self.owned.encode(form.state, form.data)
            done = await self._write(key, self.owned.write(keys, key, form, written))
            if done is False:
                self._forget_known(key)
                raise FormMoved(f"{key.user_id}'s form was changed elsewhere: nothing written")
            if done:
                self.remember(key, form)
                return
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
        if self.owned is not None:
            self.owned.keep(key, form, self.owned.encode(form.state, form.data))
        self.remember(key, form)

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
        form = self.decode(state, data)
        if self.owned is not None and state is None and data is None:
            # no form (nothing to expire); one in Redis is kept once written
            self.owned.keep(key, form, (state, data))
        return form

    async def _write(self, key: StorageKey, operation: Awaitable[T]) -> T:
        try:
            return await self.guard.call(operation)
        except StateUnavailable:
            # written or not: read again if asked
            self._forget_known(key)
            if self.owned is not None:
                self.owned.forget(key)
            raise

    def _forget_known(self, key: StorageKey) -> None:
        forms = _forms.get()
        if forms is not None:
            forms.pop(key, None)

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
