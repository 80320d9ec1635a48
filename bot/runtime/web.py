"""The replica's HTTP side: Prometheus /metrics and /healthz.

Served in every mode by this small server of its own (aiohttp, which aiogram
already depends on) on `[observability] http_host/http_port`, an internal
address: in webhook mode the public listener serves the webhook path only.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.runtime.app import App
from db.sql.ops import PING

log = logging.getLogger(__name__)
CHECK_TIMEOUT = 1.0


async def health(app: App) -> dict[str, bool]:
    """Ready only when Postgres, Redis and the invalidation listener are up."""

    async def postgres() -> bool:
        async with app.database.engine.connect() as conn:
            return await conn.scalar(PING) == 1

    async def redis() -> bool:
        return bool(await app.cache.cache.redis.ping())

    checks = {}
    for name, probe in (("postgres", postgres), ("redis", redis)):
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                checks[name] = await probe()
        except Exception:
            checks[name] = False
    checks["listener"] = app.cache.listener.state == "subscribed"
    return checks


def add_routes(web_app: web.Application, app: App, stopping: asyncio.Event | None = None) -> None:
    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(app.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        if stopping is not None and stopping.is_set():
            # stopping: finishing the updates in flight, taking no new ones, so
            # the load balancer sends the next ones elsewhere
            return web.json_response({"stopping": True}, status=503)
        checks = await health(app)
        return web.json_response(checks, status=200 if all(checks.values()) else 503)

    web_app.router.add_get("/metrics", metrics)
    web_app.router.add_get("/healthz", healthz)


async def start_side_server(
    app: App, host: str, port: int, stopping: asyncio.Event | None = None
) -> web.AppRunner:
    """/metrics and /healthz; /healthz answers 503 once `stopping` is set."""
    web_app = web.Application()
    add_routes(web_app, app, stopping)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("metrics and health on http://%s:%d/metrics and /healthz", host, port)
    return runner
