"""The breaker in front of Redis for form state, the user's lock and the
update dedup, and what a form's read or write raises when Redis can't serve
it (bot/telegram/fsm.py says how each is answered)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

from cache.breaker import CircuitBreaker
from cache.client import REDIS_ERRORS

T = TypeVar("T")


class StateUnavailable(RedisError):
    """Form state could not be read or written (Redis failed or is skipped)."""


class StateUnread(StateUnavailable):
    """A typed message's state could not be read: it was not handled."""


class FormMoved(StateUnread):
    """The form had changed elsewhere since this process read it: nothing was
    written, and the update was not handled (bot/telegram/owned_forms.py)."""


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
