"""Database settings and the async engine built from them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, TypeVar

import msgspec
from sqlalchemy import URL, event, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from db.driver import DriverReads
from db.replay import ReplayWatch
from db.standby import StandbyReads, Work
from db.uow import UnitOfWork

T = TypeVar("T")


class DatabaseSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str = "postgresql+asyncpg://root@127.0.0.1:5432/escrow"
    # Kept out of the committed file: set ESCROW__DATABASE__PASSWORD.
    password: str = ""
    # Connections kept open. Overflow connections are closed as soon as they are
    # given back, so a load that needs more than pool_size opens and closes one
    # (a server process, type introspection, statements prepared again) per
    # update: keep max_overflow for rare bursts.
    pool_size: Annotated[int, msgspec.Meta(ge=1, le=500)] = 20
    max_overflow: Annotated[int, msgspec.Meta(ge=0, le=500)] = 0
    pool_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    connect_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    statement_timeout_ms: Annotated[int, msgspec.Meta(ge=0)] = 5000
    # Migrations run without the statement timeout; each wait for a table lock
    # they need is bounded by this (0: wait for ever), so a migration stuck
    # behind a long transaction fails instead of stalling every query behind it.
    migration_lock_timeout_ms: Annotated[int, msgspec.Meta(ge=0)] = 10_000
    # A hot standby of this primary for reads (empty: none), same credentials
    # (`password` too); what may read there: db/standby.py.
    read_url: str = ""
    read_pool_size: Annotated[int, msgspec.Meta(ge=1, le=500)] = 10
    # Reads go to the primary while the standby is further behind than this.
    read_max_lag_ms: Annotated[int, msgspec.Meta(ge=1)] = 1000
    # How often each replica measures the standby's replay against the primary.
    read_lag_check_ms: Annotated[int, msgspec.Meta(ge=10)] = 100
    read_connect_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 1.0

    def __post_init__(self) -> None:
        for name in ("url", "read_url"):
            url = getattr(self, name)
            if not url:  # no url: `run` starts an embedded PostgreSQL; no read_url: no standby
                continue
            try:
                backend = make_url(url).get_backend_name()
            except Exception:
                backend = None
            if backend != "postgresql":
                raise ValueError(f"{name}: must be a postgresql:// URL")

    @property
    def sqlalchemy_url(self) -> URL:
        url = make_url(self.url)
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+asyncpg")
        if self.password:
            url = url.set(password=self.password)
        return url

    def with_database(self, name: str) -> DatabaseSettings:
        """The same server and credentials, another database."""

        def renamed(url: str) -> str:
            return make_url(url).set(database=name).render_as_string(hide_password=False)

        read_url = renamed(self.read_url) if self.read_url else ""
        return msgspec.structs.replace(self, url=renamed(self.url), read_url=read_url)

    def standby(self) -> DatabaseSettings | None:
        """The standby's settings: its own small pool, a short connect timeout
        (a standby that does not answer costs one read that long, once)."""
        if not self.read_url:
            return None
        return msgspec.structs.replace(
            self,
            url=self.read_url,
            read_url="",
            pool_size=self.read_pool_size,
            max_overflow=0,
            # all in use: the read goes to the primary rather than wait long
            pool_timeout_seconds=min(self.pool_timeout_seconds, 0.05),
            connect_timeout_seconds=self.read_connect_timeout_seconds,
        )


def build_engine(settings: DatabaseSettings, command_timeout: float | None = None) -> AsyncEngine:
    """`command_timeout`: the client gives up on a statement after this many
    seconds (for a server that stopped answering; a live one enforces
    statement_timeout itself)."""
    engine = create_async_engine(
        settings.sqlalchemy_url,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout_seconds,
        # No PING per checkout (a round trip for every statement's connection);
        # `_skip_closed` replaces one the server has closed, at no cost.
        pool_pre_ping=False,
        # The connection given back last is taken first: a load below the
        # pool's size keeps to a few connections, whose statements are
        # prepared and types introspected (asyncpg: a query of ~13 ms per new
        # array type per connection), instead of going round all of them.
        pool_use_lifo=True,
        # Bound values are people's descriptions, reasons and payout destinations:
        # errors and SQLAlchemy's log show the statement, never them.
        hide_parameters=True,
        connect_args={
            "timeout": settings.connect_timeout_seconds,
            "command_timeout": command_timeout,
            "server_settings": {
                "statement_timeout": str(settings.statement_timeout_ms),
                "application_name": "escrow-bot",
            },
        },
    )
    event.listen(engine.sync_engine, "checkout", _skip_closed)
    return engine


def _skip_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A pooled connection Postgres closed while it was idle (a restart, a
    failover, an admin's pg_terminate_backend) is known closed to its driver
    already: the pool is told to replace it, so no statement fails on it."""
    driver = record.driver_connection
    is_closed = getattr(driver, "is_closed", None)
    if is_closed is not None and is_closed():
        raise DisconnectionError("the server closed this connection while it was idle")


