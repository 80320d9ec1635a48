"""Start-up: refusing a configuration that would serve real people badly, and
waiting for Postgres and Redis (and anything else worth waiting for) with
bounded retries, saying what it waits for and why."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import asyncpg
import msgspec
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.base import BaseSession
from aiogram.client.telegram import TelegramAPIServer
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from bot.config import Config
from bot.ops import migrate
from bot.sim import FakeTelegram

log = logging.getLogger("bot.runtime.run")  # start-up speaks in `run`'s log
T = TypeVar("T")
Mode = Literal["local", "polling", "webhook"]
# Worth waiting for at start-up; anything else (a wrong password, say) stops at once.
TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    RedisConnectionError,
    RedisTimeoutError,
)


def redacted_url(url: str) -> str:
    """A Redis URL fit for a log or an error: a password, in the user part or as
    `?password=`, shown as ***. (SQLAlchemy's URL parses any scheme://user:pass@.)"""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url.split("://", 1)[0] + "://…"  # unparseable: show nothing that may be secret
    shown = parsed.render_as_string(hide_password=True)
    if "password" in parsed.query:  # redis-py also takes it as a query argument
        hidden = parsed.update_query_dict({"password": "***"}).render_as_string(hide_password=True)
        shown = hidden.replace("password=%2A%2A%2A", "password=***")
    return shown


class StartupError(Exception):
    """Start-up cannot go on: the configuration is unfit to serve, or a service
    did not answer within the configured attempts."""


def check_fit_to_serve(config: Config) -> None:
    """Refuse a configuration that would serve real people badly (StartupError);
    for a Telegram token, not local mode."""
    if not config.escrow.admins:
        raise StartupError(
            "no admins configured: disputes could never be settled and withdrawals would "
            "wait until they time out. Set [escrow] admins in config.toml or "
            "ESCROW__ESCROW__ADMINS='[<Telegram user id>, ...]'"
        )
    if config.payments.provider == "cryptopay" and not config.payments.cryptopay_token:
        raise StartupError(
            'payments: provider = "cryptopay" needs the Crypto Pay app\'s token: set '
            "ESCROW__PAYMENTS__CRYPTOPAY_TOKEN (from @CryptoBot > Crypto Pay > My Apps)"
        )
    if config.payments.provider == "demo":
        if not config.payments.allow_demo:
            raise StartupError(
                'payments: provider = "demo" credits any amount anyone asks for (play '
                "money); with a Telegram token that is refused. Set [payments] provider = "
                '"none" (admins credit funds), or allow_demo = true '
                "(ESCROW__PAYMENTS__ALLOW_DEMO=true) to run play money on purpose"
            )
        log.warning(
            "DEMO PAYMENTS with a real Telegram token: anyone can credit any amount to "
            "their own wallet. Balances are play money; never let real funds in or out."
        )


async def with_retries(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    attempts: int,
    backoff_max: float,
    transient: tuple[type[BaseException], ...] = TRANSIENT,
) -> T:
    delay = 0.1
    for number in range(1, attempts + 1):
        try:
            return await attempt()
        except transient as exc:
            if number == attempts:
                raise StartupError(
                    f"{what} did not answer after {attempts} attempts: {exc}"
                ) from exc
            log.warning(
                "waiting for %s (attempt %d of %d failed: %s); retrying in %.1fs",
                what,
                number,
                attempts,
                exc or type(exc).__name__,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, backoff_max)
    raise AssertionError("unreachable")


async def wait_for_services(config: Config) -> None:
    """Postgres (creating the database when migrations run on start) and Redis."""
    runtime = config.runtime
    url = config.database.sqlalchemy_url

    async def postgres() -> None:
        if runtime.migrate_on_start:
            await migrate.ensure_database(config.database)
            return
        conn = await asyncpg.connect(
            host=url.host or url.query.get("host"),
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            database=url.database,
            timeout=config.database.connect_timeout_seconds,
        )
        await conn.close()

    async def redis() -> None:
        client = Redis.from_url(config.redis.url, socket_connect_timeout=2, socket_timeout=2)
        try:
            await client.ping()
        finally:
            await client.aclose()

    where = url.render_as_string(hide_password=True)
    attempts, backoff = runtime.connect_attempts, runtime.connect_backoff_max_seconds
    await with_retries(f"Postgres at {where}", postgres, attempts, backoff)
    log.info("Postgres answers at %s", where)
    where = redacted_url(config.redis.url)
    await with_retries(f"Redis at {where}", redis, attempts, backoff)
    log.info("Redis answers at %s", where)


def mode_of(config: Config) -> Mode:
    return config.telegram.mode if config.telegram.token else "local"


def telegram_session(config: Config, mode: Mode) -> BaseSession:
    if mode == "local":
        return FakeTelegram(bot_username="escrow_local_bot", bot_name="Escrow (local)")
    return AiohttpSession(api=TelegramAPIServer.from_base(config.telegram.api_base))


# A delivered deal nobody releases is released after this long in local mode
# (72 hours by default), so the demo (bot/sim/local.py) shows one.
LOCAL_RELEASE_AFTER_SECONDS = 2.0


def local_config(config: Config) -> Config:
    """Local mode: the simulated admin is an admin of this run, and a delivered
    deal is released after seconds, not days, so the demo shows one."""
    admin = config.runtime.local_admin_id
    admins = (
        config.escrow.admins if admin in config.escrow.admins else (*config.escrow.admins, admin)
    )
    escrow = msgspec.structs.replace(
        config.escrow,
        admins=admins,
        auto_release_after_hours=LOCAL_RELEASE_AFTER_SECONDS / 3600,
    )
    return msgspec.structs.replace(config, escrow=escrow)
