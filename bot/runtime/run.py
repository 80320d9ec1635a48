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
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from aiogram.client.session.base import BaseSession
from aiogram.exceptions import TelegramNetworkError, TelegramServerError
from aiohttp import web

from bot.config import Config
from bot.ops import migrate
from bot.ops.logs import configure_logging
from bot.runtime.app import App, build_app
from bot.runtime.coordination import JobLock
from bot.runtime.embedded import EmbeddedServices, needs_embedded
from bot.runtime.jobs import BackgroundJobs
from bot.runtime.limits import RetryAfter
from bot.runtime.polling import serve_polling, until_stopped
from bot.runtime.send_rate import pace_sends
from bot.runtime.shared_pace import SharedPace
from bot.runtime.startup import (
    TRANSIENT,
    StartupError,
    check_fit_to_serve,
    local_config,
    mode_of,
    telegram_session,
    wait_for_services,
    with_retries,
)
from bot.runtime.web import start_side_server
from bot.runtime.webhook import WebhookServer
from bot.runtime.workers import supervise
from bot.sim import FakeTelegram
from cache.keys import CacheKeys
from db.sql.ops import PING

log = logging.getLogger("bot.runtime.run")


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
        self.webhook: WebhookServer | None = None  # webhook mode's public listener
        self.side_runner: web.AppRunner | None = None  # /metrics and /healthz
        self.embedded: EmbeddedServices | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()

    @property
    def in_flight(self) -> int:
        """Updates being handled now (in webhook mode, requests being answered)."""
        if self.webhook is not None:
            return self.webhook.in_flight.count
        return self.app.in_flight.count if self.app is not None else 0

    @property
    def deferred(self) -> int:
        """Webhook updates answered 503 beyond `max_updates_in_flight`."""
        return self.webhook.deferred if self.webhook is not None else 0

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
        if self.mode != "local":  # before touching any service
            check_fit_to_serve(config)
        worker = config.runtime.worker and f" (worker {config.runtime.worker})"
        log.info("starting in %s mode%s", self.mode, worker or "")
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
            self.webhook = WebhookServer(app, config)
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
            # several replicas share one budget in Redis; one polling instance has its own
            runtime, cache = config.runtime, app.cache.cache
            shared = SharedPace(
                cache.redis,
                cache.keys,
                runtime.send_per_second,
                runtime.chat_send_per_second,
                runtime.chat_send_burst,
            )
            pace_sends(
                app.bot,
                app.dispatcher,
                runtime,
                app.metrics,
                shared=shared if self.mode == "webhook" else None,
            )
        # Warm-up: the pool's first connection, the bot's identity, the menu.
        async with app.database.engine.connect() as conn:
            await conn.execute(PING)
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
                    self.app, observability.http_host, observability.http_port, self._stop
                )
            except OSError as exc:  # the bot is still worth running without them
                log.warning("no /metrics and /healthz: %s", exc)
        self.ready.set()

    async def _serve(self) -> int:
        assert self.app is not None
        match self.mode:
            case "local":
                return await self._serve_local()
            case "polling":
                return await serve_polling(self.app, self.config, self._stop, self._serving)
            case "webhook":
                assert self.webhook is not None
                return await self.webhook.serve(self._stop, self._serving)

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
        await until_stopped(work, self._stop)
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

    # -- shutdown ---------------------------------------------------------------------

    async def _close(self) -> None:
        gc.unfreeze()
        if self.jobs is not None:
            await self.jobs.stop()
        if self.app is not None:  # after the updates in flight: record what they sent
            await self.app.outbox.stop()
        if self.webhook is not None:
            await self.webhook.close()
        if self.side_runner is not None:
            await self.side_runner.cleanup()
        if self.app is not None:
            await self.app.aclose()
            log.info("stopped; pools closed")
        if self.embedded is not None:
            await self.embedded.stop()


async def run(config: Config, *, session: BaseSession | None = None) -> int:
    return await Replica(config, session=session).run()


def main(config: Config, config_path: Path | None = None) -> int:
    """The `run` command: logging from [observability], uvloop when installed;
    with `[runtime] workers` > 1, that many worker processes (bot/runtime/workers.py)."""
    configure_logging(config.observability.log_format, config.observability.log_level)
    if config.runtime.workers > 1 and not config.runtime.worker:
        return supervise(config, config_path)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run(config))
    return uvloop.run(run(config))


if __name__ == "__main__":
    from bot.config import load_config

    sys.exit(main(load_config()))
