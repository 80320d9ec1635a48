"""`python -m bot bench --quick` on the real services, and its JSON checked.

It runs the way CI runs it: a process of its own (the benchmark freezes the
garbage collector and patches redis-py's connection class, which must not
happen inside the test session), on a database of its own that is dropped at
the end. Latency is not asserted (it is a benchmark); what is asserted is that
every figure is there and what must hold whatever the machine: no SQL for a
read-only update at steady state, every press answered, and, with Telegram's
round trip on, its answer request sent before any of its own I/O; the SQL
statements of each write and the Redis round trips of a read-only press on a
webhook replica (counts: pinned, and printed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from bot.bench.goals import l1_hit_redis, validate
from bot.bench.modes import MODES
from tests.conftest import unavailable

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("read", "card", "list", "wizard_press", "wizard_msg", "write")
# SQL statements of each write step (those that did not fail), as they stand:
# create is the wizard's (its key looked up, the creator locked, the
# counterparty, the pace of their deals, the insert)
WRITE_SQL = {"create": 5, "accept": 2, "fund": 3, "deliver": 2, "release": 3}
# Redis round trips of a read-only press served from L1: none in one process;
# on a webhook replica, the update's lease and the user's lock taken in one
# script (their release, after the update and off its path, is not the update's)
READ_ONLY_PRESS_REDIS = {"normal": 0, "webhook": 1}


@pytest.fixture(scope="module")
async def bench_database(config):
    url = config.database.sqlalchemy_url
    connect = {"host": url.host, "port": url.port or 5432, "user": url.username,
               "password": url.password, "database": "postgres", "timeout": 5}  # fmt: skip
    try:
        server = await asyncpg.connect(**connect)
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable("Postgres", exc)
    name = f"escrow_bench_test_{os.getpid()}"
    try:
        yield name
    finally:
        await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await server.close()


@pytest.fixture(scope="module")
def quick_result(bench_database: str, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "bot", "bench", "--quick", "--database", bench_database]
    command += ["--json", str(out / "bench.json"), "--plot", str(out / "bench.png")]
    command += ["--markdown", str(out / "bench.md")]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((out / "bench.json").read_text())
    result["_stdout"] = run.stdout
    result["_markdown"] = (out / "bench.md").read_text()
    return result


def test_every_mode_and_figure_is_there(quick_result: dict):
    assert validate(quick_result) == []
    assert quick_result["validation"] == []
    assert set(quick_result["modes"]) == set(MODES)
    for name, mode in quick_result["modes"].items():
        classes = mode["classes"]
        assert mode["updates"] > 0 and mode["throughput"] > 0, name
        for figure in ("tta_ms", "handler_ms"):
            assert set(classes["presses"][figure]) >= {"p50", "p95", "p99", "max"}, name
        for stat in ("sql", "redis", "commits"):
            assert set(classes["all"][stat]) == {"mean", "max"}, name
        assert mode["gc"]["max_pause_ms"] is not None, name
    normal = quick_result["modes"]["normal"]
    for cls in CLASSES:
        assert normal["classes"][cls]["count"] > 0, cls
    assert normal["cache"]["l1_hit_ratio"] is not None
    assert normal["ratios_to_floor"]["read_server_p50"] > 0
    for who in ("read_writers", "read_non_writers"):
        readers = normal["readers"][who]
        assert readers["count"] > 0 and readers["refills_per_s"] is not None, who
        assert set(readers["sql_per_read"]) == {"mean", "max"}, who
    webhook = quick_result["modes"]["webhook"]
    assert webhook["second_process"]["updates"] > 0
    # the servers' counters are per update of both processes serving
    served = webhook["updates"] + webhook["second_process"]["updates"]
    assert webhook["servers"]["served_by_both"] == served
    commands = webhook["servers"]["totals"]["total_commands_processed"]
    assert webhook["servers"]["redis_commands_per_update"] == round(commands / served, 1)
    # two processes in a closed loop: both served, and their throughput is summed
    both = quick_result["modes"]["saturation_2"]
    assert both["second_process"]["updates"] > 0
    assert both["throughput_both"] == round(
        both["throughput"] + both["second_process"]["throughput"], 1
    )
    replication = quick_result["modes"]["replicas"]["replication"]
    assert replication["heard"] > 0 and replication["delay_ms"]["p99"] is not None
    assert quick_result["hot_queries_ms"] and quick_result["modes"]["no_indexes"]["hot_queries_ms"]
    assert {goal["goal"] for goal in quick_result["goals"]} >= {"press answered, p99 from arrival"}
    # a goal missed says what bounds it, from the run's own figures
    assert all(goal["bound"] for goal in quick_result["goals"] if not goal["met"])


def test_the_cluster_mode_runs_on_a_cluster_and_a_standby_at_the_same_cost_per_update(
    quick_result: dict,
):
    """The normal workload on a Redis Cluster and a primary with a hot standby:
    the same SQL per write and no SQL for a read-only update at steady state;
    the standby serves reads; the servers' counters cover every master."""
    normal, cluster = quick_result["modes"]["normal"], quick_result["modes"]["cluster"]
    assert cluster["classes"]["all"]["errors"] == 0
    assert cluster["steady_read"]["sql"]["max"] == 0
    routes = cluster["routes"]
    for route, statements in WRITE_SQL.items():
        if route in routes:
            assert set(routes[route]["sql_counts"]) == {str(statements)}, route
    servers = cluster["servers"]
    print(
        "cluster mode: standby share", servers["standby_share"], servers["standby_primary_because"]
    )
    assert servers["standby_reads"] > 0 and servers["standby_share"] > 0
    assert servers["redis_commands_per_update"] > 0 and servers["wal_bytes_per_write"] > 0
    # a read-only press served from L1 costs no Redis round trip on the cluster either
    assert l1_hit_redis(cluster) == l1_hit_redis(normal) == 0


