"""Telegram's limits on outgoing calls: a 429 is waited out, not failed, and a
5xx is tried again. What the bot sends on its own is paced within the global
and per-chat rates by `bot.runtime.send_rate`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramRetryAfter, TelegramServerError
from aiogram.methods import AnswerCallbackQuery, Response, TelegramMethod
from aiogram.methods.base import TelegramType

log = logging.getLogger(__name__)


class RetryAfter(BaseRequestMiddleware):
    """Session middleware: when Telegram answers 429 with `retry_after`, wait
    that long and send the call again, at most `attempts` times and only for
    waits up to `max_wait` seconds; then the 429 reaches the caller as usual.

    A 5xx (Telegram's own trouble: "Internal Server Error", "Bad Gateway") is
    sent again `server_error_attempts` times, after `server_error_wait`
    seconds, doubling. Telegram did not take the call in all likelihood; if it
    did, the user sees a message twice, which beats never seeing a committed
    result. A press's answer is not retried: a late answer is worth little,
    and a failed one only costs the spinner (bot/telegram/middlewares.py)."""

    def __init__(
        self,
        attempts: int = 3,
        max_wait: float = 60.0,
        *,
        server_error_attempts: int = 3,
        server_error_wait: float = 0.5,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        on_retry: Callable[[str, float], object] | None = None,
    ) -> None:
        self.attempts = attempts
        self.max_wait = max_wait
        self.server_error_attempts = server_error_attempts
        self.server_error_wait = server_error_wait
        self.sleep = sleep
        self.on_retry = on_retry

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        retries = failures = 0
        name = method.__api_method__
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if retries >= self.attempts or exc.retry_after > self.max_wait:
                    raise
                retries += 1
                wait: float = exc.retry_after
                log.warning(
                    "%s: Telegram asks to retry after %ss (retry %d of %d)",
                    name,
                    wait,
                    retries,
                    self.attempts,
                )
            except TelegramServerError as exc:
                if failures >= self.server_error_attempts or isinstance(
                    method, AnswerCallbackQuery
                ):
                    raise
                wait = self.server_error_wait * 2**failures
                failures += 1
                log.warning(
                    "%s: Telegram failed (%s); sent again in %ss (retry %d of %d)",
                    name,
                    exc.message,
                    wait,
                    failures,
                    self.server_error_attempts,
                )
            if self.on_retry is not None:
                self.on_retry(name, wait)
            await self.sleep(wait)
