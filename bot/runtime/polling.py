"""Polling mode: one replica asks Telegram for updates. At most
`max_updates_in_flight` are handled at once; on stop no more are asked for
and those taken finish (their count: `App.in_flight`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot.config import Config
from bot.runtime.app import App
from bot.runtime.webhook import delete_webhook
from cache.keys import CacheKeys

log = logging.getLogger(__name__)


async def until_stopped(work: asyncio.Task[Any], stop: asyncio.Event) -> None:
    """Wait for `work` to end or `stop` to be set, whichever comes first."""
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()


async def serve_polling(
    app: App, config: Config, stop: asyncio.Event, serving: Callable[[], Awaitable[None]]
) -> int:
    """Poll, call `serving`, and once `stop` is set (or polling ended) let the
    updates taken finish; 0, or 1 if polling failed."""
    dispatcher = app.dispatcher
    # Polling and a webhook exclude each other; the webhook's digest goes too.
    await delete_webhook(app.bot, app.cache.cache.redis, CacheKeys(config.cache.key_prefix))
    polling = asyncio.create_task(
        dispatcher.start_polling(
            app.bot,
            handle_signals=False,
            close_bot_session=False,
            # Beyond the bound the loop waits before asking Telegram for more.
            tasks_concurrency_limit=config.max_updates_in_flight,
        )
    )
    await serving()
    await until_stopped(polling, stop)
    if not polling.done():
        await dispatcher.stop_polling()
    # Updates already taken run as tasks of their own: let them finish.
    await app.in_flight.finish(config.runtime.shutdown_timeout_seconds)
    try:
        await polling
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("polling failed")
        return 1
    return 0
