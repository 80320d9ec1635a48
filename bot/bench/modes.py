"""What the benchmark runs side by side: the product (also on a cluster), the
floor, the ablations and the seed plan's snapshot read, each its own replica.
Every mode gets the same simulated users and the same mix; only what the
mode names changes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import msgspec
from aiogram import Bot, Dispatcher, Router
from aiogram.types import CallbackQuery, Message
from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from bot.config import Config
from bot.runtime.app import LOCAL_TOKEN, App, build_app
from bot.sim.telegram import FakeTelegram
from cache.loader import PostgresSnapshotLoader
from cache.snapshots import UserSnapshot, snapshot_of
from db.engine import DatabaseSettings, build_engine
from db.explain import explain
from db.models import User, Wallet
from db.sql.dataset import BUSY_USER_SAMPLE, USER_WITH_WALLETS
from db.sql.hot import HOT_QUERIES, Sample


@dataclass(frozen=True)
class Mode:
    name: str
    what: str
    loop: str = "open"  # open (Poisson arrivals at --rate), closed (--concurrency users), replay
    l1: bool = True
    source: str = "cache"  # where snapshots come from: cache | core | orm | seed_snapshot
    answer_first: bool = True
    freeze_gc: bool = True
    drop_indexes: bool = False
    floor: bool = False
    second: str = ""  # a second bot process: "" none, "deposits", "serves" (half the load)
    webhook: bool = False  # built as in webhook mode (replicas=True)
    round_trip: bool = True  # the Telegram double's round-trip model (--rtt-ms)
    topology: bool = False  # on a Redis Cluster and a Postgres primary with a hot standby


MODES: dict[str, Mode] = {
    mode.name: mode
    for mode in (
        Mode("normal", "the product: L1 + Redis L2 snapshot cache, answer first, gc frozen"),
        Mode(
            "cluster",
            "the product on a Redis Cluster (three masters, a replica each) and a Postgres"
            " primary whose hot standby serves cards, lists and snapshot loads (read_url)",
            topology=True,
        ),
        Mode(
            "floor",
            "the same updates (replayed from normal) through an aiogram Dispatcher whose "
            "handlers only answer (answerCallbackQuery / one sendMessage)",
            loop="replay",
            floor=True,
        ),
        Mode("no_l1", "L1 off: every snapshot read is one Redis GET", l1=False),
        Mode(
            "no_cache",
            "no cache: one Core SQL statement per update for the snapshot",
            source="core",
        ),
        Mode(
            "orm",
            "no cache, snapshot loaded through an ORM session (joinedload) instead of Core",
            source="orm",
        ),
        Mode(
            "no_indexes",
            "the product without the seed's composite indexes (dropped, ANALYZEd, rebuilt after)",
            drop_indexes=True,
        ),
        Mode("answer_last", "the callback answered after the handler", answer_first=False),
        Mode("gc_unfrozen", "the product without gc.freeze() after start-up", freeze_gc=False),
        Mode(
            "seed_snapshot",
            "the product with only its snapshot read replaced by the seed's: a synchronous "
            "session blocking the loop, three separate queries; answer last; closed loop at "
            "--concurrency users",
            loop="closed",
            source="seed_snapshot",
            answer_first=False,
        ),
        Mode(
            "saturation",
            "the product, closed loop at --concurrency users; Telegram's round trip off "
            "(with it, a closed loop measures concurrency over the round trip, not the server)",
            loop="closed",
            round_trip=False,
        ),
        Mode(
            "saturation_2",
            "two bot processes both serving as in webhook mode (two workers of one `run`), "
            "each half the users in a closed loop at half --concurrency; Telegram's round "
            "trip off; throughput of both",
            loop="closed",
            round_trip=False,
            second="serves",
            webhook=True,
        ),
        Mode(
            "replicas",
            "the product while a second bot process deposits through its own services "
            "(commit-to-invalidation delay on this replica)",
            second="deposits",
        ),
        Mode(
            "webhook",
            "two bot processes both serving as in webhook mode (update dedup SET NX, the "
            "user's Redis lock), each half the users at half --rate; figures of this one",
            second="serves",
            webhook=True,
        ),
    )
}


# -- where snapshots come from -------------------------------------------------------


class CoreSource:
    """The cache's own loader, called on every update (no cache)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.get = PostgresSnapshotLoader(engine)


def _snapshot(user: Any, wallets: list[Any]) -> UserSnapshot:
    return snapshot_of(user, sorted(wallets, key=lambda w: w.currency))


