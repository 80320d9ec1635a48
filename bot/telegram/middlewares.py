"""The one read every update makes: the caller's snapshot, through the cache."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from typing import Any, NotRequired, Protocol, TypedDict

from aiogram import BaseMiddleware
from aiogram.exceptions import TelegramAPIError
from aiogram.fsm.middleware import FSMContextMiddleware
from aiogram.fsm.storage.base import BaseEventIsolation, StorageKey
from aiogram.types import CallbackQuery, TelegramObject, Update, User
from aiogram.utils.callback_answer import CallbackAnswer, CallbackAnswerMiddleware

from bot.services import Services
from bot.services.money import Currencies
from bot.services.settings import EscrowSettings
from bot.services.users import Profile
from bot.services.views import UserView
from bot.services.wallets import DepositProvider
from bot.telegram.freshness import DealVersions
from bot.telegram.i18n import _
from bot.telegram.keyboards import Signer
from bot.telegram.notices import NoticeSender
from bot.telegram.redis_guard import StateUnavailable, StateUnread
from cache.snapshots import UserSnapshot
from cache.store import SnapshotCache


class SnapshotSource(Protocol):
    """Where snapshots are read: the cache (always, in the product); the
    benchmark's ablations swap in a straight database read."""

    async def get(self, telegram_id: int) -> UserSnapshot | None: ...


log = logging.getLogger(__name__)


class HandlerData(TypedDict):
    """What handlers may ask for by name (middleware data and Dispatcher kwargs)."""

    snapshot: UserSnapshot  # SnapshotMiddleware, per update
    registered: NotRequired[UserView]  # SnapshotMiddleware, on an update that registered
    services: Services  # the rest: Dispatcher kwargs from bot/runtime/app.py
    currencies: Currencies
    settings: EscrowSettings
    signer: Signer
    deals_seen: DealVersions
    snapshots: SnapshotCache
    deposits: DepositProvider
    outbox: NoticeSender


def profile_of(user: User) -> Profile:
    return Profile(
        telegram_id=user.id,
        first_name=user.first_name,
        username=user.username,
        last_name=user.last_name,
        language_code=user.language_code,
    )


def _stale(snapshot: UserSnapshot, user: User, services: Services) -> bool:
    """True when Telegram knows the user differently, the admin list changed,
    or a configured currency has no wallet yet: the rare update that registers
    before it is handled."""
    return (
        snapshot.is_admin != (user.id in services.ctx.settings.admins)
        or snapshot.username != user.username
        or snapshot.first_name != user.first_name[:64]
        or snapshot.last_name != (user.last_name[:64] if user.last_name else None)
        or snapshot.language_code != user.language_code
        or len(snapshot.wallets) < len(services.ctx.currencies)
    )


class SnapshotMiddleware(BaseMiddleware):
    """Inner middleware of messages and button presses: exactly one cache
    lookup, injected as `snapshot`. It runs after the filters (which therefore
    never see the snapshot and do no I/O) and after a press has been answered.

    First contact and profile changes register the user (one transaction) and
    read the snapshot once more; every other update costs one lookup, which is
    no I/O at all on an L1 hit."""

    def __init__(self, cache: SnapshotSource, services: Services) -> None:
        self.cache = cache
        self.services = services

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or user.is_bot:
            return await handler(event, data)
        snapshot = await self.cache.get(user.id)
        if snapshot is None or _stale(snapshot, user, self.services):
            # What registration found out (the invitations now waiting for the
            # user) is for this update's handler: the menu says it at no cost.
            data["registered"] = (await self.services.users.register(profile_of(user))).value
            snapshot = await self.cache.get(user.id)
            if snapshot is None:  # the cache could not see our own commit
                raise RuntimeError(f"user {user.id} missing right after registration")
        data["snapshot"] = snapshot
        return await handler(event, data)


