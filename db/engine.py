"""Database settings and the async engine built from them."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from sqlalchemy import URL, event, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from db.uow import UnitOfWork


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

    def __post_init__(self) -> None:
        if not self.url:  # none configured: `run` starts an embedded PostgreSQL
            return
        try:
            backend = make_url(self.url).get_backend_name()
        except Exception:
            backend = None
        if backend != "postgresql":
            raise ValueError("url: must be a postgresql:// URL")

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
        url = make_url(self.url).set(database=name)
        return msgspec.structs.replace(self, url=url.render_as_string(hide_password=False))


def build_engine(settings: DatabaseSettings) -> AsyncEngine:
    engine = create_async_engine(
        settings.sqlalchemy_url,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout_seconds,
        # No PING per checkout (a round trip for every statement's connection);
        # `_skip_closed` replaces one the server has closed, at no cost.
        pool_pre_ping=False,
        # Bound values are people's descriptions, reasons and payout destinations:
        # errors and SQLAlchemy's log show the statement, never them.
        hide_parameters=True,
        connect_args={
            "timeout": settings.connect_timeout_seconds,
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


class Database:
    """The engine, the units of work opened on it, and single-statement reads."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # One SELECT is its own consistent snapshot: in AUTOCOMMIT no BEGIN and
        # ROLLBACK round trips wrap it.
        self.reader = engine.execution_options(isolation_level="AUTOCOMMIT")

    @classmethod
    def from_settings(cls, settings: DatabaseSettings) -> Database:
        return cls(build_engine(settings))

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.engine)

    async def dispose(self) -> None:
        await self.engine.dispose()