class OrmSource:
    """User and wallets through an AsyncSession, eager-loaded (the seed's fix)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.statement = USER_WITH_WALLETS

    async def get(self, telegram_id: int) -> UserSnapshot | None:
        async with self.sessions() as session:
            result = await session.execute(self.statement.where(User.telegram_id == telegram_id))
            user = result.unique().scalar_one_or_none()
            return None if user is None else _snapshot(user, list(user.wallets))


def _seed_queries(session: Session, telegram_id: int) -> UserSnapshot | None:
    # Query 1: fetch the user.
    user = session.query(User).filter_by(telegram_id=telegram_id).first()
    if user is None:
        return None
    # Query 2: a helper validates the user's status by fetching it again.
    session.query(User).filter_by(telegram_id=telegram_id).first()
    # Query 3: formatting the balance fetches the wallets.
    wallets = session.query(Wallet).filter_by(user_id=user.id).all()
    return _snapshot(user, wallets)


class SeedSource:
    """The seed plan's read: a synchronous session on the event loop's thread.

    With psycopg installed (the `bench` extra) it is exactly that. Without it,
    the same three queries go through asyncpg on a thread of their own while
    the event loop waits for them, blocked, which is what a synchronous driver
    does."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        try:
            import psycopg  # noqa: F401
        except ImportError:
            self.driver = "asyncpg, awaited by the blocked event loop (psycopg not installed)"
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, daemon=True).start()
            self._async_engine = build_engine(settings)
            self.engine: Engine = self._async_engine.sync_engine
            self._sessions = async_sessionmaker(self._async_engine)
        else:
            self.driver = "psycopg (synchronous)"
            url = settings.sqlalchemy_url.set(drivername="postgresql+psycopg")
            self.engine = create_engine(url, pool_size=settings.pool_size, max_overflow=10)
            self._sync_sessions = sessionmaker(self.engine)

    async def get(self, telegram_id: int) -> UserSnapshot | None:
        if self._loop is None:
            with self._sync_sessions() as session:
                return _seed_queries(session, telegram_id)
        return self._block(self._bridged(telegram_id))

    async def _bridged(self, telegram_id: int) -> UserSnapshot | None:
        async with self._sessions() as session:
            return await session.run_sync(_seed_queries, telegram_id)

    def _block(self, coro: Coroutine[Any, Any, Any]) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def aclose(self) -> None:
        if self._loop is None:
            self.engine.dispose()
            return
        self._block(self._async_engine.dispose())
        self._loop.call_soon_threadsafe(self._loop.stop)


# -- building a mode's bot -------------------------------------------------------------


@dataclass
class Built:
    bot: Bot
    dispatcher: Dispatcher
    app: App | None = None
    engines: tuple[Engine, ...] = ()  # to count SQL on
    seed: SeedSource | None = None
    closers: tuple[Callable[[], Coroutine[Any, Any, Any]], ...] = ()

    async def aclose(self) -> None:
        if self.app is not None:
            await self.app.aclose()
        for close in self.closers:
            await close()
        if self.seed is not None:
            await self.seed.aclose()
        if self.app is None:
            await self.bot.session.close()


def floor_dispatcher() -> Dispatcher:
    router = Router(name="floor")

    @router.callback_query()
    async def press(query: CallbackQuery) -> None:
        await query.answer()

    @router.message()
    async def message(message: Message) -> None:
        await message.answer("ok")

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    return dispatcher


async def build(mode: Mode, config: Config, telegram: FakeTelegram) -> Built:
    if mode.floor:
        return Built(Bot(LOCAL_TOKEN, session=telegram), floor_dispatcher())
    if not mode.l1:
        config = msgspec.structs.replace(
            config, cache=msgspec.structs.replace(config.cache, l1_size=0)
        )
    engine = build_engine(config.database)
    seed = SeedSource(config.database) if mode.source == "seed_snapshot" else None
    source: Any = {"core": CoreSource, "orm": OrmSource}.get(mode.source, lambda e: None)(engine)
    app = await build_app(
        config,
        session=telegram,
        engine=engine,
        snapshot_source=seed or source,
        answer_first=mode.answer_first,
        replicas=mode.webhook,
    )
    engines = (engine.sync_engine,) + ((seed.engine,) if seed else ())
    if (standby := app.database.standby) is not None:  # its reads count too
        engines += (standby.engine.sync_engine,)
    return Built(app.bot, app.dispatcher, app, engines, seed, (engine.dispose,))


# -- hot queries -----------------------------------------------------------------------


async def hot_query_times(settings: DatabaseSettings, currency: str) -> dict[str, float]:
    """Best-of-3 server execution time (ms) of every hot read, for a busy user
    (a statement that locks or writes is not run here)."""
    engine = build_engine(msgspec.structs.replace(settings, statement_timeout_ms=60_000))
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(BUSY_USER_SAMPLE)).first()
        if row is None:
            return {}
        sample = Sample(currency=currency, invitee_telegram_id=0, **row._mapping)
        times = {}
        for query in HOT_QUERIES:
            if query.writes:
                continue
            result = await explain(engine, query.statement, query.params(sample), runs=3)
            times[query.name] = round(result["Execution Time"], 4)
        return times
    finally:
        await engine.dispose()
