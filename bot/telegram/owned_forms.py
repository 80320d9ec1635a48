"""Forms a single process owns: read from memory, written in one round trip.

In polling and local mode one process receives every update (a second
poller gets Telegram's 409), so the form it last wrote for a user is
still that user's form when their next message comes: a wizard step reads it
from memory and costs only its write. The write is conditional (one script,
`cache.scripts.FORM_CAS_SCRIPT`, the round trip the MULTI it replaces cost):
Redis must still hold what this process last wrote. If it does not, because another process served
the user meanwhile (two instances overlapping during a deploy) or Redis lost
or restored its keys, nothing is written, the process forgets its copy and
the update is refused as unread (`fsm.FormMoved`): the user sends it again and
the form is read from Redis. Webhook replicas, where any replica may get a
user's next update, read the form with the update's lease instead
(bot/runtime/coordination.py) and keep no copy.

A copy is made when this process writes a form (or reads that there is
none), lives as long as the form's keys do in Redis (their TTL from that
write) and at most `capacity` of them are kept, the least recently used
dropped first. A form read from Redis is not kept until written: how long its
keys have left is not known here. What a copy does not guard: a step answered
from an out-of-date copy without a write (a typed amount refused as invalid)
is answered as that step; nothing is changed by it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.redis import RedisStorage

from cache.scripts import FORM_CAS_SCRIPT


class Form(NamedTuple):
    """A user's form as one update sees it: the step and the data."""

    state: str | None
    data: dict[str, Any]


# What Redis holds for a form: its step's and its data's values (None: no key).
Raw = tuple[bytes | None, bytes | None]


@dataclass(slots=True)
class Owned:
    form: Form
    raw: Raw
    seen: float


class OwnedForms:
    """This process's copies of its users' forms (see the module's doc)."""

    def __init__(
        self,
        storage: RedisStorage,
        capacity: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.capacity = capacity
        self._clock = clock
        self._ttl = float(_seconds(storage.state_ttl) or 0) or float("inf")
        self._copies: OrderedDict[StorageKey, Owned] = OrderedDict()
        self._cas = storage.redis.register_script(FORM_CAS_SCRIPT)
        self.moved = 0  # writes refused: the form had changed elsewhere

    def get(self, key: StorageKey) -> Form | None:
        owned = self._copies.get(key)
        if owned is None:
            return None
        if self._clock() - owned.seen >= self._ttl:  # gone from Redis by now
            del self._copies[key]
            return None
        self._copies.move_to_end(key)
        return owned.form

    def keep(self, key: StorageKey, form: Form, raw: Raw) -> None:
        self._copies[key] = Owned(form, raw, self._clock())
        self._copies.move_to_end(key)
        while len(self._copies) > self.capacity:
            self._copies.popitem(last=False)

    def wrote(self, key: StorageKey, state: str | None = None, data: Any = None) -> None:
        """One part of a copied form written as is (aiogram's own `set_state`
        or `set_data`, as `FSMContext.clear` calls them): the copy follows."""
        owned = self._copies.get(key)
        if owned is None:
            return
        form, raw = owned.form, owned.raw
        if data is None:
            form, raw = Form(state, form.data), (self.encode(state, {})[0], raw[1])
        else:
            form, raw = Form(form.state, dict(data)), (raw[0], self.encode(None, data)[1])
        self.keep(key, form, raw)

    def forget(self, key: StorageKey) -> None:
        self._copies.pop(key, None)

    def encode(self, state: str | None, data: Mapping[str, Any]) -> Raw:
        """The values aiogram's RedisStorage writes for `state` and `data`."""
        return (
            state.encode() if state is not None else None,
            self.storage.json_dumps(dict(data)).encode() if data else None,
        )

    async def write(
        self, keys: tuple[str, str], key: StorageKey, form: Form, written: Raw
    ) -> bool | None:
        """Write `form` (`written`: encoded) if Redis holds what this process
        last saw of it: True; False if not (nothing written, this copy
        forgotten); None if this process has no copy (nothing written)."""
        seen = self._copies.get(key)
        if seen is None:
            return None
        done = await self._cas(
            keys=list(keys),
            args=(
                seen.raw[0] or b"",
                seen.raw[1] or b"",
                written[0] or b"",
                written[1] or b"",
                _seconds(self.storage.state_ttl) or 0,
                _seconds(self.storage.data_ttl) or 0,
            ),
        )
        if not done:
            self.moved += 1
            self.forget(key)
            return False
        self.keep(key, form, written)
        return True


def _seconds(ttl: Any) -> int | None:
    if ttl is None:
        return None
    return int(ttl.total_seconds()) if hasattr(ttl, "total_seconds") else int(ttl)
