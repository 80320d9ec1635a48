"""Webhook mode: the public listener Telegram posts updates to (behind the load
balancer), and setting the webhook once per configuration across replicas.

At most `max_updates_in_flight` updates are handled at once; beyond that, and
for an update another replica has in hand, the answer is 503 with
Retry-After, so Telegram posts the update again later. On stop the listener
closes first, then the updates in flight finish.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress

from aiogram import Bot
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from redis.asyncio import Redis

from bot.config import Config
from bot.payments.deposits import CryptoPayDeposits, webhook_handler
from bot.runtime.app import App
from bot.runtime.coordination import JobLock, WebhookReply, webhook_reply
from bot.runtime.in_flight import InFlight
from bot.runtime.ticks import every
from cache.client import REDIS_ERRORS
from cache.keys import CacheKeys

log = logging.getLogger(__name__)


class WebhookServer:
    """The public listener of one replica: Telegram's updates on the webhook
    path, Crypto Pay's on its own; /metrics and /healthz are not here (the
    side server, bot/runtime/web.py)."""

    def __init__(self, app: App, config: Config) -> None:
        self.app = app
        self.config = config
        self.in_flight = InFlight()
        self.deferred = 0  # updates answered 503 beyond the bound
        self.runner: web.AppRunner | None = None
        self._busy = False
        app.metrics.read_at_scrape(
            "escrow_webhook_busy",
            "Webhook updates answered 503 beyond max_updates_in_flight (posted again later)",
            "reason",
            lambda: {"max_updates_in_flight": self.deferred},
        )

    async def serve(self, stop: asyncio.Event, serving: Callable[[], Awaitable[None]]) -> int:
        """Listen, make sure Telegram posts here, call `serving`, and once `stop`
        is set stop listening and let the updates in flight finish."""
        app, settings = self.app, self.config.telegram
        secret = webhook_secret(settings.token, settings.webhook_secret)
        web_app = web.Application(middlewares=[self._track_in_flight])
        SimpleRequestHandler(
            app.dispatcher, app.bot, secret_token=secret, handle_in_background=False
        ).register(web_app, path=settings.webhook_path)
        if isinstance(app.deposits, CryptoPayDeposits):
            web_app.router.add_post(
                self.config.payments.cryptopay_webhook_path, webhook_handler(app.deposits)
            )
        shutdown_timeout = self.config.runtime.shutdown_timeout_seconds
        runner = self.runner = web.AppRunner(
            web_app, access_log=None, shutdown_timeout=shutdown_timeout
        )
        await runner.setup()
        # Workers of one `run` share the port (bot/runtime/workers.py).
        reuse_port = self.config.runtime.workers > 1 or None
        await web.TCPSite(
            runner, settings.webhook_host, settings.webhook_port, reuse_port=reuse_port
        ).start()
        log.info(
            "webhook server on http://%s:%d%s",
            settings.webhook_host,
            settings.webhook_port,
            settings.webhook_path,
        )
        redis, keys = app.cache.cache.redis, CacheKeys(self.config.cache.key_prefix)
        allowed_updates = app.dispatcher.resolve_used_update_types()

        async def ensure() -> None:
            await ensure_webhook(
                app.bot,
                redis,
                keys,
                url=settings.webhook_url,
                secret=secret,
                allowed_updates=allowed_updates,
                max_connections=settings.webhook_max_connections,
            )

        # Each jobs tick one replica checks that Telegram still has the webhook
        # (removed from outside, say) and sets it again. The start-up check counts
        # as this tick's, so starting replicas do not ask twice.
        lock, interval = JobLock(redis, keys), self.config.runtime.jobs_interval_seconds
        tick_ms = max(int(interval * 900), 1)  # a little less than a tick

        async def recheck() -> None:
            if await lock.acquire("webhook", tick_ms):
                await ensure()

        await lock.acquire("webhook", tick_ms)
        await ensure()
        keeper = asyncio.create_task(every(interval, stop, recheck, "webhook check"))
        await serving()
        await stop.wait()
        keeper.cancel()  # a check cut short is redone by the next replica's tick
        with suppress(asyncio.CancelledError):
            await keeper
        # Stop listening first, then let the updates in flight finish.
        for site in list(runner.sites):
            await site.stop()
        await self.in_flight.finish(shutdown_timeout)
        return 0

    @web.middleware
    async def _track_in_flight(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        bound = self.config.max_updates_in_flight
        if self.in_flight.count >= bound:
            # Not handled: Telegram keeps an update it got no 2xx for and posts it
            # again after Retry-After (a redelivery is not a duplicate: no
            # replica took it).
            self.deferred += 1
            if not self._busy:
                self._busy = True
                log.warning("%d updates in flight: asking Telegram to deliver more later", bound)
            return web.Response(status=503, headers={"Retry-After": "1"}, text="busy")
        reply = WebhookReply()
        token = webhook_reply.set(reply)
        try:
            with self.in_flight.one():
                response = await handler(request)
        finally:
            webhook_reply.reset(token)
            if self.in_flight.count < bound:
                self._busy = False
        if reply.retry_later:
            # Another replica holds this update's lease (bot/runtime/coordination.py): not
            # handled here; Telegram posts it again, and it is dropped then if
            # that replica finished it, handled if that replica died.
            return web.Response(status=503, headers={"Retry-After": "1"}, text="in hand")
        return response

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def webhook_secret(token: str, configured: str) -> str:
    """The configured secret, or one derived from the token (the same on every replica)."""
    if configured:
        return configured
    return hmac.new(token.encode(), b"escrow-webhook", hashlib.sha256).hexdigest()


def webhook_digest(
    url: str, secret: str, allowed_updates: Sequence[str], max_connections: int = 40
) -> str:
    """What identifies a webhook configuration (the secret itself is not stored)."""
    text = "\n".join([url, secret, ",".join(sorted(allowed_updates)), str(max_connections)])
    return hashlib.sha256(text.encode()).hexdigest()


async def ensure_webhook(
    bot: Bot,
    redis: Redis,
    keys: CacheKeys,
    *,
    url: str,
    secret: str,
    allowed_updates: Sequence[str],
    max_connections: int = 40,
    lock_ms: int = 30_000,
) -> bool:
    """Make sure Telegram posts to `url`; True if this replica called setWebhook.

    Telegram is the authority: its getWebhookInfo (URL and update types) must
    match, whatever Redis says, so a webhook deleted by polling or from outside
    is set again. The secret is not reported, so the digest of what was last
    set (`<prefix>:webhook`) must match too. One replica at a time sets it,
    under a lock; the others wait for the lock and check again, so a replica
    only reports ready once the webhook is really set."""
    digest = webhook_digest(url, secret, allowed_updates, max_connections)
    lock_key = f"{keys.webhook}:lock"
    waiting = False
    while True:
        if await webhook_is_set(bot, redis, keys, url, allowed_updates, digest, max_connections):
            return False
        token = secrets.token_hex(8)
        if await redis.set(lock_key, token, nx=True, px=lock_ms):
            try:
                # the lock's previous holder may have set it meanwhile
                if await webhook_is_set(
                    bot, redis, keys, url, allowed_updates, digest, max_connections
                ):
                    return False
                await bot.set_webhook(
                    url,
                    secret_token=secret,
                    allowed_updates=list(allowed_updates),
                    max_connections=max_connections,
                    drop_pending_updates=False,
                )
                await redis.set(keys.webhook, digest)
                log.info("webhook set to %s", url)
                return True
            finally:
                if (await redis.get(lock_key)) == token.encode():
                    await redis.delete(lock_key)
        if not waiting:
            log.info("another replica is setting the webhook; waiting for it")
            waiting = True
        await asyncio.sleep(0.05)  # the lock expires by itself if its holder died


async def webhook_is_set(
    bot: Bot,
    redis: Redis,
    keys: CacheKeys,
    url: str,
    allowed_updates: Sequence[str],
    digest: str,
    max_connections: int = 40,
) -> bool:
    """Whether the configuration with `digest` was set and Telegram still has it."""
    recorded = await redis.get(keys.webhook)
    if recorded is None or recorded.decode() != digest:
        return False
    info = await bot.get_webhook_info()
    # Telegram leaves its default update types out; ours are never exactly those
    # (a bot that used them all would only call setWebhook once more per start).
    return (
        info.url == url
        and set(info.allowed_updates or ()) == set(allowed_updates)
        and (info.max_connections or 40) == max_connections
    )


async def delete_webhook(bot: Bot, redis: Redis, keys: CacheKeys) -> None:
    """Polling: Telegram must not post anywhere, and the digest of the webhook
    last set goes with it (a later webhook start checks Telegram anyway)."""
    try:
        await redis.delete(keys.webhook)
    except REDIS_ERRORS as exc:
        log.warning("could not forget the webhook's digest in Redis: %r", exc)
    await bot.delete_webhook(drop_pending_updates=False)
