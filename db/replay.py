"""How far a hot standby has replayed its primary, measured in the background.

Every `interval` seconds, on connections of its own: the primary's WAL
position P, read by a statement sent at clock time t, then the standby's
replay position R. Every commit that had finished before t lies before P, so
once R >= P the standby shows all of them: `caught_up` becomes t. A write
noted at clock time m (after its commit) is on the standby once
`caught_up > m`; `now - caught_up` bounds the standby's lag (the true lag
plus at most one interval).

A check that fails (the standby down, refusing, promoted, made from another
primary, or the primary unreachable) marks the standby down; only a check started after the last
failure brings it back. No user's update waits for any of this.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from db.sql.ops import PRIMARY_WAL_POSITION, STANDBY_REPLAY, SYSTEM_IDENTIFIER

log = logging.getLogger(__name__)

# Primary positions not yet replayed; an older one is dropped when full (the
# standby then counts as further behind than it is, never as closer).
SAMPLES = 1000


class NotAStandby(Exception):
    """The read_url server is not replaying WAL (promoted, or a primary)."""


class ReplayWatch:
    def __init__(
        self,
        primary: AsyncEngine,
        standby: AsyncEngine,
        interval: float,
        check_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._primary = primary.execution_options(isolation_level="AUTOCOMMIT")
        self._standby = standby.execution_options(isolation_level="AUTOCOMMIT")
        self.interval = interval
        self._check_timeout = check_timeout
        self._clock = clock
        # Clock time before which every commit is replayed on the standby.
        self.caught_up = -math.inf
        self.up = False
        self._failed_at = -math.inf
        self._same_system = False
        self._samples: deque[tuple[float, int]] = deque(maxlen=SAMPLES)
        self.checks = 0
        self.failures = 0
        # Run after every check, passed or failed.
        self.after_check: list[Callable[[], None]] = []
        self._checked = asyncio.Condition()

    def lag(self) -> float:
        """Seconds the standby may be behind (inf before its first check)."""
        return max(self._clock() - self.caught_up, 0.0)

    async def check(self) -> None:
        started = self._clock()
        async with self._primary.connect() as conn:
            position = int(await conn.scalar(PRIMARY_WAL_POSITION))
            primary_system = None if self._same_system else await conn.scalar(SYSTEM_IDENTIFIER)
        self._samples.append((started, position))
        async with self._standby.connect() as conn:
            row = (await conn.execute(STANDBY_REPLAY)).one()
            if primary_system is not None:
                # A standby of another primary replays positions that mean
                # nothing here: checked after every start and every failure.
                if await conn.scalar(SYSTEM_IDENTIFIER) != primary_system:
                    raise NotAStandby("the read_url server is a standby of another primary")
                self._same_system = True
        if not row.in_recovery or row.replayed is None:
            raise NotAStandby("the read_url server is not a standby replaying WAL")
        replayed = int(row.replayed)
        samples = self._samples
        while samples and samples[0][1] <= replayed:
            self.caught_up = max(self.caught_up, samples.popleft()[0])
        self.checks += 1
        if started > self._failed_at and not self.up:
            self.up = True
            log.info("the standby answers: reads may go there again")
        for hook in self.after_check:
            hook()
        async with self._checked:
            self._checked.notify_all()

    async def replayed_since(self, moment: float) -> None:
        """Until a check shows every commit made before `moment` (clock time)
        replayed on the standby (wrap it in `asyncio.timeout`)."""
        async with self._checked:
            await self._checked.wait_for(lambda: self.up and self.caught_up > moment)

    def failed(self, exc: BaseException) -> None:
        """The standby failed a check or a read: not used until a later check passes."""
        self._failed_at = self._clock()
        self._same_system = False
        self.failures += 1
        if self.up:
            self.up = False
            log.warning("the standby failed (%r): reads go to the primary", exc)

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._check_timeout):
                    await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.checks == 0 and self.failures == 0:
                    log.warning(
                        "the standby does not answer yet (%r): reads go to the primary", exc
                    )
                self.failed(exc)
                for hook in self.after_check:
                    hook()
            await asyncio.sleep(self.interval)
