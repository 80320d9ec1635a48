"""A background loop shared by the jobs and the outbox worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def every(
    interval: float, stop: asyncio.Event, tick: Callable[[], Awaitable[object]], what: str
) -> None:
    """Run `tick` every `interval` seconds until `stop` is set. A failing tick
    is logged and the next one runs; a running tick always finishes."""
    while not stop.is_set():
        try:
            await tick()
        except Exception:
            log.exception("%s failed; trying again next tick", what)
        try:
            async with asyncio.timeout(interval):
                await stop.wait()
        except TimeoutError:
            pass
