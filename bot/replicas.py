"""What makes several replicas safe to run side by side: a redelivered update
is handled once, the webhook is set once per configuration, and a background
job runs on one replica per tick. All of it is a Redis key under the cache's
prefix (`cache.keys`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.types import CallbackQuery, TelegramObject, Update
from redis.asyncio import Redis
from redis.exceptions import RedisError

from cache.keys import CacheKeys

log = logging.getLogger(__name__)


class UpdateDedup(BaseMiddleware):
    """The first replica to `SET NX` an update_id handles it; a redelivery
    (Telegram retrying a slow webhook, or a load balancer sending it twice) is
    dropped.

    Outer middleware on updates for everything but button presses; a press is
    answered first (answering twice is harmless) and checked by the same
    instance registered as an inner middleware of presses, after the answer.

    If the update fails, the key is deleted so a redelivery may try again. If
    Redis cannot answer, the update is handled: its writes are guarded in the
    database anyway, so a rare double is a polite no-op, never a second payout."""

    def __init__(self, redis: Redis, keys: CacheKeys, ttl_seconds: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_seconds = ttl_seconds
        self.dropped = 0

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if isinstance(event, Update):
            if event.callback_query is not None:  # checked after its answer
                return await handler(event, data)
            update_id = event.update_id
        elif isinstance(event, CallbackQuery):
            update_id = data["event_update"].update_id
        else:
            return await handler(event, data)
        key = self.keys.update(update_id)
        try:
            first = await self.redis.set(key, 1, nx=True, ex=self.ttl_seconds)
        except RedisError as exc:
            log.warning("update %s: dedup skipped, Redis failed: %r", update_id, exc)
            return await handler(event, data)
        if not first:
            self.dropped += 1
            log.info("update %s already taken; dropped", update_id)
            return None
        try:
            return await handler(event, data)
        except BaseException:
            with suppress(RedisError):
                await self.redis.delete(key)
            raise


class JobLock:
    """One replica per tick: `SET <prefix>:job:<name> <token> NX PX <tick>`.

    The key is never released: it expires with the tick, so however many
    replicas wake up in that tick, one runs the job."""

    def __init__(self, redis: Redis, keys: CacheKeys) -> None:
        self.redis = redis
        self.keys = keys
        self.token = secrets.token_hex(8)

    async def acquire(self, name: str, ttl_ms: int) -> bool:
        return bool(await self.redis.set(self.keys.job(name), self.token, nx=True, px=ttl_ms))


def webhook_secret(token: str, configured: str) -> str:
    """The configured secret, or one derived from the token (the same on every replica)."""
    if configured:
        return configured
    return hmac.new(token.encode(), b"escrow-webhook", hashlib.sha256).hexdigest()


def webhook_digest(url: str, secret: str, allowed_updates: Sequence[str]) -> str:
    """What identifies a webhook configuration (the secret itself is not stored)."""
    text = "\n".join([url, secret, ",".join(sorted(allowed_updates))])
    return hashlib.sha256(text.encode()).hexdigest()


async def ensure_webhook(
    bot: Bot,
    redis: Redis,
    keys: CacheKeys,
    *,
    url: str,
    secret: str,
    allowed_updates: Sequence[str],
    lock_ms: int = 30_000,
) -> bool:
    """Make sure Telegram posts to `url`; True if this replica called setWebhook.

    Telegram is the authority: its getWebhookInfo (URL and update types) must
    match, whatever Redis says, so a webhook deleted by polling or from outside
    is set again. The secret is not reported, so the digest of what was last
    set (`<prefix>:webhook`) must match too. One replica at a time sets it,
    under a lock; the others wait for the lock and check again, so a replica
    only reports ready once the webhook is really set."""
    digest = webhook_digest(url, secret, allowed_updates)
    lock_key = f"{keys.webhook}:lock"
    waiting = False
    while True:
        if await webhook_is_set(bot, redis, keys, url, allowed_updates, digest):
            return False
        token = secrets.token_hex(8)
        if await redis.set(lock_key, token, nx=True, px=lock_ms):
            try:
                # the lock's previous holder may have set it meanwhile
                if await webhook_is_set(bot, redis, keys, url, allowed_updates, digest):
                    return False
                await bot.set_webhook(
                    url,
                    secret_token=secret,
                    allowed_updates=list(allowed_updates),
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
) -> bool:
    """Whether the configuration with `digest` was set and Telegram still has it."""
    recorded = await redis.get(keys.webhook)
    if recorded is None or recorded.decode() != digest:
        return False
    info = await bot.get_webhook_info()
    # Telegram leaves its default update types out; ours are never exactly those
    # (a bot that used them all would only call setWebhook once more per start).
    return info.url == url and set(info.allowed_updates or ()) == set(allowed_updates)


async def delete_webhook(bot: Bot, redis: Redis, keys: CacheKeys) -> None:
    """Polling: Telegram must not post anywhere, and the digest of the webhook
    last set goes with it (a later webhook start checks Telegram anyway)."""
    try:
        await redis.delete(keys.webhook)
    except RedisError as exc:
        log.warning("could not forget the webhook's digest in Redis: %r", exc)
    await bot.delete_webhook(drop_pending_updates=False)
