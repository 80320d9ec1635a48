"""`python -m bot bench --quick` on the real services, and its JSON checked.

It runs the way CI runs it: a process of its own (the benchmark freezes the
garbage collector and patches redis-py's connection class, which must not
happen inside the test session), on a database of its own that is dropped at
the end. Latency is not asserted (it is a benchmark); what is asserted is that
every figure is there and what must hold whatever the machine: no SQL for a
read-only update at steady state, every press answered, and answered before
any of its I/O.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from bot.bench.goals import validate
from bot.bench.modes import MODES
from tests.conftest import unavailable

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("read", "card", "list", "wizard_press", "wizard_msg", "write")


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
    assert normal["ratios_to_floor"]["read_handler_p50"] > 0
    replication = quick_result["modes"]["replicas"]["replication"]
    assert replication["heard"] > 0 and replication["delay_ms"]["p99"] is not None
    assert quick_result["hot_queries_ms"] and quick_result["modes"]["no_indexes"]["hot_queries_ms"]
    assert {goal["goal"] for goal in quick_result["goals"]} >= {"button time-to-answer p99"}


def test_a_read_only_update_runs_no_sql_at_steady_state(quick_result: dict):
    steady = quick_result["modes"]["normal"]["steady_read"]
    assert steady["count"] > 50
    assert steady["sql"] == {"mean": 0.0, "max": 0}
    assert steady["hit_ratio"] >= 0.99
    # the ablation without a cache pays one statement for every one of them
    assert quick_result["modes"]["no_cache"]["steady_read"]["sql"]["mean"] == 1.0


def test_every_press_is_answered_before_its_io(quick_result: dict):
    modes = quick_result["modes"]
    for name, mode in modes.items():
        assert mode["classes"]["presses"]["unanswered"] == 0, name
    for name in ("normal", "no_l1", "no_cache", "saturation"):
        checked = modes[name]["classes"]["presses"]["answer_before_io"]
        assert checked["checked"] > 0 and checked["violations"] == 0, name
    # the check sees it when the answer comes last
    for name in ("answer_last", "seed"):
        checked = modes[name]["classes"]["presses"]["answer_before_io"]
        assert checked["violations"] == checked["checked"] > 0, name


def test_one_transaction_per_write(quick_result: dict):
    commits = quick_result["modes"]["normal"]["classes"]["write"]["commits"]
    assert commits == {"mean": 1.0, "max": 1}


def test_the_table_is_printed(quick_result: dict):
    assert "Time to answer" in quick_result["_stdout"]
    assert "validation: ok" in quick_result["_stdout"]
    assert quick_result["_markdown"].count("| normal |") >= 3
