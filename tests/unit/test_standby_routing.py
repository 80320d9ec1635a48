"""Where a read that a hot standby may serve goes (db/standby.py), decided in
memory: no standby configured, down, lagging, deaf to other replicas, or
someone who just wrote; and the settings of `[database] read_url`."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from cache.messages import CacheReset
from db import Database, DatabaseSettings
from db.engine import build_standby
from db.events import DealChanged, UserChanged
from db.standby import StandbyReads, acting_for

MAX_LAG = 1.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Watch:
    """A ReplayWatch as its last check left it."""

    def __init__(self) -> None:
        self.up = True
        self.caught_up = -math.inf
        self.after_check: list[Callable[[], None]] = []

    def checked(self, caught_up: float) -> None:
        self.caught_up = caught_up
        for hook in self.after_check:
            hook()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def standby(clock: Clock, watch: Watch) -> StandbyReads:
    engine = create_async_engine("postgresql+asyncpg://root@127.0.0.1:1/none")
    return StandbyReads(engine, watch, MAX_LAG, clock=clock)  # type: ignore[arg-type]


def test_without_a_read_url_there_is_no_standby() -> None:
    settings = DatabaseSettings()
    assert settings.standby() is None and build_standby(settings) is None
    engine = create_async_engine(settings.sqlalchemy_url)
    assert Database(engine).standby is None


def test_the_standby_has_its_own_small_pool_on_the_same_credentials() -> None:
    settings = DatabaseSettings(
        url="postgresql://root@primary:5432/escrow",
        read_url="postgresql://root@standby:5432/escrow",
        password="secret",
        read_pool_size=4,
    ).with_database("other")
    standby = settings.standby()
    assert standby is not None
    url = standby.sqlalchemy_url
    assert (url.host, url.database, url.password) == ("standby", "other", "secret")
    assert (standby.pool_size, standby.max_overflow, standby.read_url) == (4, 0, "")
    assert standby.connect_timeout_seconds == settings.read_connect_timeout_seconds
    with pytest.raises(ValueError, match="read_url"):
        DatabaseSettings(read_url="mysql://root@standby/escrow")


def test_a_standby_is_read_once_caught_up_and_within_the_lag(standby, watch, clock) -> None:
    watch.up = False
    assert standby.route(1) == "down"
    watch.up = True
    watch.checked(clock.now - 0.1)
    assert standby.route(1) is None
    clock.now += MAX_LAG
    assert standby.route(1) == "lag"
    watch.checked(clock.now)
    standby.hears_writes = lambda: False
    assert standby.route(1) == "unheard"


def test_whoever_a_commit_concerns_reads_the_primary_until_it_is_replayed(
    standby, watch, clock
) -> None:
    watch.checked(clock.now - 0.05)
    token = acting_for.set(7)  # the admin whose update this is
    try:
        standby.wrote([UserChanged(user_id=1, telegram_id=11, version=2)])
    finally:
        acting_for.reset(token)
    standby.heard(DealChanged(5, "CODE", 3, "funded", telegram_ids=(21, 22), mover=23))
    for who in (7, 11, 21, 22, 23):
        assert standby.route(who) == "recent_write", who
    assert standby.route(99) is None  # someone else

    clock.now += 0.01
    watch.checked(clock.now)  # a primary position read after the marks is replayed
    assert all(standby.route(who) is None for who in (7, 11, 21, 22, 23))
    assert standby.marked() == 0


def test_a_cache_reset_sends_everyone_to_the_primary_until_replayed(standby, watch, clock) -> None:
    watch.checked(clock.now - 0.05)
    standby.heard(CacheReset(generation=4, group=0))
    assert standby.route(99) == "recent_write" and standby.route(None) == "recent_write"
    clock.now += 0.01
    watch.checked(clock.now)
    assert standby.route(99) is None


def test_marks_older_than_the_lag_bound_are_forgotten_while_the_standby_is_behind(
    standby, watch, clock
) -> None:
    watch.checked(clock.now - 5)  # far behind: nobody reads it anyway
    for telegram_id in range(1000):
        standby.heard(UserChanged(user_id=telegram_id, telegram_id=telegram_id, version=1))
    clock.now += MAX_LAG + 0.01
    watch.checked(watch.caught_up)
    assert standby.marked() == 0


async def test_marks_are_forgotten_while_the_standby_cannot_be_checked() -> None:
    """Down for long (every check failing), the marks of a busy bot must not
    pile up: past the lag bound none of them can matter."""
    settings = DatabaseSettings(
        url="postgresql://root@127.0.0.1:1/none",
        read_url="postgresql://root@127.0.0.1:1/none",
        read_max_lag_ms=20,
        read_lag_check_ms=10,
    )
    standby = build_standby(settings)
    assert standby is not None
    for telegram_id in range(100):
        standby.heard(UserChanged(user_id=telegram_id, telegram_id=telegram_id, version=1))
    standby.start()
    try:
        await asyncio.sleep(0.3)
        assert standby.watch.failures > 0 and standby.route(1) == "down"
        assert standby.marked() == 0
    finally:
        await standby.aclose()
