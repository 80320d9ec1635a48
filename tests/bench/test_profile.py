"""What `--profile` makes of py-spy's stacks: each busy sample put down to the
package its innermost frame runs and to whose work it was, in microseconds per
update; and, for a goal a run missed, how far it is and what bounds it."""

from __future__ import annotations

from bot.bench.bounds import Figures, bound
from bot.bench.profile import attribute, owner, package, profile_table

ROOT = "bench_command (bot/__main__.py:46);run (uvloop/__init__.py:92)"
HANDLER = "help_button (bot/telegram/handlers/start.py:192)"
RAW = "\n".join(
    (
        # the product's handler building a keyboard (pydantic under it)
        f"{ROOT};{HANDLER};__init__ (pydantic/main.py:263) 30",
        # the product's own code
        f"{ROOT};{HANDLER};percent (bot/telegram/texts.py:233) 10",
        # a statement: asyncpg under the product's driver
        f"{ROOT};execute (db/driver.py:207);fetch (asyncpg/prepared_stmt.py:177) 20",
        # the Telegram double answering: the harness's, pydantic or not
        f"{ROOT};{HANDLER};post (bot/sim/telegram.py:160);validate (pydantic/main.py:10) 15",
        # aiogram feeding an update before any middleware of ours
        "_step (asyncio/tasks.py:1);feed_update (aiogram/dispatcher/dispatcher.py:150) 25",
    )
)


def test_each_sample_is_put_down_to_its_package_and_whose_work_it_was():
    figures = attribute(RAW, rate=100, updates=10)  # 100 samples: 1 s busy, 10 updates
    assert figures["samples"] == 100
    assert figures["busy_us_per_update"] == 100_000  # 1 s over 10 updates
    assert figures["owner_us_per_update"] == {"product": 60_000, "dispatch": 25_000,
                                              "harness": 15_000}  # fmt: skip
    by = figures["by_owner_and_package"]
    assert by["product/pydantic"] == 30_000 and by["product/asyncpg"] == 20_000
    assert by["harness/pydantic"] == 15_000 and by["dispatch/aiogram"] == 25_000
    functions = figures["product_functions_us_per_update"]
    # each sample to its innermost frame of the product's
    assert functions["help_button (bot/telegram/handlers/start.py:192)"] == 30_000
    assert functions["percent (bot/telegram/texts.py:233)"] == 10_000
    assert functions["execute (db/driver.py:207)"] == 20_000
    assert not any("__main__" in name for name in functions)  # the entry is no one's work


def test_packages_and_owners_by_path():
    assert package("bot/bench/harness.py") == "harness"
    assert package("cache/store.py") == "product"
    assert package("redis/asyncio/client.py") == "redis-py"
    assert package("<frozen runpy>") == "other"
    assert owner(["bot/__main__.py", "aiogram/x.py"]) == "dispatch"
    assert owner(["bot/__main__.py", "bot/sim/telegram.py", "bot/telegram/x.py"]) == "product"


def test_a_missed_goal_says_how_far_and_what_bounds_it():
    profile = attribute(RAW, rate=100, updates=10)
    result = {
        "modes": {
            "normal": {
                "throughput": 300,
                "servers": {"process_cpu_us_per_update": 1500},
                "classes": {"read": {"server_ms": {"p95": 5.0}}},
                "profile": profile,
            },
            "floor": {"servers": {"process_cpu_us_per_update": 500}},
            "saturation": {"throughput": 640, "servers": {"process_cpu_us_per_update": 1560}},
        }
    }
    figures = Figures(result)
    read = {"goal": "read", "measured": "5 ms", "met": False}
    bound(read, figures, "read")
    assert read["far"] == "2.5×"
    assert "busy 45%" in read["bound"] and "60,000 µs" in read["bound"]
    saturation = {"goal": "saturation", "measured": "640/s", "met": False}
    bound(saturation, figures, "saturation")
    assert saturation["far"] == "3.1× short" and "641/s" in saturation["bound"]
    met = {"goal": "sql", "measured": "0", "met": True}
    bound(met, figures, "sql")
    assert "bound" not in met
    table = profile_table({"normal": profile})
    assert table[2][0][:2] == ["normal", "100,000"]
