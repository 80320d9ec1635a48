"""L1: this process's own copy of user snapshots, bounded in size and in age.

An entry stays while the invalidation listener is trusted: until an event
drops it, the copy is full and it is the least recently read, or it is
`l1_ttl_seconds` old (a backstop for an event lost while subscribed, which a
live subscription does not do; see docs/cache.md). Invalidations bump
an epoch (the whole copy) or a stripe (one user's, shared with the users
hashed to it): a read marks both before it goes to Redis or Postgres and
keeps what it got only if neither moved meanwhile, so a read that raced an
invalidation cannot put back what the invalidation removed. When L1 may be
trusted at all is the read-through's call (cache/store.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from cache.snapshots import UserSnapshot

_STRIPES = 1024  # a power of two
_STRIPE_MASK = _STRIPES - 1

_Entry = tuple[float, UserSnapshot]  # (expires at, snapshot); read order, oldest first
Mark = tuple[int, int]  # (epoch, the user's stripe) when a read started


class LocalSnapshots:
    def __init__(self, size: int, ttl: float, clock: Callable[[], float]) -> None:
        self.enabled = size > 0 and ttl > 0
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._size = size
        self._ttl = ttl
        self._clock = clock
        self._epoch = 0
        self._stripes = [0] * _STRIPES

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, telegram_id: int) -> UserSnapshot | None:
        """The user's snapshot, unless there is none or it has expired."""
        entries = self._entries
        entry = entries.get(telegram_id)
        if entry is None or entry[0] <= self._clock():
            return None
        entries.move_to_end(telegram_id)
        return entry[1]

    def mark(self, telegram_id: int) -> Mark:
        """Where the invalidations stand now, for `remember` to compare with."""
        return self._epoch, self._stripes[telegram_id & _STRIPE_MASK]

    def remember(self, telegram_id: int, snapshot: UserSnapshot, mark: Mark) -> bool:
        """Keep `snapshot` unless a newer version is here already; False (and not
        kept) if an invalidation came in since `mark`."""
        if mark != (self._epoch, self._stripes[telegram_id & _STRIPE_MASK]):
            return False
        entries = self._entries
        current = entries.get(telegram_id)
        if current is not None:
            if current[1].version > snapshot.version:
                return True
            del entries[telegram_id]
        elif len(entries) >= self._size:
            entries.popitem(last=False)  # the least recently read
        entries[telegram_id] = (self._clock() + self._ttl, snapshot)
        return True

    def drop(self, telegram_id: int, version: int | None = None) -> None:
        """Forget the user's entry (if older than `version`); reads of the user
        already under way will not keep what they get."""
        self._stripes[telegram_id & _STRIPE_MASK] += 1
        entry = self._entries.get(telegram_id)
        if entry is not None and (version is None or entry[1].version < version):
            del self._entries[telegram_id]

    def clear(self) -> None:
        """Forget everything; reads already under way will not keep what they get."""
        self._entries.clear()
        self._epoch += 1
