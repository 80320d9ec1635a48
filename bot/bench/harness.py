"""Timing and counting one update at a time, for the benchmark.

An update is fed to the dispatcher inside a context variable holding its
record, so whatever the update causes, in its own task or in tasks it starts
(the cache's single-flight load), is attributed to it:

- SQL statements and commits, Redis round trips, commands and bytes: the
  hooks of `bot.bench.meters`;
- the callback answer: the Telegram double's listener for requests as they
  arrive, with the double's timestamp of answerCallbackQuery leaving the
  process (before its simulated round trip);
- Telegram waits: the round trips the double made the update wait, in its own
  task or in the tasks it awaits (an edit and a notification sent at once by
  `asyncio.gather`), overlapping ones counted once. The press's answer is the
  exception where it is sent from a task of its own that nothing awaits
  (`AnswerFirst`): its round trip runs while the handler works, so it holds
  nothing up. Answered last, or by the floor's handler, it is a wait.

Records land in `array`s (no objects for the garbage collector to walk).
"""

from __future__ import annotations

from array import array

from aiogram import Bot, Dispatcher
from aiogram.types import Update

from bot.bench.meters import CURRENT, Rec
from bot.bench.meters import now as _now
from bot.ops.metrics import waited
from bot.runtime.update_metrics import unawaited
from bot.sim.telegram import BotRequest, FakeTelegram

CLASSES = ("read", "card", "list", "wizard_press", "wizard_msg", "write", "other")
ROUTES: dict[str, str] = {
    "menu": "read",
    "wallet": "read",
    "help": "read",
    "card": "card",
    "confirm": "card",
    "list": "list",
    "older": "list",
    "role": "wizard_press",
    "currency": "wizard_press",
    "new": "wizard_msg",
    "counterparty": "wizard_msg",
    "amount": "wizard_msg",
    "description": "wizard_msg",
    "create": "write",
    "accept": "write",
    "fund": "write",
    "deliver": "write",
    "release": "write",
    "start": "other",
}
ROUTE_NAMES = tuple(ROUTES)
ROUTE_IDS = {name: index for index, name in enumerate(ROUTE_NAMES)}
# flags of a record
ERROR, REFILL, PRESS, FALLBACK, WRITER = 1, 2, 4, 8, 16
UNEXPECTED_PREFIX = "😕"


class Samples:
    """One row per measured update, column by column."""

    def __init__(self) -> None:
        self.route = array("B")
        self.flags = array("B")
        self.sched = array("q")  # when it was due to arrive (open loop) or was sent
        self.t0 = array("q")  # when it entered the dispatcher
        self.answer = array("q")  # answerCallbackQuery issued (0: none)
        self.telegram_wait = array("q")  # ns waited on the double's round trips
        self.first_io = array("q")  # first SQL statement or Redis request (0: none)
        self.end = array("q")  # feed_update returned
        self.sql = array("H")
        self.redis = array("H")
        self.redis_commands = array("H")
        self.redis_out = array("I")  # bytes sent to Redis
        self.redis_in = array("I")  # bytes read back
        self.commits = array("H")

    def __len__(self) -> int:
        return len(self.route)

    def writes(self) -> int:
        return sum(1 for route in self.route if ROUTES[ROUTE_NAMES[route]] == "write")


