"""`python -m bot run`: one replica's life.

Connect (bounded retries, saying why it waits) → migrate (if configured) →
build the app → warm up → gc.freeze() → serve: polling, webhook, or local
mode when no token is configured → on SIGTERM/SIGINT stop taking updates,
finish the ones in flight, record what the outbox sent, close the pools.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, Literal

import msgspec
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.base import BaseSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramNetworkError, TelegramServerError
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from sqlalchemy import text

from bot.app import App, build_app
from bot.config import Config
from bot.ops import migrate
from bot.ops.logs import configure_logging
from bot.payments.deposits import CryptoPayDeposits, webhook_handler
from bot.runtime.coordination import (
    JobLock,
    WebhookReply,
    delete_webhook,
    ensure_webhook,
    webhook_reply,
    webhook_secret,
)
from bot.runtime.embedded import EmbeddedServices, needs_embedded
from bot.runtime.jobs import BackgroundJobs
from bot.runtime.limits import RetryAfter, SendRate
from bot.runtime.startup import TRANSIENT, StartupError, wait_for_services, with_retries
from bot.runtime.ticks import every
from bot.runtime.web import start_side_server
from bot.sim import FakeTelegram
from cache.keys import CacheKeys

log = logging.getLogger("bot.runtime.run")
Mode = Literal["local", "polling", "webhook"]


def mode_of(config: Config) -> Mode:
    return config.telegram.mode if config.telegram.token else "local"


def telegram_session(config: Config, mode: Mode) -> BaseSession:
    if mode == "local":
        return FakeTelegram(bot_username="escrow_local_bot", bot_name="Escrow (local)")
    return AiohttpSession(api=TelegramAPIServer.from_base(config.telegram.api_base))


def check_fit_to_serve(config: Config, mode: Mode) -> None:
    """Refuse a configuration that would serve real people badly (StartupError)."""
    if mode == "local":
        return
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


def local_config(config: Config) -> Config:
    """Local mode: the simulated admin is an admin of this run."""
    admin = config.runtime.local_admin_id
    if admin in config.escrow.admins:
        return config
    escrow = msgspec.structs.replace(config.escrow, admins=(*config.escrow.admins, admin))
    return msgspec.structs.replace(config, escrow=escrow)


class Replica:
    """One running replica; `stop()` (or SIGTERM/SIGINT) ends `run()` gracefully."""

    def __init__(
        self,
        config: Config,
        *,
        session: BaseSession | None = None,
        out: Callable[[str], object] = print,
    ) -> None:
        self.mode = mode_of(config)
        self.config = local_config(config) if self.mode == "local" else config
        self.session = session
        self.out = out
        self.app: App | None = None
        self.jobs: BackgroundJobs | None = None
        self.web_runner: web.AppRunner | None = None  # webhook mode's public listener
        self.side_runner: web.AppRunner | None = None  # /metrics and /healthz
        self.embedded: EmbeddedServices | None = None
        self.ready = asyncio.Event()
        self.in_flight = 0
        self.deferred = 0  # webhook updates answered 503 beyond the bound
        self._busy = False
        self._stop = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            with suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self._start()
            return await self._serve()
        except StartupError as exc:
            log.error("cannot start: %s", exc)
            return 1
        finally:
            for sig in signals:
                with suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            await self._close()

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("%s: stopping (no new updates; finishing those in flight)", sig.name)
        self.stop()

    # -- start-up ---------------------------------------------------------------------

    async def _start(self) -> None:
        config, started = self.config, time.perf_counter()
        check_fit_to_serve(config, self.mode)  # before touching any service
        log.info("starting in %s mode", self.mode)
        if needs_embedded(config):
            self.embedded = EmbeddedServices(Path(config.runtime.embedded_data_dir))
            config = self.config = await self.embedded.start(config)
        await wait_for_services(config)
        if config.runtime.migrate_on_start:  # one replica at a time (an advisory lock)
            before, after = await migrate.upgrade(config.database)
            if before != after:
                log.info("schema migrated from %s to %s", before or "nothing", after)
            log.info("schema at revision %s (head %s)", after, migrate.head_revision())
        session = self.session or telegram_session(config, self.mode)
        app = self.app = await build_app(config, session=session, replicas=self.mode == "webhook")
        if self.mode == "webhook":
            app.metrics.read_at_scrape(
                "escrow_webhook_busy",
                "Webhook updates answered 503 beyond max_updates_in_flight (posted again later)",
                "reason",
                lambda: {"max_updates_in_flight": self.deferred},
            )
        app.bot.session.middleware(
            RetryAfter(
                config.runtime.retry_after_attempts,
                config.runtime.retry_after_max_seconds,
                server_error_attempts=config.runtime.server_error_attempts,
                server_error_wait=config.runtime.server_error_wait_seconds,
                on_retry=lambda method, _: app.metrics.telegram_retries.labels(method).inc(),
            )
        )
        if self.mode != "local":  # inside the retries: a second attempt is paced too
            runtime = config.runtime
            app.bot.session.middleware(
                SendRate(
                    runtime.send_per_second,
                    runtime.chat_send_per_second,
                    runtime.chat_send_burst,
                )
            )
        # Warm-up: the pool's first connection, the bot's identity, the menu.
        async with app.database.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        me = await with_retries(
            f"the Bot API at {config.telegram.api_base}",
            app.bot.me,
            config.runtime.connect_attempts,
            config.runtime.connect_backoff_max_seconds,
            (*TRANSIENT, TelegramNetworkError, TelegramServerError),
        )
        await app.register_commands()
        currencies = ", ".join(
            f"{c.code} (fee {c.fee_bps / 100:g}%)" for c in config.currency_table()
        )
        log.info(
            "bot @%s; currencies %s; %d admins", me.username, currencies, len(config.escrow.admins)
        )
        redis = app.cache.cache.redis
        self.jobs = BackgroundJobs(
            app.services,
            app.outbox,
            JobLock(redis, CacheKeys(config.cache.key_prefix)),
            config.runtime.jobs_interval_seconds,
            config.runtime.reminder_before_hours * 3600,
            config.runtime.withdrawal_timeout_hours * 3600,
            config.runtime.outbox_keep_days * 86_400,
            deposits=app.deposits,
            payouts=app.payouts,
        )
        self.jobs.start()
        app.outbox.start()  # on every replica: claims never overlap
        # Everything built so far lives as long as the process: keep it out of
        # the collector's generations so full collections stay short.
        gc.collect()
        gc.freeze()
        log.info("ready in %.0f ms", (time.perf_counter() - started) * 1000)

    # -- serving ----------------------------------------------------------------------

    async def _serving(self) -> None:
        """Taking updates now: open /metrics and /healthz, so a health check that
        answers means a replica that serves, then say ready."""
        observability = self.config.observability
        # In every mode on the internal side server: in webhook mode the public
        # listener (behind the load balancer) serves the webhook path only.
        if observability.http_port and self.app is not None:
            try:
                self.side_runner = await start_side_server(
                    self.app, observability.http_host, observability.http_port
                )
            except OSError as exc:  # the bot is still worth running without them
                log.warning("no /metrics and /healthz: %s", exc)
        self.ready.set()

    async def _serve(self) -> int:
        match self.mode:
            case "local":
                return await self._serve_local()
            case "polling":
                return await self._serve_polling()
            case "webhook":
                return await self._serve_webhook()

    async def _until_stopped(self, work: asyncio.Task[Any]) -> None:
        stopped = asyncio.create_task(self._stop.wait())
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()

    async def _serve_local(self) -> int:
        from bot.sim.local import LocalMode

        app = self.app
        assert app is not None
        telegram = app.bot.session
        if not isinstance(telegram, FakeTelegram):
            raise TypeError("local mode needs the Telegram double as the session")
        self.out("Local mode: no token configured, so simulated people talk to the bot.")
        self.out("")
        local = LocalMode(app, telegram, self.config.runtime.local_admin_id, self.out)
        await self._serving()
        work = asyncio.create_task(local.run())
        await self._until_stopped(work)
        if not work.done():
            work.cancel()  # interrupted: the updates already handled are committed
            with suppress(asyncio.CancelledError):
                await work
            return 130
        timings = work.result()
        self.out("")
        self.out("Latency per kind of update (this process, local Postgres and Redis):")
        for line in timings.summary():
            self.out("  " + line)
        return 0

    async def _serve_polling(self) -> int:
        app = self.app
        assert app is not None
        dispatcher = app.dispatcher
        # Polling and a webhook exclude each other; the webhook's digest goes too.
        await delete_webhook(
            app.bot, app.cache.cache.redis, CacheKeys(self.config.cache.key_prefix)
        )
        polling = asyncio.create_task(
            dispatcher.start_polling(
                app.bot,
                handle_signals=False,
                close_bot_session=False,
                # Beyond the bound the loop waits before asking Telegram for more.
                tasks_concurrency_limit=self.config.max_updates_in_flight,
            )
        )
        await self._serving()
        await self._until_stopped(polling)
        if not polling.done():
            await dispatcher.stop_polling()
        # Updates already taken run as tasks of their own: let them finish.
        in_flight = set(getattr(dispatcher, "_handle_update_tasks", ()))
        if in_flight:
            log.info("finishing %d updates in flight", len(in_flight))
            await asyncio.wait(in_flight, timeout=self.config.runtime.shutdown_timeout_seconds)
        try:
            await polling
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("polling failed")
            return 1
        return 0

    async def _serve_webhook(self) -> int:
        app = self.app
        assert app is not None
        settings = self.config.telegram
        secret = webhook_secret(settings.token, settings.webhook_secret)
        web_app = web.Application(middlewares=[self._track_in_flight])
        SimpleRequestHandler(
            app.dispatcher, app.bot, secret_token=secret, handle_in_background=False
        ).register(web_app, path=settings.webhook_path)
        if isinstance(app.deposits, CryptoPayDeposits):
            web_app.router.add_post(
                self.config.payments.cryptopay_webhook_path, webhook_handler(app.deposits)
            )
        runner = self.web_runner = web.AppRunner(
            web_app, access_log=None, shutdown_timeout=self.config.runtime.shutdown_timeout_seconds
        )
        await runner.setup()
        await web.TCPSite(runner, settings.webhook_host, settings.webhook_port).start()
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
        keeper = asyncio.create_task(every(interval, self._stop, recheck, "webhook check"))
        await self._serving()
        await self._stop.wait()
        keeper.cancel()  # a check cut short is redone by the next replica's tick
        with suppress(asyncio.CancelledError):
            await keeper
        # Stop listening first, then let the updates in flight finish.
        for site in list(runner.sites):
            await site.stop()
        if self.in_flight:
            log.info("finishing %d updates in flight", self.in_flight)
            with suppress(TimeoutError):
                async with asyncio.timeout(self.config.runtime.shutdown_timeout_seconds):
                    await self._idle.wait()
        return 0

    @web.middleware
    async def _track_in_flight(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        bound = self.config.max_updates_in_flight
        if self.in_flight >= bound:
            # Not handled: Telegram keeps an update it got no 2xx for and posts it
            # again after Retry-After (a redelivery is not a duplicate: no
            # replica took it).
            self.deferred += 1
            if not self._busy:
                self._busy = True
                log.warning("%d updates in flight: asking Telegram to deliver more later", bound)
            return web.Response(status=503, headers={"Retry-After": "1"}, text="busy")
        self.in_flight += 1
        self._idle.clear()
        reply = WebhookReply()
        token = webhook_reply.set(reply)
        try:
            response = await handler(request)
        finally:
            webhook_reply.reset(token)
            self.in_flight -= 1
            if self.in_flight < bound:
                self._busy = False
            if not self.in_flight:
                self._idle.set()
        if reply.retry_later:
            # Another replica holds this update's lease (bot/runtime/coordination.py): not
            # handled here; Telegram posts it again, and it is dropped then if
            # that replica finished it, handled if that replica died.
            return web.Response(status=503, headers={"Retry-After": "1"}, text="in hand")
        return response

    # -- shutdown ---------------------------------------------------------------------

    async def _close(self) -> None:
        gc.unfreeze()
        if self.jobs is not None:
            await self.jobs.stop()
        if self.app is not None:  # after the updates in flight: record what they sent
            await self.app.outbox.stop()
        for runner in (self.web_runner, self.side_runner):
            if runner is not None:
                await runner.cleanup()
        if self.app is not None:
            await self.app.aclose()
            log.info("stopped; pools closed")
        if self.embedded is not None:
            await self.embedded.stop()


async def run(config: Config, *, session: BaseSession | None = None) -> int:
    return await Replica(config, session=session).run()


def main(config: Config) -> int:
    """The `run` command: logging from [observability], uvloop when installed."""
    configure_logging(config.observability.log_format, config.observability.log_level)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run(config))
    return uvloop.run(run(config))


if __name__ == "__main__":
    from bot.config import load_config

    sys.exit(main(load_config()))
