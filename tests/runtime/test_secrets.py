"""Secrets stay out of logs and error texts: the Redis password, and the values
bound to a failing SQL statement (descriptions, reasons, payout destinations)."""

from __future__ import annotations

import dataclasses
import logging
import traceback

import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bot.ops.doctor import report, run_doctor
from bot.runtime.run import Replica
from bot.runtime.startup import redacted_url
from bot.services.wallets import WalletService
from cache.settings import RedisSettings
from db import Database
from db.engine import build_engine


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "redis://escrow:hunter2@cache.internal:6379/0",
            "redis://escrow:***@cache.internal:6379/0",
        ),
        ("redis://:hunter2@cache.internal:6379/0", "redis://:***@cache.internal:6379/0"),
        ("rediss://default:hunter2@cache.internal/1", "rediss://default:***@cache.internal/1"),
        (
            "redis://cache.internal:6379/0?password=hunter2",
            "redis://cache.internal:6379/0?password=***",
        ),
        ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_a_redis_url_is_shown_without_its_password(url, shown):
    assert redacted_url(url) == shown


async def test_the_redis_password_never_reaches_the_start_up_log(replica_config, caplog):
    config = msgspec.structs.replace(
        replica_config,
        redis=RedisSettings(url="redis://escrow:hunter2-s3cret@127.0.0.1:1/0"),
        runtime=msgspec.structs.replace(
            replica_config.runtime, connect_attempts=2, connect_backoff_max_seconds=0.05
        ),
    )
    with caplog.at_level(logging.INFO):
        assert await Replica(config).run() == 1
    assert "waiting for Redis at redis://escrow:***@127.0.0.1:1/0" in caplog.text
    assert "cannot start: Redis at redis://escrow:***@127.0.0.1:1/0 did not answer" in caplog.text
    assert "hunter2-s3cret" not in caplog.text


async def test_a_failing_statement_shows_no_bound_value_in_its_error_or_the_log(
    pg_settings, services, caplog
):
    """A withdrawal whose INSERT times out (the table is locked): neither the
    error nor SQLAlchemy's own log (as an operator debugging would switch it
    on) carries the payout destination."""
    alice = await services.user("alice_secret", funds={"USDT": 100_00})
    destination = "TRC20-T9yD14Nj9j7xAB4dbGeiX9h8unkKHxuWwb"
    impatient = Database(
        build_engine(msgspec.structs.replace(pg_settings, statement_timeout_ms=200))
    )
    wallets = WalletService(dataclasses.replace(services.ctx, db=impatient))
    try:
        async with services.ctx.db.engine.connect() as holder:
            await holder.execute(text("LOCK TABLE withdrawals IN ACCESS EXCLUSIVE MODE"))
            with (
                caplog.at_level(logging.INFO, logger="sqlalchemy.engine"),
                pytest.raises(DBAPIError) as failed,
            ):
                await wallets.request_withdrawal(alice, "USDT", 10_00, destination)
            await holder.rollback()
    finally:
        await impatient.dispose()
    error = "".join(traceback.format_exception(failed.value))
    assert "canceling statement due to statement timeout" in error
    assert "INSERT INTO withdrawals" in error  # the statement itself is still shown
    assert any("INSERT INTO withdrawals" in r.getMessage() for r in caplog.records)
    assert destination not in error
    assert destination not in caplog.text


async def test_the_doctor_names_redis_without_its_password(replica_config):
    config = msgspec.structs.replace(
        replica_config, redis=RedisSettings(url="redis://escrow:hunter2-s3cret@127.0.0.1:1/0")
    )
    checks = {check.name: check for check in await run_doctor(config)}
    assert not checks["redis"].ok
    assert checks["redis"].detail.startswith("unreachable at redis://escrow:***@127.0.0.1:1/0")
    assert "hunter2-s3cret" not in report(list(checks.values()))
