"""Reads a hot standby may serve, and when they go to the primary instead.

What may read there: what a person is shown and nothing decides on it:
deal cards, "my deals" pages, the admin queues (bot/services/reads.py,
`DealLifecycle.get`) and the cache's snapshot loads (cache/loader.py). Money
decisions, every write transaction and every read inside a unit of work use
the primary; so does every other read.

Read-your-writes, by marks and WAL positions (not row versions): right after
a commit, the Telegram ids it concerns are marked with the clock time: the
people its events name (users whose snapshot changed, a deal's parties and
mover) and the person whose update made it (`acting_for`). Every replica
hears the same events on the invalidation channel and marks them too, when
they arrive (after the commit). A marked person's reads go to the primary
until the standby has replayed past a primary WAL position read after the
mark (db/replay.py); the next update of someone who just wrote normally
finds it so, and reads from the standby again.

Why not versions: a list (my deals, a queue) has no one version to compare,
and a deal the standby does not have yet is simply missing from it; the WAL
position covers every table at once. Why not each commit's own LSN: reading
it is one more statement in every write, and the statements per use case
are fixed (tests/integration/test_lifecycle.py).

A deal card the standby does not have is looked for on the primary too.
The standby is also skipped while it is down or failing (any error of a read
there: the read is run again on the primary and the standby is not used until
a later background check passes, so no update waits on it twice), further
behind than `read_max_lag_ms`, or while this replica cannot hear other
replicas' writes (`hears_writes`: the invalidation listener is not
subscribed). Each read is counted by target and reason (`reads`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

from db.driver import DriverReads, Statements
from db.events import DealChanged, UserChanged
from db.replay import ReplayWatch

T = TypeVar("T")
Work = Callable[[Statements], Awaitable[T]]

# The Telegram id of the person the running update is for (the runtime sets
# it per update): their own commit marks them even where no event names them,
# e.g. an admin's decision on someone else's withdrawal.
acting_for: ContextVar[int | None] = ContextVar("acting_for", default=None)

# What a failing standby raises: the read goes to the primary.
STANDBY_ERRORS = (DBAPIError, OSError, TimeoutError)

# (target, reason) of each read: ("standby", "caught_up") or ("primary", why).
REASONS = ("recent_write", "lag", "down", "unheard", "failed", "busy", "missing")


def _always() -> bool:
    return True


class StandbyReads:
    def __init__(
        self,
        engine: AsyncEngine,
        watch: ReplayWatch,
        max_lag_seconds: float,
        *,
        owned: tuple[AsyncEngine, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.reader = DriverReads(engine.execution_options(isolation_level="AUTOCOMMIT"))
        self.watch = watch
        self.max_lag = max_lag_seconds
        self.hears_writes: Callable[[], bool] = _always
        self.reads: Counter[tuple[str, str]] = Counter()
        self._clock = clock
        self._marks: dict[int, float] = {}
        # A mark on everyone: a cache reset (who changed is not known).
        self._everyone = -math.inf
        self._owned = owned
        self._task: asyncio.Task[None] | None = None
        watch.after_check.append(self._forget_replayed)

    # -- where a read goes ----------------------------------------------------

    def route(self, telegram_id: int | None) -> str | None:
        """Why `telegram_id`'s read must go to the primary now; None: the standby."""
        if not self.watch.up:
            return "down"
        caught_up = self.watch.caught_up
        if self._clock() - caught_up > self.max_lag:
            return "lag"
        if not self.hears_writes():
            return "unheard"
        if self._everyone >= caught_up:
            return "recent_write"
        if telegram_id is not None and self._marks.get(telegram_id, -math.inf) >= caught_up:
            return "recent_write"
        return None

    async def read(
        self,
        work: Work[T],
        telegram_id: int | None,
        primary: Callable[[Work[T]], Awaitable[T]],
        *,
        retry_empty: bool = False,
    ) -> T:
        """`work` (one autocommitted read) on the standby if it may serve
        `telegram_id` now, else (or if the standby fails it) through `primary`.
        `retry_empty`: nothing found on the standby is looked for on the
        primary too (a row it has not replayed yet must not read as "no such")."""
        reason = self.route(telegram_id)
        if reason is None:
            try:
                async with self.reader.connect() as conn:
                    result = await work(conn)
            except PoolTimeout:
                reason = "busy"  # every standby connection in use: no wait for one
            except STANDBY_ERRORS as exc:
                self.watch.failed(exc)
                reason = "failed"
            else:
                if not (retry_empty and not result):
                    self.reads["standby", "caught_up"] += 1
                    return result
                reason = "missing"
        self.reads["primary", reason] += 1
        return await primary(work)

    # -- who just wrote -----------------------------------------------------------

    def wrote(self, events: Iterable[object]) -> None:
        """After this replica's commit: mark whom it concerns, and who made it."""
        now = self._clock()
        writer = acting_for.get()
        if writer is not None:
            self._marks[writer] = now
        for event in events:
            self._mark(event, now)

    def heard(self, message: object) -> None:
        """An invalidation-listener hook: another replica's (or our own) commit."""
        self._mark(message, self._clock())

    def _mark(self, event: object, now: float) -> None:
        marks = self._marks
        if isinstance(event, UserChanged):
            marks[event.telegram_id] = now
        elif isinstance(event, DealChanged):
            for telegram_id in event.telegram_ids:
                marks[telegram_id] = now
            if event.mover is not None:
                marks[event.mover] = now
        else:  # a cache reset: whoever changed is not named
            self._everyone = now

    def marked(self) -> int:
        return len(self._marks)

    def _forget_replayed(self) -> None:
        """Marks the standby has replayed past, or older than any standby read
        may be (past `max_lag` the standby is not read at all), go."""
        horizon = max(self.watch.caught_up, self._clock() - self.max_lag)
        stale = [telegram_id for telegram_id, at in self._marks.items() if at < horizon]
        for telegram_id in stale:
            del self._marks[telegram_id]

    # -- the process ----------------------------------------------------------------

    def start(self) -> None:
        """Start measuring the standby; until the first check passes, reads go
        to the primary."""
        if self._task is None or self._task.done():
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self.watch.run(), name="standby-watch")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for engine in self._owned:
            await engine.dispose()
