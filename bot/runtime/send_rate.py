"""What the bot sends on its own is paced within Telegram's global and
per-chat rates; a reply to a user's own update goes at once (Telegram's 429s
are waited out by `bot.runtime.limits.RetryAfter`)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import TelegramObject
from redis.exceptions import RedisError

from bot.config import RuntimeSettings
from bot.ops.metrics import Metrics
from bot.runtime.shared_pace import SharedPace
from cache.breaker import CircuitBreaker

log = logging.getLogger(__name__)


class TokenBucket:
    """`rate` per second with bursts of `burst`. A taker reserves a token and
    is told how long to wait for it, so waiters are served in order."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.updated = burst, now

    def wait(self, now: float) -> float:
        """How long a send reserved now would wait (nothing reserved)."""
        tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate) - 1
        return 0.0 if tokens >= 0 else -tokens / self.rate

    def reserve(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def idle(self, now: float) -> bool:
        return self.tokens + (now - self.updated) * self.rate >= self.burst


# What Telegram rate-limits: messages sent or changed in a chat. Answering a
# button press is not limited here: it must never wait behind a send.
LIMITED_PREFIXES = ("send", "edit", "copy", "forward")
CHAT_BUCKETS_LIMIT = 10_000

# The chats of the update being handled (its chat and its sender): what the bot
# sends there answers the user's own press or message. Empty outside an update
# (the outbox worker, the jobs), and tasks an update starts inherit it.
_ANSWERING: ContextVar[frozenset[int]] = ContextVar("escrow_answering", default=frozenset())


# Set by the outbox around the notifications a handler sends itself: they are
# in the outbox already, so one can be left to its worker (`SendDeferred`).
# Any other send of the bot's own (an admin's notice to a user) waits its turn.
_DEFERRABLE: ContextVar[bool] = ContextVar("escrow_send_deferrable", default=False)


@contextmanager
def deferrable() -> Iterator[None]:
    token = _DEFERRABLE.set(True)
    try:
        yield
    finally:
        _DEFERRABLE.reset(token)


class SendDeferred(Exception):
    """A notification sent while handling an update would wait longer than the
    update may for the budget: not sent, nothing reserved. The outbox leaves it
    to its worker, due at once (bot/runtime/notifier.py)."""


class Replies(BaseMiddleware):
    """Dispatcher middleware (outer, on updates and on errors): while an update
    is handled, its own chat is marked as answered, so `SendRate` lets the
    replies there go at once. aiogram's errors middleware is outside every other
    update middleware, so the errors observer is marked too: a refusal told to
    the user answers their update as well."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        # aiogram's user context (event_chat, event_from_user) reaches both observers
        chats = frozenset(
            who.id for key in ("event_chat", "event_from_user") if (who := data.get(key))
        )
        token = _ANSWERING.set(chats)
        try:
            return await handler(event, data)
        finally:
            _ANSWERING.reset(token)


class SendRate(BaseRequestMiddleware):
    """Session middleware: keeps what the bot sends on its own (the
    notifications, from a handler or the outbox worker, reminders, job
    messages) within a global rate and a per-chat rate (with a small burst),
    waiting instead of being refused. With `shared` (webhook mode) the budgets
    are the fleet's, in Redis (bot/runtime/shared_pace.py); while Redis fails
    (and for `breaker_seconds` after), this replica's own.

    A reply to the update being handled (an edit of the card just pressed, the
    answer to a typed message, a refusal) goes at once and takes no budget:
    the user sets its pace, and a 429 Telegram might answer is waited out by
    `RetryAfter`. Telegram's rates are those of messages a bot sends unasked
    (broadcasts); pacing a user's own taps made every tap after a burst of five
    wait a second.

    A notification the outbox sends while an update is handled (the other
    party's, inside `deferrable()`) waits at most `wait_in_update` seconds:
    past that the budget is spent for a while (a burst across the fleet), and
    the user whose update it is would wait for it, holding their lock and, on
    a webhook replica, Telegram's request. It raises `SendDeferred` then,
    reserving nothing; outside an update (the outbox worker, the jobs) a send
    waits its turn."""

    def __init__(
        self,
        per_second: float = 25.0,
        chat_per_second: float = 1.0,
        chat_burst: int = 5,
        *,
        wait_in_update: float = math.inf,
        shared: SharedPace | None = None,
        breaker_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.clock, self.sleep = clock, sleep
        self.wait_in_update = wait_in_update
        self.shared = shared
        self.breaker = CircuitBreaker(breaker_seconds, clock)
        self.by_replica = 0  # paced by this replica's budget because Redis failed
        self.chat_rate, self.chat_burst = chat_per_second, chat_burst
        self.overall = TokenBucket(per_second, max(per_second, 1), clock())
        self.chats: dict[int | str, TokenBucket] = {}
        self.replies = 0  # sent at once as replies, outside the budget
        self.paced = 0  # sent within the budget
        self.waited = 0  # of those, how many had to wait for it
        self.deferred = 0  # left to the outbox worker: longer than an update may wait

    def delay(self, chat_id: int | str | None, most: float = math.inf) -> float | None:
        """Reserve a send now; how long it must wait (None: longer than
        `most`, and nothing reserved)."""
        now = self.clock()
        buckets = [self.overall]
        if chat_id is not None:
            bucket = self.chats.get(chat_id)
            if bucket is None:
                if len(self.chats) >= CHAT_BUCKETS_LIMIT:
                    self.chats = {k: b for k, b in self.chats.items() if not b.idle(now)}
                bucket = self.chats[chat_id] = TokenBucket(self.chat_rate, self.chat_burst, now)
            buckets.append(bucket)
        if max(b.wait(now) for b in buckets) > most:
            return None
        return max(b.reserve(now) for b in buckets)

    async def reserve(self, chat_id: int | str | None, most: float = math.inf) -> float | None:
        """How long a send must wait (None: longer than `most`, nothing
        reserved): the fleet's budgets if shared and Redis answers, else this
        replica's."""
        if self.shared is not None and self.breaker.allow():
            try:
                wait = await self.shared.delay(chat_id, most)
            except (RedisError, OSError) as exc:
                self.breaker.record_failure()
                log.info("send pace not shared while Redis fails: %r", exc)
            else:
                self.breaker.record_success()
                return wait
        if self.shared is not None:
            self.by_replica += 1
        return self.delay(chat_id, most)

    def counts(self) -> dict[str, int]:
        return {
            "reply": self.replies,
            "paced_at_once": self.paced - self.waited,
            "paced_waited": self.waited,
            "paced_by_replica": self.by_replica,
            "deferred_to_the_outbox": self.deferred,
        }

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        if method.__api_method__.startswith(LIMITED_PREFIXES):
            chat_id = getattr(method, "chat_id", None)
            answering = _ANSWERING.get()
            if chat_id is not None and chat_id in answering:
                self.replies += 1
            else:
                most = self.wait_in_update if answering and _DEFERRABLE.get() else math.inf
                wait = await self.reserve(chat_id, most)
                if wait is None:
                    self.deferred += 1
                    raise SendDeferred(f"the send budget is spent for more than {most:g} s")
                self.paced += 1
                if wait > 0:
                    self.waited += 1
                    await self.sleep(wait)
        return await make_request(bot, method)


def pace_sends(
    bot: Bot,
    dispatcher: Dispatcher,
    runtime: RuntimeSettings,
    metrics: Metrics | None = None,
    *,
    shared: SharedPace | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> SendRate:
    """Pace what `bot` sends on its own within `runtime`'s rates (the fleet's,
    with `shared`); replies to the update `dispatcher` is handling go at once.
    Installed inside `RetryAfter` (after it), so a call sent again is paced
    again."""
    rate = SendRate(
        runtime.send_per_second,
        runtime.chat_send_per_second,
        runtime.chat_send_burst,
        wait_in_update=runtime.send_wait_in_update_seconds,
        shared=shared,
        clock=clock,
        sleep=sleep,
    )
    bot.session.middleware(rate)
    replies = Replies()
    dispatcher.update.outer_middleware(replies)
    dispatcher.errors.outer_middleware(replies)
    if metrics is not None:
        metrics.read_at_scrape(
            "escrow_telegram_sends",
            "Messages sent or edited: replies to a user's own update (never paced), and"
            " what the bot sent on its own, at once or after waiting for its rate (by"
            " this replica's own budget while the fleet's in Redis failed)",
            "pace",
            rate.counts,
        )
    return rate