def build_standby(settings: DatabaseSettings) -> StandbyReads | None:
    """Reads on the `read_url` standby, None without one. Its lag is measured
    on engines of its own (one connection to each server), so no update waits
    for a pool connection behind it and no update's statements include it."""
    standby = settings.standby()
    if standby is None:
        return None
    # A standby that stops answering (a partition, a hung host) holds a read
    # this long at most, once: the read then goes to the primary.
    max_lag = settings.read_max_lag_ms / 1000
    engine = build_engine(standby, settings.statement_timeout_ms / 1000 + max_lag)
    check_timeout = settings.read_connect_timeout_seconds + max_lag
    watched = build_engine(msgspec.structs.replace(standby, pool_size=1), check_timeout)
    single = msgspec.structs.replace(settings, pool_size=1, max_overflow=0)
    primary = build_engine(single, check_timeout)
    watch = ReplayWatch(
        primary,
        watched,
        interval=settings.read_lag_check_ms / 1000,
        # the statements' own timeouts end a check first; this is the backstop
        check_timeout=check_timeout + 1,
    )
    return StandbyReads(engine, watch, max_lag, owned=(engine, watched, primary))


class Database:
    """The engine, the units of work opened on it, and single-statement reads;
    with a `standby`, the reads it may serve (`read`)."""

    def __init__(self, engine: AsyncEngine, standby: StandbyReads | None = None) -> None:
        self.engine = engine
        # One SELECT is its own consistent snapshot: in AUTOCOMMIT no BEGIN and
        # ROLLBACK round trips wrap it. Its statements run on the driver
        # (db/driver.py), as a unit of work's do.
        self.reader = DriverReads(engine.execution_options(isolation_level="AUTOCOMMIT"))
        self.standby = standby

    @classmethod
    def from_settings(cls, settings: DatabaseSettings) -> Database:
        return cls(build_engine(settings), build_standby(settings))

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.engine)

    async def read(self, work: Work[T], telegram_id: int | None, *, retry_empty: bool = False) -> T:
        """`work`, one autocommitted read of what `telegram_id` is shown, on
        the standby when it may serve them (db/standby.py), else the primary."""
        if self.standby is None:
            return await self.on_primary(work)
        return await self.standby.read(work, telegram_id, self.on_primary, retry_empty=retry_empty)

    async def on_primary(self, work: Work[T]) -> T:
        async with self.reader.connect() as conn:
            return await work(conn)

    def committed(self, events: Iterable[object]) -> None:
        """After a commit: its people read from the primary until the standby has it."""
        if self.standby is not None:
            self.standby.wrote(events)

    def start(self) -> None:
        if self.standby is not None:
            self.standby.start()

    async def dispose(self, *, engine: bool = True) -> None:
        """Close the standby's engines, and the primary's unless `engine` is False
        (the caller's to close)."""
        if self.standby is not None:
            await self.standby.aclose()
        if engine:
            await self.engine.dispose()
