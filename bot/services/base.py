"""What every use case shares: one transaction, retried on deadlock, events after commit."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Generic, Protocol, TypeVar

from sqlalchemy.exc import DBAPIError

from bot.services.errors import InvalidInput, Refusal
from bot.services.money import Currencies, Currency
from bot.services.settings import EscrowSettings
from db import Database, UnitOfWork
from db.events import Event
from db.sql.notifications import Notice

log = logging.getLogger(__name__)

T = TypeVar("T")

# Deadlock and serialization failures: the whole transaction is safe to re-run.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """A use case's result, the events its committed transaction caused and the
    notifications it wrote to the outbox (for the caller to send at once)."""

    value: T
    events: tuple[Event, ...] = ()
    notices: tuple[Notice, ...] = ()


class EventSink(Protocol):
    async def publish(self, events: tuple[Event, ...]) -> None: ...


class NoEvents:
    async def publish(self, events: tuple[Event, ...]) -> None:
        return None


class Actor(Protocol):
    """Whoever acts: a user's internal and Telegram ids (a cached snapshot will do)."""

    @property
    def id(self) -> int: ...

    @property
    def telegram_id(self) -> int: ...


@dataclass(slots=True)
class ServiceContext:
    db: Database
    settings: EscrowSettings
    currencies: Currencies
    events: EventSink = field(default_factory=NoEvents)
    # New notifications wait this long for the handler to send them before the
    # outbox worker may.
    notify_grace: timedelta = timedelta(seconds=30)


def sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def violated_constraint(exc: DBAPIError) -> str | None:
    cause = getattr(exc.orig, "__cause__", None)
    return getattr(cause, "constraint_name", None)


class Service:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.currencies = ctx.currencies

    def _amount(self, currency: str, amount: int) -> Currency:
        """The currency, if `amount` (minor units) is within its bounds."""
        money = self.currencies[currency]
        if not isinstance(amount, int) or not money.min_amount <= amount <= money.max_amount:
            raise InvalidInput(
                Refusal.AMOUNT_OUT_OF_BOUNDS,
                minimum=money.min_amount,
                maximum=money.max_amount,
                currency=money.code,
            )
        return money

    async def transaction(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> Outcome[T]:
        """Run `work` in one transaction, commit, then publish what it changed."""
        for attempt in range(1, ATTEMPTS + 1):
            committing = False
            try:
                async with self.ctx.db.unit_of_work() as uow:
                    value = await work(uow)
                    committing = True
                    await uow.commit()
                break
            except DBAPIError as exc:
                if attempt == ATTEMPTS:
                    raise
                if sqlstate(exc) in RETRYABLE_SQLSTATES:
                    log.info("transaction retried after %s (attempt %d)", sqlstate(exc), attempt)
                    continue
                # A pooled connection Postgres had closed (restarted, failed over,
                # terminated): nothing was committed unless COMMIT itself was
                # sent, so before that it is run again on a fresh connection
                # (SQLAlchemy has discarded the pool's older connections).
                if exc.connection_invalidated and not committing:
                    log.warning("transaction retried on a fresh connection: %s", exc.orig)
                    continue
                raise
        events = uow.collect_events()
        # Before anyone is told: whom it concerns read it from the primary.
        self.ctx.db.committed(events)
        if events:
            try:
                await self.ctx.events.publish(events)
            except Exception:
                # The change is committed; a lost invalidation is bounded by the
                # cache TTLs, so it must not turn a done deal into an error.
                log.exception("publishing %d events failed", len(events))
        return Outcome(value, events, uow.collect_notices())


OVER_DAILY_LIMIT = {
    "deposit": Refusal.OVER_DEPOSIT_LIMIT,
    "withdrawal": Refusal.OVER_WITHDRAWAL_LIMIT,
}


def refuse_over_daily_limit(what: str, money: Currency, limit: int, used: int, amount: int) -> None:
    """InvalidInput if `amount` on top of `used` passes the daily `limit` of
    `what` ("deposit", "withdrawal"); 0 is no limit."""
    left = max(limit - used, 0)
    if limit and amount > left:
        raise InvalidInput(OVER_DAILY_LIMIT[what], per_day=limit, left=left, currency=money.code)
