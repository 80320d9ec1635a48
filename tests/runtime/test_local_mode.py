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


async def test_local_mode_walks_through_four_deals_and_prints_a_latency_summary(replica_config):
    lines: list[str] = []
    replica = Replica(replica_config, out=lines.append)
    assert replica.mode == "local"
    assert await replica.run() == 0
    assert replica.embedded is None  # configured URLs win over the embedded servers

    shown = "\n".join(lines)
    # by @username (rated both ways), by invitation link, a dispute with a photo
    # the admin splits, and a delivered deal the release clock releases
    assert shown.count("✅ Payment released to the seller.") == 2
    assert "⭐ Thank you: you rated @local_bob ★★★★★." in shown
    assert "✅ Your review is saved." in shown
    assert "⭐ Thank you: you rated @local_alice ★★★★☆." in shown
    assert "Carol ▸ /start " in shown and "✅ You joined the deal." in shown
    assert "🛡 New dispute opened by @local_alice (the buyer)." in shown
    assert "✅ Sent to the admins (1 of 10)." in shown
    assert "Ada: 📎 Evidence on the dispute over deal #" in shown
    assert "Ada: ✂️ Settled by a split." in shown
    assert "Alice: 🛡 An admin split the payment: 20.00 USDT is back in your wallet" in shown
    assert "Bob: 🛡 An admin split the payment: 29.55 USDT is in your wallet" in shown
    assert "Bob: ⏱ The buyer neither released the payment nor opened a dispute by" in shown
    # what each one ends with: 1000 in; 400, 100 and 20 paid out, 50 split 30/20;
    # fees 1.5% of what the sellers got
    assert "Alice: 👛 Your wallet ⏎ USDT: 450.00 USDT available · 0.00 USDT held" in shown
    assert "Bob: 👛 Your wallet ⏎ USDT: 443.25 USDT available · 0.00 USDT held" in shown
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
    assert "Bob: 👛 Your wallet ⏎ USDT: 886.50 USDT available" in shown


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
    assert "Bob: 👛 Your wallet ⏎ USDT: 443.25 USDT available · 0.00 USDT held" in shown
