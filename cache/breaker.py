"""A circuit breaker in front of Redis.

Closed: every call goes to Redis. After a failure it opens: calls skip Redis
for `open_seconds` (readers go straight to Postgres, so an outage costs each
update nothing, not a socket timeout). Then it is half-open: one caller at a
time probes Redis; a success closes it, a failure opens it again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    __slots__ = ("_clock", "_open_seconds", "_probe_until", "_reopen_at", "state")

    def __init__(self, open_seconds: float, clock: Callable[[], float]) -> None:
        self._open_seconds = open_seconds
        self._clock = clock
        self.state: BreakerState = "closed"
        self._reopen_at = 0.0
        # A probe that never reports back (its task was cancelled) must not
        # keep the breaker half-open forever: another may try after this.
        self._probe_until = 0.0

    @property
    def closed(self) -> bool:
        return self.state == "closed"

    def allow(self) -> bool:
        """Whether this call may use Redis; in half-open, one caller is let through."""
        if self.state == "closed":
            return True
        now = self._clock()
        if now < self._reopen_at or now < self._probe_until:
            return False
        self.state = "half_open"
        self._probe_until = now + self._open_seconds
        return True

    def record_success(self) -> bool:
        """Close; True if it was not closed before."""
        if self.state == "closed":
            return False
        self.state = "closed"
        self._probe_until = 0.0
        return True

    def record_failure(self) -> bool:
        """Open (again); True if it was closed before."""
        was_closed = self.state == "closed"
        self.state = "open"
        self._reopen_at = self._clock() + self._open_seconds
        self._probe_until = 0.0
        return was_closed
