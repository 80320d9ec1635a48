"""The whole bot on real Postgres and Redis, driven through the Telegram double."""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import AsyncIterator

import msgspec
import pytest
from sqlalchemy import Engine, text

from bot.config import Config
from bot.runtime.app import App, build_app
from bot.sim import FakeTelegram, SimulatedUser
from cache.settings import RedisSettings
from cache.snapshots import UserSnapshot
from db import Database
from tests.cache.redis_cluster import OwnCluster
from tests.conftest import ADMIN_TELEGRAM_ID
from tests.postgres_standby import replayed

_ids = itertools.count(50_000)


# The whole suite's apps on the session's Redis Cluster: ESCROW_TEST_REDIS=cluster
# (a test parametrized with ON_ONE_REDIS_AND_A_CLUSTER runs both).
DEFAULT_REDIS = os.environ.get("ESCROW_TEST_REDIS", "one")


@pytest.fixture
def redis_settings(request: pytest.FixtureRequest) -> RedisSettings:
    """The app's Redis: this session's database on one Redis or, for a test
    parametrized with `pytest.mark.parametrize("redis_settings", ["one",
    "cluster"], indirect=True)`, the session's Redis Cluster as well."""
    if getattr(request, "param", DEFAULT_REDIS) == "cluster":
        cluster: OwnCluster = request.getfixturevalue("redis_cluster")
        return RedisSettings(url=cluster.url, cluster=True)
    return RedisSettings(url=request.getfixturevalue("redis_url"))


ON_ONE_REDIS_AND_A_CLUSTER = pytest.mark.parametrize(
    "redis_settings", ["one", "cluster"], indirect=True
)


@pytest.fixture
async def app(
    config: Config, pg_settings, database: Database, redis_settings: RedisSettings
) -> AsyncIterator[App]:
    test_config = msgspec.structs.replace(
        config,
        database=pg_settings,
        redis=redis_settings,
        cache=msgspec.structs.replace(config.cache, key_prefix=f"e2e{secrets.token_hex(4)}"),
        escrow=msgspec.structs.replace(config.escrow, admins=(ADMIN_TELEGRAM_ID,)),
    )
    app = await build_app(test_config, session=FakeTelegram(), engine=database.engine)
    if app.database.standby is not None:  # its first check passed: reads may go there
        await replayed(app.database.standby)
    yield app
    await app.aclose()


@pytest.fixture
def telegram(app: App) -> FakeTelegram:
    session = app.bot.session
    assert isinstance(session, FakeTelegram)
    return session


async def actor(app: App, user: SimulatedUser) -> UserSnapshot:
    snapshot = await app.cache.cache.get(user.id)
    assert snapshot is not None
    return snapshot


def sync_engines(app: App) -> list[Engine]:
    """Where the app's SQL goes: the primary, and the standby where it reads."""
    standby = app.database.standby
    return [app.database.engine.sync_engine] + (
        [standby.engine.sync_engine] if standby is not None else []
    )


async def balance(app: App, user: SimulatedUser, currency: str = "USDT") -> tuple[int, int]:
    async with app.database.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT w.available, w.held FROM wallets w JOIN users u ON u.id = w.user_id"
                    " WHERE u.telegram_id = :t AND w.currency = :c"
                ),
                {"t": user.id, "c": currency},
            )
        ).one()
    return row.available, row.held


class People:
    """Simulated Telegram users talking to the app."""

    def __init__(self, app: App, telegram: FakeTelegram) -> None:
        self.app = app
        self.telegram = telegram

    def __call__(
        self, first_name: str, username: str | None = None, *, user_id: int | None = None
    ) -> SimulatedUser:
        return SimulatedUser(
            self.telegram,
            self.app.bot,
            self.app.dispatcher,
            user_id=user_id or next(_ids),
            first_name=first_name,
            username=username,
        )

    def admin(self) -> SimulatedUser:
        return self("Ada", "ada_admin", user_id=ADMIN_TELEGRAM_ID)


@pytest.fixture
def people(app: App, telegram: FakeTelegram) -> People:
    return People(app, telegram)


@pytest.fixture
async def pair(app: App, people) -> tuple[SimulatedUser, SimulatedUser]:
    alice, bob = people("Alice", "alice_buys"), people("Bob", "bob_sells")
    await alice.start()
    await bob.start()
    await app.services.wallets.credit_deposit(
        await actor(app, alice), "USDT", 500_00, reference=f"seed-{alice.id}"
    )
    return alice, bob
