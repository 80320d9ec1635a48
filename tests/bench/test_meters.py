"""What the benchmark counts per update: Redis round trips, commands and bytes
each way on a real Redis, and the servers' own counters turned into figures
per update and per write."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from bot.bench.meters import CURRENT, Rec, install_redis_counter
from bot.bench.servers import postgres_cpu_us, server_figures
from bot.config import Config


async def test_round_trips_commands_and_bytes_of_an_update_are_counted(redis_url: str):
    install_redis_counter()
    client = aioredis.Redis.from_url(redis_url)
    await client.ping()  # the connection's own set-up is not the update's
    rec = Rec()
    token = CURRENT.set(rec)
    try:
        await client.set("bench:k", "v")
        pipe = client.pipeline(transaction=False)
        pipe.get("bench:k")
        pipe.get("bench:k")
        await pipe.execute()
    finally:
        CURRENT.reset(token)
        await client.delete("bench:k")
        await client.aclose()
    assert (rec.redis, rec.redis_commands) == (2, 3)  # a pipeline is one round trip
    set_k = b"*3\r\n$3\r\nSET\r\n$7\r\nbench:k\r\n$1\r\nv\r\n"
    get_k = b"*2\r\n$3\r\nGET\r\n$7\r\nbench:k\r\n"
    assert rec.redis_out == len(set_k) + 2 * len(get_k)
    assert rec.redis_in == len(b"+OK\r\n") + 2 * len(b"$1\r\nv\r\n")


def test_server_counters_become_figures_per_update_and_per_write():
    before = {"total_commands_processed": 100, "total_net_input_bytes": 1_000}
    before |= {"total_net_output_bytes": 500, "wal_bytes": 10_000, "commits": 7}
    before |= {"process_cpu_us": 1_000_000, "redis_cpu_us": 50_000, "postgres_cpu_us": 0}
    after = {"total_commands_processed": 400, "total_net_input_bytes": 31_000}
    after |= {"total_net_output_bytes": 20_500, "wal_bytes": 250_000, "commits": 307}
    after |= {"process_cpu_us": 1_150_000, "redis_cpu_us": 56_000, "postgres_cpu_us": 30_000}
    figures = server_figures(before, after, updates=300, writes=20)
    assert figures["redis_commands_per_update"] == 1.0
    assert figures["redis_bytes_in_per_update"] == 100.0
    assert figures["redis_bytes_out_per_update"] == 66.7
    assert figures["wal_bytes_per_write"] == 12_000.0
    assert figures["transactions_per_update"] == 1.0
    # CPU per update: this process (the bot, with the simulated users), Redis, Postgres
    assert figures["process_cpu_us_per_update"] == 500.0
    assert figures["redis_cpu_us_per_update"] == 20.0
    assert figures["postgres_cpu_us_per_update"] == 100.0
    # no Redis in the mode (the floor): its figures are absent, not zero
    assert (
        server_figures({"wal_bytes": 0}, {"wal_bytes": 0}, 10, 0)["redis_commands_per_update"]
        is None
    )


def test_the_machines_postgres_cpu_is_read_from_proc(config: Config):
    if config.database.sqlalchemy_url.host not in ("127.0.0.1", "localhost"):
        pytest.skip("the tests' Postgres is on another machine")
    # the tests' Postgres runs on this machine: its processes have used some CPU
    used = postgres_cpu_us()
    assert used is not None and used > 0


def test_the_standbys_share_of_reads_and_why_the_others_went_to_the_primary():
    before = {"wal_bytes": 0, "reads:standby:caught_up": 10, "reads:primary:lag": 5}
    after = {"wal_bytes": 0, "reads:standby:caught_up": 100, "reads:primary:lag": 5}
    after |= {"reads:primary:recent_write": 10}  # first seen during the window
    figures = server_figures(before, after, updates=200, writes=0)
    assert figures["standby_reads"] == 100
    assert figures["standby_share"] == 0.9
    assert figures["standby_primary_because"] == {"recent_write": 10}
    # without a standby there is no such figure
    assert "standby_share" not in server_figures({"wal_bytes": 0}, {"wal_bytes": 0}, 10, 0)
