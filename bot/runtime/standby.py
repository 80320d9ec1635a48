"""A replica's hot standby for reads, wired: who the update is for, what the
other replicas wrote, and the standby's figures (db/standby.py decides)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Dispatcher
from aiogram.types import TelegramObject, User

from bot.ops.metrics import Metrics
from cache.replica import CacheReplica
from db import Database
from db.standby import acting_for


class ActingFor(BaseMiddleware):
    """Outer middleware on updates: whatever the update commits marks its
    sender, so the reads that follow (in this update or their next one) see it."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        token = acting_for.set(user.id if user is not None else None)
        try:
            return await handler(event, data)
        finally:
            acting_for.reset(token)


def wire_standby(
    database: Database, cache: CacheReplica, dispatcher: Dispatcher, metrics: Metrics
) -> None:
    """With a standby configured: start measuring it, and mark the people
    every replica's commits concern (heard on the invalidation channel). While
    the listener is not subscribed this replica may miss another's write, so
    its reads all go to the primary until it is back."""
    standby = database.standby
    if standby is None:
        return
    listener = cache.listener
    standby.hears_writes = lambda: listener.state == "subscribed"
    listener.on_event.append(standby.heard)
    dispatcher.update.outer_middleware(ActingFor())
    metrics.watch_standby(standby)
    database.start()
