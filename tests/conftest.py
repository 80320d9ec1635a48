"""Shared fixtures: a fresh, migrated Postgres database and a flushed Redis
database per test session, statement counting, and the services over them.

With CI set, an unreachable Postgres or Redis fails the run instead of
skipping the tests that need it.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Config, load_config
from bot.ops import migrate
from bot.services.base import ServiceContext
from bot.services.deals import DealService
from bot.services.deposits import DepositService
from bot.services.moderation import ModerationService
from bot.services.payouts import PayoutService
from bot.services.ratings import RatingService
from bot.services.settings import EscrowSettings
from bot.services.users import Profile, UserService
from bot.services.views import UserView
from bot.services.wallets import WalletService
from db import Database
from db.engine import DatabaseSettings, build_engine, build_standby
from db.events import Event
from db.standby import StandbyReads
from tests.postgres_standby import (  # noqa: F401 (fixtures)
    postgres_pair,
    replayed,
    standby_pair,
    standby_settings,
)

IN_CI = bool(os.environ.get("CI"))
TABLES = (
    "ledger_entries, deal_events, invitations, withdrawals, wallets, escrows, users, "
    "platform_accounts, notifications, dispute_evidence, user_status_changes, reputations, ratings"
)
ADMIN_TELEGRAM_ID = 900_000_001


def unavailable(what: str, exc: BaseException) -> None:
    message = f"{what} is unreachable: {exc!r}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def config() -> Config:
    return load_config()


# -- Postgres -------------------------------------------------------------------


# Runs a test twice: reads on the primary only, then with a hot standby of
# the tests' own (tests/postgres_standby.py) serving the reads it may.
READS_FROM = pytest.mark.parametrize(
    "reads_from", ["primary", "standby"], indirect=True, scope="session"
)


# The whole suite on a primary with a hot standby serving reads:
# ESCROW_TEST_READS=standby (a test parametrized with READS_FROM runs both).
DEFAULT_READS = os.environ.get("ESCROW_TEST_READS", "primary")


@pytest.fixture(scope="session")
def reads_from(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", DEFAULT_READS)


@pytest.fixture(scope="session")
async def pg_settings(
    config: Config, reads_from: str, request: pytest.FixtureRequest
) -> AsyncIterator[DatabaseSettings]:
    """A database of its own for this test session, dropped at the end; with
    reads_from "standby", the database of a primary and standby pair."""
    if reads_from == "standby":
        pair = request.getfixturevalue("postgres_pair")
        yield standby_settings(config.database, pair)
        return
    url = config.database.sqlalchemy_url
    try:
        server = await asyncpg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            database="postgres",
            timeout=5,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable("Postgres", exc)
    name = f"escrow_test_{os.getpid()}_{secrets.token_hex(3)}"
    await server.execute(f'CREATE DATABASE "{name}"')
    try:
        yield config.database.with_database(name)
    finally:
        await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await server.close()


@pytest.fixture(scope="session")
async def engine(pg_settings: DatabaseSettings) -> AsyncIterator[AsyncEngine]:
    """The session database, migrated with alembic (not create_all)."""
    engine = build_engine(msgspec.structs.replace(pg_settings, pool_size=30, max_overflow=30))
    await migrate.run(engine)
    yield engine
    await engine.dispose()


async def truncate(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="session")
async def standby_reads(pg_settings: DatabaseSettings) -> AsyncIterator[StandbyReads | None]:
    standby = build_standby(pg_settings)
    if standby is None:
        yield None
        return
    standby.start()
    yield standby
    await standby.aclose()


@pytest.fixture
async def database(engine: AsyncEngine, standby_reads: StandbyReads | None) -> Database:
    """The session database, emptied before the test (and on the standby too)."""
    await truncate(engine)
    if standby_reads is not None:
        await replayed(standby_reads)
    return Database(engine, standby_reads)


class StatementLog:
    """Every SQL statement sent through the engine while recording."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.recording = False

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.recording:
            self.statements.append(statement)

    def start(self) -> StatementLog:
        self.statements.clear()
        self.recording = True
        return self

    def stop(self) -> list[str]:
        self.recording = False
        return list(self.statements)

    @property
    def count(self) -> int:
        return len(self.statements)