def test_a_read_only_update_runs_no_sql_at_steady_state(quick_result: dict):
    normal = quick_result["modes"]["normal"]
    steady = normal["steady_read"]
    assert steady["count"] > 50
    assert steady["hit_ratio"] >= 0.99
    # users who never write: none at all (writers' reads are reported, see the
    # readers table: a rare first read of a trader's misses without a change seen)
    assert normal["readers"]["read_non_writers"]["steady_sql"] == {"mean": 0.0, "max": 0}
    # the ablation without a cache pays one statement for every one of them
    assert quick_result["modes"]["no_cache"]["steady_read"]["sql"]["mean"] == 1.0


def test_every_press_is_answered_before_its_io(quick_result: dict):
    modes = quick_result["modes"]
    for name, mode in modes.items():
        assert mode["classes"]["presses"]["unanswered"] == 0, name
    for name in ("normal", "no_l1", "no_cache", "saturation", "webhook"):
        checked = modes[name]["classes"]["presses"]["answer_before_io"]
        assert checked["checked"] > 0 and checked["violations"] == 0, name
    # the check sees it when the answer comes last
    for name in ("answer_last", "seed_snapshot"):
        checked = modes[name]["classes"]["presses"]["answer_before_io"]
        assert checked["violations"] == checked["checked"] > 0, name


def test_with_telegram_s_round_trip_on_the_answer_leaves_before_the_press_s_own_io(
    quick_result: dict,
):
    assert quick_result["round_trip"]["median_ms"] == 40
    normal = quick_result["modes"]["normal"]
    assert normal["round_trip"] is True
    presses = normal["classes"]["presses"]
    # the answer is timed as it leaves (before its round trip), so it precedes
    # the SQL and Redis of the press, which the double's order of events shows
    assert presses["answer_before_io"]["violations"] == 0
    assert presses["telegram_wait_ms"]["mean"] > 0
    assert presses["server_ms"]["p50"] < presses["handler_ms"]["p50"]


def test_one_transaction_and_a_fixed_number_of_statements_per_write(quick_result: dict):
    normal = quick_result["modes"]["normal"]
    assert normal["classes"]["write"]["commits"] == {"mean": 1.0, "max": 1}
    routes = normal["routes"]
    print("SQL per write:", {r: routes[r]["sql_counts"] for r in WRITE_SQL if r in routes})
    assert {"create", "accept"} <= set(routes)
    for route, statements in WRITE_SQL.items():
        if route in routes:
            assert set(routes[route]["sql_counts"]) == {str(statements)}, route


def test_redis_round_trips_of_a_read_only_press_one_process_and_webhook_replica(
    quick_result: dict,
):
    modes = quick_result["modes"]
    seen = {name: l1_hit_redis(modes[name]) for name in READ_ONLY_PRESS_REDIS}
    print("Redis round trips per read-only press (L1 hit):", seen)
    assert seen == READ_ONLY_PRESS_REDIS


def test_the_table_is_printed(quick_result: dict):
    assert "arrival to answerCallbackQuery sent" in quick_result["_stdout"]
    assert "Webhook replicas" in quick_result["_stdout"]
    assert "validation: ok" in quick_result["_stdout"]
    assert quick_result["_markdown"].count("| normal |") >= 3
