"""The composition root: engine, Redis, cache, services, bot and Dispatcher.

Nothing here runs at import; `build_app` wires one bot replica and tests swap
parts in as keyword arguments (the Telegram double, their own engine or Redis).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.base import BaseSession
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Config
from bot.ops.metrics import Metrics
from bot.payments.cryptopay.client import CryptoPayClient
from bot.payments.deposits import CryptoPayDeposits
from bot.payments.payouts import CryptoPayPayouts, Payouts
from bot.runtime.coordination import RedisUserLock, UpdateDedup
from bot.runtime.in_flight import InFlight
from bot.runtime.notifier import Outbox
from bot.runtime.standby import wire_standby
from bot.runtime.update_metrics import BotApiMetrics, RouteName, UpdateMetrics
from bot.runtime.user_lock import forms_in_redis
from bot.services import ServiceContext, Services
from bot.services.wallets import AdminCreditsOnly, DemoDepositProvider, DepositProvider
from bot.telegram import texts
from bot.telegram.freshness import DealVersions
from bot.telegram.fsm import FormScope
from bot.telegram.handlers import build_router
from bot.telegram.i18n import install_i18n, set_command_menus
from bot.telegram.keyboards import Signer
from bot.telegram.middlewares import (
    AnswerFirst,
    ButtonsSkipStateMiddleware,
    PressLock,
    ProcessEventIsolation,
    SnapshotMiddleware,
    SnapshotSource,
)
from bot.telegram.redis_guard import RedisGuard
from cache.keys import CacheKeys
from cache.replica import CacheReplica
from db import Database
from db.engine import build_engine, build_standby

# Used when no token is configured (local mode, tests): a well-formed token
# that no Telegram server knows.
LOCAL_TOKEN = "1000000000:local-mode-no-telegram"


@dataclass(eq=False)
class App:
    config: Config
    bot: Bot
    dispatcher: Dispatcher
    database: Database
    cache: CacheReplica
    services: Services
    deals_seen: DealVersions
    storage: BaseStorage
    metrics: Metrics
    outbox: Outbox
    in_flight: InFlight
    deposits: DepositProvider | None = None
    payouts: Payouts | None = None
    update_dedup: UpdateDedup | None = None
    _owns_engine: bool = True

    async def register_commands(self) -> None:
        await set_command_menus(self.bot, self.dispatcher["i18n"], texts.COMMANDS)

    async def aclose(self) -> None:
        await self.in_flight.finish(self.config.runtime.shutdown_timeout_seconds)
        if isinstance(self.deposits, CryptoPayDeposits):
            await self.deposits.client.close()
        await self.cache.aclose()
        await self.storage.close()
        await self.bot.session.close()
        await self.database.dispose(engine=self._owns_engine)  # its standby is ours always


def deposit_provider(config: Config, services: Services, outbox: Outbox) -> DepositProvider:
    """Demo in local mode (no token) and where configured (start-up refuses it
    with a token unless allowed, bot/runtime/startup.py); Crypto Pay invoices; otherwise
    admins credit funds."""
    payments = config.payments
    if not config.telegram.token or payments.provider == "demo":
        return DemoDepositProvider(services.wallets)
    if payments.provider == "cryptopay":
        client = CryptoPayClient(
            payments.cryptopay_token,
            base_url=payments.cryptopay_api_base,
            timeout=payments.cryptopay_timeout_seconds,
        )
        provider = CryptoPayDeposits(
            services,
            client,
            payments.cryptopay_token,
            services.ctx.currencies,
            timedelta(seconds=payments.invoice_lifetime_seconds),
        )
        provider.outbox = outbox
        return provider
    return AdminCreditsOnly()


def payout_provider(
    deposits: DepositProvider, services: Services, outbox: Outbox
) -> Payouts | None:
    """Crypto Pay pays approved withdrawals when it takes the deposits; otherwise
    an admin pays by hand and approves after."""
    if not isinstance(deposits, CryptoPayDeposits):
        return None
    payouts = CryptoPayPayouts(services, deposits.client, services.ctx.currencies)
    payouts.outbox = outbox
    return payouts


async def build_app(
    config: Config,
    *,
    session: BaseSession | None = None,
    engine: AsyncEngine | None = None,
    storage: BaseStorage | None = None,
    deposits: DepositProvider | None = None,
    snapshot_source: SnapshotSource | None = None,
    answer_first: bool = True,
    replicas: bool = False,
) -> App:
    """One bot replica. `snapshot_source` and `answer_first` exist for the
    benchmark's ablations (reading the database on every update, answering a
    press after its handler); the product always uses the defaults.

    `replicas`: several replicas share one update stream (webhook mode): one
    user's updates are ordered by a Redis lock instead of a process lock, and
    a redelivered update_id is dropped."""
    owns_engine = engine is None
    engine = engine or build_engine(config.database)
    database = Database(engine, build_standby(config.database))
    cache = CacheReplica.from_settings(config.redis, config.cache, engine, database.standby)
    await cache.start()
    deals_seen = DealVersions()
    cache.listener.on_event.append(deals_seen.heard)

    ctx = ServiceContext(
        db=database,
        settings=config.escrow,
        currencies=config.currency_table(),
        events=cache.publisher,
        notify_grace=timedelta(seconds=config.runtime.outbox_grace_seconds),
    )
    services = Services(ctx)
    bot = Bot(
        config.telegram.token or LOCAL_TOKEN,
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )
    metrics = Metrics(config.observability.slow_update_ms)
    metrics.watch(engine, cache.cache.counters)
    bot.session.middleware(BotApiMetrics(metrics))
    signer = Signer.for_token(config.telegram.token, config.telegram.callback_secret)
    outbox = Outbox(bot, services, signer, config.runtime, metrics, snapshots=cache.cache)
    # Form state, the user's lock and the update dedup share one breaker: a
    # failing Redis is skipped by all three for `breaker_open_seconds`.
    guard = RedisGuard(config.cache.breaker_open_seconds)
    isolation: BaseEventIsolation = ProcessEventIsolation()
    if storage is None:
        storage, isolation = forms_in_redis(config, guard, replicas)
    deposits = deposits or deposit_provider(config, services, outbox)
    payouts = payout_provider(deposits, services, outbox)
    dispatcher = Dispatcher(
        storage=storage,
        disable_fsm=True,
        # handler dependencies, by name
        services=services,
        currencies=ctx.currencies,
        settings=config.escrow,
        signer=signer,
        outbox=outbox,
        deals_seen=deals_seen,
        snapshots=cache.cache,
        # where deposits come from; the demo provider credits on request
        deposits=deposits,
        payouts=payouts,
    )
    # Order matters. aiogram's errors and user-context middlewares come first,
    # then the count of updates in flight (stopping and `aclose` wait for it: an
    # update waiting for a lock, a press's answer on its way), the update's
    # timer, the duplicate check (not for presses), the FSM context (with the
    # user's lock for messages; not for presses). Filters need no I/O. Of the
    # inner middlewares, after naming the route, the callback answer: sent (not
    # waited for) before anything else of the press, its duplicate check, lock
    # and snapshot read included, with the text of its handler's flags if any.
    in_flight = InFlight()
    dispatcher.update.outer_middleware(in_flight)
    # An update reads its sender's form once, however often it asks.
    dispatcher.update.outer_middleware(FormScope())
    fsm = ButtonsSkipStateMiddleware(storage, isolation)
    # timed with its duplicate check and user's lock (and the wait for them)
    dispatcher.update.outer_middleware(UpdateMetrics(metrics))
    update_dedup = None
    if replicas:
        # Before the rest of ours: a duplicate takes no lock. The user's Redis
        # lock (and their form) is taken with the update's lease.
        update_dedup = UpdateDedup(
            cache.cache.redis,
            CacheKeys(config.cache.key_prefix),
            config.runtime.update_dedup_seconds,
            config.runtime.lease_seconds,
            guard,
            users=isolation if isinstance(isolation, RedisUserLock) else None,
            contexts=fsm,
            in_flight=in_flight,
        )
        dispatcher.update.outer_middleware(update_dedup)
    dispatcher.fsm = fsm
    dispatcher.update.outer_middleware(fsm)
    dispatcher.callback_query.middleware(RouteName())
    dispatcher.message.middleware(RouteName())
    answer = AnswerFirst(in_flight, pre=answer_first)
    dispatcher.callback_query.middleware(answer)
    # Only now, the press's own I/O: the duplicate check, the user's lock.
    if update_dedup is not None:
        dispatcher.callback_query.middleware(update_dedup)
    dispatcher.callback_query.middleware(PressLock(isolation))
    snapshot = SnapshotMiddleware(snapshot_source or cache.cache, services)
    dispatcher.callback_query.middleware(snapshot)
    dispatcher.message.middleware(snapshot)
    install_i18n(dispatcher, cache.cache, ctx.currencies)  # the language: after the snapshot
    wire_standby(database, cache, dispatcher, metrics)
    dispatcher.include_router(build_router())
    metrics.read_at_scrape(
        "escrow_press_answers_failed",
        "Presses whose answerCallbackQuery failed (handled anyway)",
        "reason",
        lambda: {"telegram_error": answer.failed},
    )
    if isinstance(deposits, CryptoPayDeposits):
        invoices = deposits
        metrics.read_at_scrape(
            "escrow_cryptopay_deposits",
            "Crypto Pay deposits by outcome: invoice_created, invoice_failed, credited,"
            " mismatched, expired, unchanged (reported again), unknown (not our invoice),"
            " webhook_refused (bad signature), webhook_malformed",
            "outcome",
            lambda: dict(invoices.counts),
        )
    if isinstance(payouts, CryptoPayPayouts):
        transfers = payouts
        metrics.read_at_scrape(
            "escrow_cryptopay_payouts",
            "Crypto Pay payouts by outcome: paid, refused, unknown (settled by the reconciler)",
            "outcome",
            lambda: dict(transfers.counts),
        )
    if update_dedup is not None:
        dedup = update_dedup
        metrics.read_at_scrape(
            "escrow_updates_not_handled",
            "Updates not handled here: done already (duplicate), or in hand on another"
            " replica (answered 503 so Telegram posts them again)",
            "reason",
            lambda: {"duplicate": dedup.dropped, "in_hand_elsewhere": dedup.deferred},
        )
    if isinstance(isolation, RedisUserLock):
        user_lock = isolation
        metrics.read_at_scrape(
            "escrow_user_lock_skipped",
            "Updates handled without the user's Redis lock (Redis failing, or held too long)",
            "reason",
            lambda: {"unavailable_or_held": user_lock.unlocked},
        )
    return App(
        config=config,
        bot=bot,
        dispatcher=dispatcher,
        database=database,
        cache=cache,
        services=services,
        deals_seen=deals_seen,
        storage=storage,
        metrics=metrics,
        outbox=outbox,
        in_flight=in_flight,
        deposits=deposits,
        payouts=payouts,
        update_dedup=update_dedup,
        _owns_engine=owns_engine,
    )
