"""An in-process Telegram Bot API: the session the product talks to in tests, the
benchmark and local mode. Nothing here touches the network.

`FakeTelegram` answers the bot's requests (`bot.sim.methods`) from in-memory chats
(`bot.sim.chats`) and hands out the ids simulated users need (`bot.sim.users`). Every
request is recorded in order; a method it doesn't answer raises, so no call reaches the
void silently.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict, deque
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from aiogram.client.default import Default
from aiogram.client.session.base import BaseSession
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import User

from bot.sim.bot_settings import BotSettings
from bot.sim.chats import ChatState
from bot.sim.content import Refused
from bot.sim.files import FileStore
from bot.sim.methods import BotRequest, handler_for

if TYPE_CHECKING:
    from aiogram import Bot

Listener = Callable[["BotRequest"], object]
ErrorFactory = Callable[[TelegramMethod[Any]], Exception]

# Shared by every double in the process: the bot drops repeated update_ids (SET NX in
# Redis), so a second double in one test session must not start again at 1.
_UPDATE_IDS = itertools.count(1)
_QUERY_IDS = itertools.count(1)
# Telegram forgets a callback query after a while; keeping only the newest ones also
# bounds memory over a long benchmark run.
OPEN_QUERIES_LIMIT = 65_536


class FakeTelegram(BaseSession):
    """A `BaseSession` that answers Bot API methods from in-memory private chats."""

    def __init__(
        self,
        *,
        bot_username: str = "escrow_test_bot",
        bot_name: str = "Escrow Test Bot",
        clock: Callable[[], float] = time.time,
        latency: float | Callable[[], float] | None = None,
        keep_log: bool = True,
    ) -> None:
        """:param clock: wall clock for message dates (a test can move time forward).
        :param latency: None answers without suspending (fastest); a number of seconds
            (0 included) suspends first, so concurrent updates interleave as over a network;
            a function is asked for each request's seconds (`bot.sim.round_trip.RoundTrip`).
        :param keep_log: False stops keeping the request log (long benchmark runs);
            listeners and `capture()` still see every request."""
        super().__init__()
        self.bot_username = bot_username
        self.bot_name = bot_name
        self.clock = clock
        self.latency = latency
        self.keep_log = keep_log
        self.closed = False
        self.chats: dict[int, ChatState] = {}
        self.settings = BotSettings()
        self.files = FileStore()
        """The photos and documents users sent, by file id."""
        self.unanswered: list[str] = []
        """Methods the bot called that the double does not answer (each one raised)."""
        self._log: list[BotRequest] = []
        self._listeners: list[Listener] = []
        self._sent_listeners: list[Listener] = []
        self._failures: defaultdict[str, deque[ErrorFactory]] = defaultdict(deque)
        self._queries: dict[str, int] = {}
        self._bot_users: dict[int, User] = {}
        self._second = -1
        self._date = datetime.now(UTC)
        self._sinks: ContextVar[tuple[list[BotRequest], ...]] = ContextVar(
            f"fake_telegram_sinks_{id(self)}", default=()
        )

    # -- the request log ------------------------------------------------------------

    @property
    def requests(self) -> list[BotRequest]:
        """Every request so far, in the order the server handled them (read-only)."""
        return self._log

    @property
    def methods(self) -> list[str]:
        return [request.method for request in self._log]

    def calls(self, method: str) -> list[BotRequest]:
        return [request for request in self._log if request.method == method]

    def clear(self) -> None:
        self._log.clear()

    def add_listener(self, listener: Listener, *, sent: bool = False) -> Listener:
        """Call `listener(request)` for every request as the server handles it, e.g. to
        interleave Bot API calls with SQL statements and Redis commands in one timeline.
        With `sent`, as the request arrives instead: before its round trip and before
        it is answered (no result yet), in the task that sent it."""
        (self._sent_listeners if sent else self._listeners).append(listener)
        return listener

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._sent_listeners:
            self._sent_listeners.remove(listener)
        else:
            self._listeners.remove(listener)

    @contextmanager
    def capture(self) -> Iterator[list[BotRequest]]:
        """Collect the requests made by the current task (and tasks it starts), so two
        updates in flight at once each see only their own requests."""
        requests: list[BotRequest] = []
        token = self._sinks.set((*self._sinks.get(), requests))
        try:
            yield requests
        finally:
            self._sinks.reset(token)

    def fail_next(
        self,
        method: str,
        times: int = 1,
        *,
        retry_after: int | None = None,
        bad_request: str | None = None,
        error: ErrorFactory | None = None,
    ) -> None:
        """Make the next `times` calls of `method` (e.g. "sendMessage") fail: with a 429
        (`retry_after` seconds), a 400 (`bad_request` description), or `error(call)`."""
        if retry_after is not None:
            error = partial(_retry_after, retry_after)
        elif bad_request is not None:
            error = partial(_bad_request, bad_request)
        if error is None:
            raise ValueError("pass one of retry_after, bad_request or error")
        self._failures[method].extend([error] * times)

    # -- the session ----------------------------------------------------------------

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 - BaseSession's signature
    ) -> TelegramType:
        sent = time.perf_counter_ns()
        name = method.__api_method__
        request = BotRequest(name, self._params(bot, method), sent, method, sent_ns=sent)
        for listener in self._sent_listeners:
            listener(request)
        latency = self.latency() if callable(self.latency) else self.latency
        if latency is not None:
            await asyncio.sleep(latency)
            request.at_ns = time.perf_counter_ns()
            request.waited_ns = request.at_ns - sent
        # Everything below is synchronous: a request is handled atomically, so updates in
        # flight at the same time can't see a half-changed chat.
        try:
            if failures := self._failures.get(name):
                raise failures.popleft()(method)
            handler = handler_for(name)
            if handler is None:
                # Also kept apart from the log: a catch-all errors handler in the bot could
                # swallow the exception, and a fixture can still fail the test on this list.
                self.unanswered.append(name)
                raise NotImplementedError(
                    f"the Telegram double does not answer {name}; add it to bot/sim/methods.py"
                )
            try:
                request.result = handler(self, bot, request)
            except Refused as refused:
                if refused.status == 403:
                    raise TelegramForbiddenError(method, refused.description) from None
                raise _bad_request(refused.description, method) from None
        except Exception as exc:
            request.error = exc
            raise
        finally:
            self._record(request)
        return cast(TelegramType, request.result)

    def _params(self, bot: Bot, method: TelegramMethod[Any]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, value in method.__dict__.items():
            if isinstance(value, Default):
                value = bot.default[value.name]
            if value is not None:
                params[key] = value
        if method.__pydantic_extra__:
            params.update(method.__pydantic_extra__)
        return params

    def _record(self, request: BotRequest) -> None:
        if self.keep_log:
            self._log.append(request)
        for sink in self._sinks.get():
            sink.append(request)
        for listener in self._listeners:
            listener(request)

    async def close(self) -> None:
        self.closed = True

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,  # noqa: ASYNC109 - BaseSession's signature
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        raise NotImplementedError("the Telegram double serves no files")
        yield b""  # unreachable: makes this an async generator like the base method

    # -- what simulated users need --------------------------------------------------

    def register_user(self, user: User, *, started: bool = False) -> ChatState:
        """Open (or return) the private chat with `user`; `started` means the user has
        pressed Start before, so the bot may write first."""
        chat = self.chats.get(user.id)
        if chat is None:
            chat = self.chats[user.id] = ChatState.private(user)
        chat.started = chat.started or started
        return chat

    def next_update_id(self) -> int:
        return next(_UPDATE_IDS)

    def open_callback_query(self, user_id: int) -> str:
        """A callback query id the bot may answer (answerCallbackQuery checks it)."""
        query_id = str(next(_QUERY_IDS))
        self._queries[query_id] = user_id
        if len(self._queries) > OPEN_QUERIES_LIMIT:
            del self._queries[next(iter(self._queries))]
        return query_id

    def close_callback_query(self, query_id: str) -> int | None:
        """The user an open callback query came from, closing it; None if it is not open
        (never opened, answered already, or forgotten)."""
        return self._queries.pop(query_id, None)

    def now(self) -> datetime:
        # Telegram dates have one-second resolution; convert once per second.
        second = int(self.clock())
        if second != self._second:
            self._second, self._date = second, datetime.fromtimestamp(second, UTC)
        return self._date

    def bot_user(self, bot: Bot) -> User:
        user = self._bot_users.get(bot.id)
        if user is None:
            user = User(
                id=bot.id, is_bot=True, first_name=self.bot_name, username=self.bot_username
            )
            self._bot_users[bot.id] = user
        return user

    def chat_of(self, request: BotRequest) -> ChatState:
        chat_id = request.params.get("chat_id")
        if isinstance(chat_id, str) and chat_id.lstrip("-").isdigit():
            chat_id = int(chat_id)
        chat = self.chats.get(chat_id) if isinstance(chat_id, int) else None
        if chat is None:
            raise Refused("chat not found")
        return chat


def start_update_ids_at(first: int) -> None:
    """Number this process's updates from `first` on: a second process whose
    updates meet this one's in the same Redis (the duplicate check) starts far off."""
    global _UPDATE_IDS
    _UPDATE_IDS = itertools.count(first)


def _retry_after(seconds: int, call: TelegramMethod[Any]) -> Exception:
    return TelegramRetryAfter(call, f"Too Many Requests: retry after {seconds}", seconds)


def _bad_request(description: str, call: TelegramMethod[Any]) -> Exception:
    return TelegramBadRequest(call, f"Bad Request: {description}")