@pytest.fixture
def sql(engine: AsyncEngine, standby_reads: StandbyReads | None) -> Iterator[StatementLog]:
    """Statements on the primary, and on the standby where it serves reads."""
    log = StatementLog()
    engines = [engine] + ([standby_reads.engine] if standby_reads is not None else [])
    for counted in engines:
        event.listen(counted.sync_engine, "before_cursor_execute", log)
    yield log
    for counted in engines:
        event.remove(counted.sync_engine, "before_cursor_execute", log)


# -- the services -------------------------------------------------------------------


class RecordedEvents:
    """An event sink that keeps what was published, in order."""

    def __init__(self) -> None:
        self.published: list[Event] = []

    async def publish(self, events: tuple[Event, ...]) -> None:
        self.published.extend(events)


class Services:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.users = UserService(ctx)
        self.deals = DealService(ctx)
        self.wallets = WalletService(ctx)
        self.deposits = DepositService(ctx)
        self.payouts = PayoutService(ctx)
        self.moderation = ModerationService(ctx)
        self.ratings = RatingService(ctx)
        self._ids = itertools.count(1000)

    async def user(
        self,
        username: str | None = None,
        *,
        funds: dict[str, int] | None = None,
        telegram_id: int | None = None,
    ) -> UserView:
        """A registered user, with `funds` (minor units) deposited."""
        telegram_id = telegram_id or next(self._ids)
        outcome = await self.users.register(
            Profile(telegram_id=telegram_id, first_name=f"User {telegram_id}", username=username)
        )
        for code, amount in (funds or {}).items():
            await self.wallets.credit_deposit(
                outcome.value, code, amount, reference=f"seed:{telegram_id}:{code}"
            )
        return outcome.value

    async def admin(self) -> UserView:
        return await self.user("the_admin", telegram_id=ADMIN_TELEGRAM_ID)


@pytest.fixture
def escrow_settings() -> EscrowSettings:
    return EscrowSettings(admins=(ADMIN_TELEGRAM_ID,))


# For a test that opens more deals a minute than a person may (its own
# `@pytest.mark.parametrize("escrow_settings", [UNPACED])`).
UNPACED = EscrowSettings(admins=(ADMIN_TELEGRAM_ID,), deals_per_hour=0, strangers_per_day=0)


@pytest.fixture
def events() -> RecordedEvents:
    return RecordedEvents()


@pytest.fixture
def services(
    database: Database, config: Config, escrow_settings: EscrowSettings, events: RecordedEvents
) -> Services:
    return Services(
        ServiceContext(
            db=database,
            settings=escrow_settings,
            currencies=config.currency_table(),
            events=events,
        )
    )


# -- Redis --------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def redis_url(config: Config) -> AsyncIterator[str]:
    """A Redis database of its own for this session (one of 1-15, claimed in
    database 0 so that sessions running at once never share one), flushed."""
    base = (
        config.redis.url.rsplit("/", 1)[0] if config.redis.url.count("/") > 2 else config.redis.url
    )
    claims = aioredis.Redis.from_url(f"{base}/0", socket_connect_timeout=3)
    client: aioredis.Redis | None = None
    me = f"{os.getpid()}-{secrets.token_hex(4)}"
    try:
        for number in sorted(range(1, 16), key=lambda _: secrets.randbelow(1000)):
            if await claims.set(f"escrow-tests:redis-db:{number}", me, nx=True, ex=3 * 3600):
                break
        else:
            pytest.fail("Redis databases 1-15 are all claimed by other test sessions")
        claim = f"escrow-tests:redis-db:{number}"
        client = aioredis.Redis.from_url(f"{base}/{number}", socket_connect_timeout=3)
        await client.flushdb()
    except (OSError, aioredis.RedisError) as exc:
        for opened in (client, claims):
            if opened is not None:
                await opened.aclose()
        unavailable("Redis", exc)
    yield f"{base}/{number}"
    await client.flushdb()
    await client.aclose()
    if await claims.get(claim) == me.encode():
        await claims.delete(claim)
    await claims.aclose()


# -- Redis Cluster: one for the whole session, started on first use -----------------

from tests.cache.redis_cluster import redis_cluster  # noqa: E402  (it uses `unavailable`)

__all__ = ["redis_cluster"]