class Harness:
    """Feeds updates to one dispatcher, times them and counts their I/O."""

    def __init__(self, telegram: FakeTelegram, bot: Bot, dispatcher: Dispatcher) -> None:
        self.telegram = telegram
        self.bot = bot
        self.dispatcher = dispatcher
        self.samples = Samples()
        self.measuring = False
        self.inflight = 0
        self.max_inflight = 0
        self.dropped = 0
        self.completed = 0
        self.changed: set[int] = set()  # users whose snapshot changed since their last update
        self.changes: dict[int, int] = {}  # how often each user's snapshot changed
        self.unfilled: set[int] = set()  # users whose L2 fill a Redis failure prevented
        self.writers: set[int] = set()  # users who write (traders)
        self.trace: list[tuple[int, int, bool, str, int]] | None = None
        self.trace_start = 0
        telegram.add_listener(self._sent, sent=True)
        telegram.add_listener(self._answered)

    def _sent(self, request: BotRequest) -> None:
        rec = CURRENT.get()
        if rec is None:
            return
        if request.method == "answerCallbackQuery":
            if not rec.answer:
                rec.answer = request.sent_ns
        elif request.method == "sendMessage" and request.params["text"].startswith(
            UNEXPECTED_PREFIX
        ):
            rec.error = True

    def _answered(self, request: BotRequest) -> None:
        rec = CURRENT.get()
        if rec is not None and request.waited_ns and not unawaited():
            rec.waits.append((request.sent_ns, request.sent_ns + request.waited_ns))

    def user_changed(self, telegram_id: int) -> None:
        self.changed.add(telegram_id)
        self.changes[telegram_id] = self.changes.get(telegram_id, 0) + 1

    def loading(self, telegram_id: int, redis_down: bool) -> None:
        """The cache is loading a snapshot from Postgres for the update in
        flight. With Redis down (this read's request failed, or the breaker is
        open), or for a user whose L2 entry a Redis failure kept from being
        written, that is the cache's designed fallback, not a steady-state miss."""
        if redis_down or telegram_id in self.unfilled:
            rec = CURRENT.get()
            if rec is not None:
                rec.fallback = True
        if redis_down:  # its fill will be skipped
            self.unfilled.add(telegram_id)

    def filled(self, telegram_id: int, ok: bool) -> None:
        """The cache's L2 write of a loaded snapshot went through (or failed)."""
        if ok:
            self.unfilled.discard(telegram_id)
        else:
            self.unfilled.add(telegram_id)

    def start_trace(self) -> None:
        self.trace, self.trace_start = [], _now()

    async def feed(self, user_index: int, telegram_id: int, update: Update, route: str, sched: int):
        route_id = ROUTE_IDS[route]
        press = update.callback_query is not None
        read = ROUTES[route] == "read"
        refill = read and telegram_id in self.changed
        self.changed.discard(telegram_id)
        changes = self.changes.get(telegram_id, 0)
        if self.trace is not None and self.measuring:
            payload = update.callback_query.data if press else update.message.text  # type: ignore[union-attr]
            self.trace.append(
                (sched - self.trace_start, user_index, press, payload or "", route_id)
            )
        self.inflight += 1
        if self.inflight > self.max_inflight:
            self.max_inflight = self.inflight
        rec = Rec()
        token = CURRENT.set(rec)
        t0 = _now()
        try:
            await self.dispatcher.feed_update(self.bot, update)
        except Exception:
            rec.error = True
        finally:
            end = _now()
            rec.telegram_wait = waited(rec.waits)
            CURRENT.reset(token)
            self.inflight -= 1
            self.completed += 1
        if read and self.changes.get(telegram_id, 0) != changes:
            # The user's snapshot changed while this read ran (a counterparty's
            # write): it may have found L1 dropped and refilled. The user stays
            # marked: if it read before the drop, the next read refills.
            refill = True
        if self.measuring:
            s = self.samples
            s.route.append(route_id)
            s.flags.append(
                ERROR * rec.error
                | REFILL * refill
                | PRESS * press
                | FALLBACK * rec.fallback
                | WRITER * (telegram_id in self.writers)
            )
            s.sched.append(sched or t0)
            s.t0.append(t0)
            s.answer.append(rec.answer)
            s.telegram_wait.append(rec.telegram_wait)
            s.first_io.append(rec.first_io)
            s.end.append(end)
            s.sql.append(min(rec.sql, 65535))
            s.redis.append(min(rec.redis, 65535))
            s.redis_commands.append(min(rec.redis_commands, 65535))
            s.redis_out.append(min(rec.redis_out, 2**32 - 1))
            s.redis_in.append(min(rec.redis_in, 2**32 - 1))
            s.commits.append(min(rec.commits, 65535))
        return rec
