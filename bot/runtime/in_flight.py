"""Updates in flight: how many are being handled, so that stopping can let
them finish (for at most `runtime.shutdown_timeout_seconds`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject

log = logging.getLogger(__name__)


class InFlight(BaseMiddleware):
    """Counts what runs inside `one()`: as the first outer middleware of the
    Dispatcher's updates, every update being handled (polling), and each
    press's answer until Telegram replied (bot/telegram/middlewares.py:
    AnswerFirst); entered per request, every webhook request being answered."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextmanager
    def one(self) -> Iterator[None]:
        self.count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.count -= 1
            if not self.count:
                self._idle.set()

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        with self.one():
            return await handler(event, data)

    async def finish(self, seconds: float) -> None:
        """Wait until none is in flight, for at most `seconds`."""
        if not self.count:
            return
        log.info("finishing %d updates in flight", self.count)
        with suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._idle.wait()
