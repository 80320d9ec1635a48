"""The Telegram side of the metrics: aiogram middlewares that time each update,
name its route after the handler that took it, and record when a press was
answered and which Bot API calls failed (`bot.ops.metrics` holds the figures)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramAPIError, TelegramRetryAfter
from aiogram.methods import AnswerCallbackQuery, Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import TelegramObject, Update

from bot.ops.metrics import Metrics, UpdateRecord, current
from bot.telegram.middlewares import ANSWER_TASK
from cache.client import round_trips


class UpdateMetrics(BaseMiddleware):
    """Outer middleware on updates, registered first: times the whole update."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        record = UpdateRecord(time.perf_counter_ns())
        if isinstance(event, Update):
            record.update_id = event.update_id
            record.route = f"{event.event_type}:unhandled"
        token = current.set(record)
        redis_token = round_trips.set(record.redis)
        try:
            return await handler(event, data)
        finally:
            round_trips.reset(redis_token)
            current.reset(token)
            self.metrics.finish(record)


class RouteName(BaseMiddleware):
    """Inner middleware: names the route after the handler that took the update."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        record = current.get()
        if record is not None:
            record.route = data["handler"].callback.__name__
        return await handler(event, data)


class BotApiMetrics(BaseRequestMiddleware):
    """Session middleware: when a press was answered, and what failed."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        record = current.get()
        sent = time.perf_counter_ns()
        answer = isinstance(method, AnswerCallbackQuery)
        if answer and record is not None and record.answered_ns is None:
            record.answered_ns = sent
        try:
            return await make_request(bot, method)
        except TelegramRetryAfter:
            self.metrics.telegram_retries.labels(method.__api_method__).inc()
            raise
        except TelegramAPIError as exc:
            self.metrics.telegram_errors.labels(method.__api_method__, type(exc).__name__).inc()
            raise
        finally:
            if record is not None and not unawaited():
                record.waits.append((sent, time.perf_counter_ns()))


def unawaited() -> bool:
    """The request comes from a press's answer task, which nothing of the
    update awaits: its round trip is not the update's wait."""
    task = asyncio.current_task()
    return task is not None and task.get_name().startswith(f"{ANSWER_TASK} ")
