"""Local mode: `python -m bot run` with no token walks simulated people
through complete deals on the real database and Redis, and exits 0."""

from __future__ import annotations

import logging

import asyncpg
import msgspec

from bot.runtime.run import Replica
from db.engine import DatabaseSettings


async def drop_database(settings: DatabaseSettings) -> None:
    url = settings.sqlalchemy_url
    server = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, database="postgres"
    )
    try:
        await server.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await server.close()


async def test_local_mode_walks_through_three_deals_and_prints_a_latency_summary(replica_config):
    lines: list[str] = []
    replica = Replica(replica_config, out=lines.append)
    assert replica.mode == "local"
    assert await replica.run() == 0
    assert replica.embedded is None  # configured URLs win over the embedded servers

    shown = "\n".join(lines)
    # by @username, by invitation link, and a dispute the admin settles
    assert shown.count("✅ Payment released to the seller.") == 2
    assert "Carol ▸ /start " in shown and "✅ You joined the deal." in shown
    assert "🛡 New dispute opened by @local_alice (the buyer)." in shown
    assert "🛡 An admin settled the dispute: the buyer is refunded." in shown
    # what each one ends with: 1000 in, 400 and 100 paid out, 50 refunded; fees 1.5%
    assert "Alice: 👛 Your wallet ⏎ USDT: 500.00 USDT available · 0.00 USDT held" in shown
    assert "Bob: 👛 Your wallet ⏎ USDT: 394.00 USDT available · 0.00 USDT held" in shown
    assert "Carol: 👛 Your wallet ⏎ USDT: 98.50 USDT available · 0.00 USDT held" in shown
    summary = lines[
        lines.index("Latency per kind of update (this process, local Postgres and Redis):") :
    ]
    assert summary[1].split() == ["update", "n", "p50", "ms", "p95", "ms", "max", "ms"]
    kinds = {line.split()[0] for line in summary[2:]}
    assert {"/start", "/new", "button", "text", "press"} <= kinds


async def test_a_second_run_meets_the_same_people_and_still_completes(replica_config):
    """Fixed ids and usernames: the data of an earlier run is simply there."""
    for _ in range(2):
        lines: list[str] = []
        assert await Replica(replica_config, out=lines.append).run() == 0
    shown = "\n".join(lines)
    assert "Bob: 👛 Your wallet ⏎ USDT: 788.00 USDT available" in shown


async def test_a_new_database_under_a_warm_redis_serves_its_own_users(replica_config, caplog):
    """The database is recreated (or restored, or another one configured) while
    Redis still holds snapshots loaded from the old one, at higher versions:
    those are disowned at start-up, not served."""
    assert await Replica(replica_config, out=lambda line: None).run() == 0
    name = replica_config.database.sqlalchemy_url.database
    other = replica_config.database.with_database(f"{name}_new")
    fresh = msgspec.structs.replace(replica_config, database=other)
    lines: list[str] = []
    try:
        with caplog.at_level(logging.WARNING, logger="cache.replica"):
            assert await Replica(fresh, out=lines.append).run() == 0
    finally:
        await drop_database(other)
    assert "cache entries were loaded from" in caplog.text  # and were disowned
    shown = "\n".join(lines)
    assert "Bob: 👛 Your wallet ⏎ USDT: 394.00 USDT available · 0.00 USDT held" in shown