class ButtonsSkipStateMiddleware(FSMContextMiddleware):
    """aiogram's FSM middleware, except that a button press neither reads the
    FSM state up front nor takes the user's lock here.

    Typed text is routed by state (a wizard step), so messages pay one Redis
    read for it; buttons carry everything they need in their callback data, so
    a press reads state only if its handler asks (`await state.get_data()`).
    That keeps a read-only press at zero Redis round trips on an L1 hit. The
    press takes the user's lock in `PressLock`, after it has been answered:
    with several replicas that lock is a Redis round trip.

    A message whose state can't be read (Redis failing) is not handled: it
    may be a wizard step, and guessing "no form" would treat it as something
    else. `StateUnread` asks the sender to send it again (bot/telegram/fsm.py)."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        context = self.resolve_event_context(data["bot"], data)
        data["fsm_storage"] = self.storage
        if context is None:
            return await handler(event, data)
        data["state"] = context
        if isinstance(event, Update) and event.callback_query is not None:
            return await handler(event, data)
        # as aiogram does: the state is read once the user's lock is held
        async with self.events_isolation.lock(key=context.key):
            try:
                data["raw_state"] = await context.get_state()
            except StateUnavailable as exc:
                raise StateUnread(str(exc)) from exc
            return await handler(event, data)


class PressLock(BaseMiddleware):
    """Inner middleware of button presses, after the answer: one user's
    updates still run one at a time (the same lock as their messages)."""

    def __init__(self, isolation: BaseEventIsolation) -> None:
        self.isolation = isolation

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        state = data.get("state")
        if state is None:
            return await handler(event, data)
        async with self.isolation.lock(key=state.key):
            return await handler(event, data)


class ProcessEventIsolation(BaseEventIsolation):
    """One user's updates run one at a time in this process (a double press
    of "Create deal" is handled twice in a row, never at once).

    aiogram's SimpleEventIsolation keeps a lock per user forever; here a lock
    lives only while an update holds or waits for it. Several replicas need
    the Redis-backed isolation instead."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncIterator[None]:
        await self.acquire(key)
        try:
            yield
        finally:
            self.release(key)

    async def acquire(self, key: StorageKey) -> None:
        """Take the user's lock; `release` gives it back (from any task)."""
        lock, holders = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, holders + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._forget(key)
            raise

    def release(self, key: StorageKey) -> None:
        self._locks[key][0].release()
        self._forget(key)

    def _forget(self, key: StorageKey) -> None:
        lock, holders = self._locks[key]
        if holders == 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, holders - 1)

    async def close(self) -> None:
        self._locks.clear()


class InFlightCount(Protocol):
    """What stopping waits for (bot/runtime/in_flight.py): an answer still on
    its way is counted there, so the bot's session is not closed under it."""

    def one(self) -> AbstractContextManager[None]: ...


# Loop turns until a request given to the Bot API client is on the wire.
LOOP_TURNS_TO_SEND = 2
# The name of a press's answer task: the one request the bot sends without
# awaiting it (the benchmark tells its round trip from the update's waits by it).
ANSWER_TASK = "answer"


class AnswerFirst(CallbackAnswerMiddleware):
    """aiogram's callback answer, sent and not waited for.

    The answer's request is made before anything else of the press (the lock,
    the snapshot's read, the handler): its task is started and given the loop
    until the request is on the wire and the task waits for Telegram's reply.
    The handler goes on then, so a press costs no Bot API round trip before
    its own work (on a connection kept alive; opening one overlaps it). The
    task is kept until it ends and counted as in flight, so stopping lets it
    arrive.

    Telegram refusing the answer (a redelivered press whose query was answered
    already, a query older than Telegram keeps) or failing (a 500, a timeout)
    costs the spinner, not the action: logged and counted, never shown."""

    def __init__(self, in_flight: InFlightCount | None = None, *, pre: bool = True) -> None:
        super().__init__(pre=pre)
        self.in_flight = in_flight
        self.failed = 0
        self._sending: set[asyncio.Task[None]] = set()

    def construct_callback_answer(self, properties: dict[str, Any] | bool | None) -> CallbackAnswer:
        if isinstance(properties, dict) and properties.get("text"):
            # a handler's flags hold the catalog's key: said in the presser's language
            properties = {**properties, "text": _(properties["text"])}
        return super().construct_callback_answer(properties)

    async def answer(self, event: CallbackQuery, callback_answer: CallbackAnswer) -> None:  # type: ignore[override]
        task = asyncio.create_task(
            self._send(event, callback_answer), name=f"{ANSWER_TASK} {event.id}"
        )
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        # Ready tasks run in the order they were scheduled. In the first turn
        # the answer's task runs until it waits for the reply; aiohttp holds
        # the request's head back for its body, written by a task of its own
        # (eagerly from Python 3.12), in the second. Then the press goes on.
        for _turn in range(LOOP_TURNS_TO_SEND):
            await asyncio.sleep(0)

    async def _send(self, event: CallbackQuery, callback_answer: CallbackAnswer) -> None:
        with self.in_flight.one() if self.in_flight is not None else nullcontext():
            try:
                await super().answer(event, callback_answer)
            except TelegramAPIError as exc:
                self.failed += 1
                log.warning("press %s: not acknowledged (%s); handled anyway", event.id, exc)
            except Exception:
                self.failed += 1
                log.exception("press %s: not acknowledged; handled anyway", event.id)
