"""What a benchmark result is checked against.

- `goals`: the issue's targets, reported met or not (benchmark targets, not tests);
- `validate`: what must hold whatever the machine (CI runs `bench --quick --check`);
- `ratios_to_floor`: each mode's p50s over the floor's.

Latency goals are read on honest numbers: a press's answer from the update's
arrival (the floor's beside it: what the harness itself adds), and server
time with the Bot API round trips the update waited on taken out (the
Telegram double's round-trip model is on, `--rtt-ms`).
"""

from __future__ import annotations

import math
from typing import Any

from bot.bench.bounds import LIMITS, Figures, bound
from bot.bench.bounds import at as _at


def _ratio(a: Any, b: Any) -> float | None:
    if a is None or b is None or not b or (isinstance(b, float) and math.isnan(b)):
        return None
    return round(a / b, 3)


def ratios_to_floor(result: dict[str, Any]) -> None:
    """Each mode's p50s over the floor's, for the same kind of update: server
    time (Telegram waits excluded) and the press's answer from arrival."""
    modes = result["modes"]
    floor = modes.get("floor")
    if floor is None:
        return
    for name, mode in modes.items():
        if name == "floor":
            continue
        ratios = {}
        for cls in ("read", "card", "list", "wizard_press", "wizard_msg", "write", "all"):
            ratios[f"{cls}_server_p50"] = _ratio(
                _at(mode, "classes", cls, "server_ms", "p50"),
                _at(floor, "classes", cls, "server_ms", "p50"),
            )
        for cls in ("read", "presses"):
            ratios[f"{cls}_tta_from_arrival_p50"] = _ratio(
                _at(mode, "classes", cls, "tta_from_arrival_ms", "p50"),
                _at(floor, "classes", cls, "tta_from_arrival_ms", "p50"),
            )
        mode["ratios_to_floor"] = ratios


def _goal(goal: str, target: str, value: Any, met: bool | None, unit: str = "") -> dict:
    if value is None:
        return {"goal": goal, "target": target, "measured": "not measured", "met": False}
    shown = f"{value:g}{unit}" if isinstance(value, int | float) else str(value)
    return {"goal": goal, "target": target, "measured": shown, "met": bool(met)}


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    modes = result["modes"]
    normal = modes.get("normal", {})
    out = []
    tta = _at(normal, "classes", "presses", "tta_from_arrival_ms", "p99")
    noise = _at(modes, "floor", "classes", "presses", "tta_from_arrival_ms", "p99")
    out.append(
        _goal(
            "press answered, p99 from arrival",
            "≤ 2 ms",
            None if tta is None else f"{tta:g} ms (floor {noise if noise is not None else '–'} ms)",
            tta is not None and tta <= LIMITS["answer"],
        )
    )
    for cls, label in (
        ("read", "read-only update p95, server (writers' reads included)"),
        ("write", "write p95, server"),
    ):
        limit = LIMITS[cls]
        p95 = _at(normal, "classes", cls, "server_ms", "p95")
        out.append(_goal(label, f"≤ {limit} ms", p95, p95 is not None and p95 <= limit, " ms"))
    p95 = _at(normal, "classes", "wizard_msg", "server_ms", "p95")
    redis = _at(normal, "classes", "wizard_msg", "redis", "mean")
    most, share = _most(_at(normal, "classes", "wizard_msg", "redis_counts"))
    out.append(
        _goal(
            "wizard message p95, server",
            "≤ 3 ms, ≤ 1 Redis round trip",
            None
            if p95 is None
            else f"{p95:g} ms, {most} Redis round trip(s) for {share:.0%} (mean {redis:g})",
            p95 is not None and p95 <= LIMITS["wizard_msg"] and most is not None and most <= 1,
        )
    )
    steady = _at(normal, "steady_read", "sql")
    hit = _at(normal, "steady_read", "hit_ratio")
    fallbacks = _at(normal, "steady_read", "redis_fallbacks")
    seen = None if steady is None else f"{steady['mean']:g} (max {steady['max']}), hit {hit}"
    if seen and fallbacks:
        seen += f"; {fallbacks} more from Postgres as Redis failed"
    out.append(
        _goal(
            "SQL per read-only update at steady state",
            "0 (L1+L2 hit ratio ≥ 99%)",
            seen,
            steady is not None and steady["max"] == 0 and (hit or 0) >= 0.99,
        )
    )
    commits = _at(normal, "classes", "write", "commits_ok")
    out.append(
        _goal(
            "transactions per write",
            "1",
            None if commits is None else f"mean {commits['mean']:g}, max {commits['max']}",
            commits is not None and commits["max"] == 1 and commits["mean"] == 1,
        )
    )
    hot = result.get("hot_queries_ms") or {}
    slowest = max(hot.items(), key=lambda kv: kv[1]) if hot else None
    out.append(
        _goal(
            f"hot queries at {result['data_set']['deals']:,} deals",
            "≤ 0.1 ms each",
            None if slowest is None else f"slowest {slowest[0]} {slowest[1]:g} ms",
            slowest is not None and slowest[1] <= 0.1,
        )
    )
    ratio = _at(normal, "ratios_to_floor", "read_server_p50")
    out.append(_goal("cached read-only press vs floor, server p50", "≤ 1.5×", ratio,
                     ratio is not None and ratio <= LIMITS["ratio"], "×"))  # fmt: skip
    sat = _at(modes, "saturation", "throughput")
    out.append(_goal("saturation, one process, mixed", "≥ 2,000 updates/s", sat,
                     sat is not None and sat >= LIMITS["saturation"], "/s"))  # fmt: skip
    both = _at(modes, "saturation_2", "throughput_both")
    out.append(_goal("saturation, two processes (workers), mixed", "≥ 2,000 updates/s", both,
                     both is not None and both >= LIMITS["saturation_2"], "/s"))  # fmt: skip
    delay = _at(modes, "replicas", "replication", "delay_ms", "p99")
    out.append(_goal("cross-replica invalidation p99", "≤ 5 ms", delay,
                     delay is not None and delay <= LIMITS["invalidation"], " ms"))  # fmt: skip
    out.append(_webhook_goal(modes))
    figures = Figures(result)
    for goal, key in zip(out, KEYS, strict=True):
        bound(goal, figures, key)
    return out


KEYS = ("answer", "read", "write", "wizard_msg", "sql", "transactions", "hot", "ratio",
        "saturation", "saturation_2", "invalidation", "webhook")  # fmt: skip


def _most(counts: dict[str, int] | None) -> tuple[int | None, float]:
    """The count most updates ran, and their share (the others: a snapshot
    refilled from Redis, a form read for the first time in this process)."""
    if not counts:
        return None, 0.0
    most = max(counts, key=lambda n: counts[n])
    return int(most), counts[most] / sum(counts.values())


def l1_hit_redis(mode: dict[str, Any]) -> int | None:
    """Redis round trips of a steady read-only update served from L1: the count
    most steady reads ran. The others read L2 too, or waited for the user's
    lock another replica held (polling it), or, in the moment after a Redis
    failure, skipped Redis and ran none."""
    return _most(_at(mode, "steady_read", "redis_counts"))[0]


def _webhook_goal(modes: dict[str, Any]) -> dict[str, Any]:
    webhook = modes.get("webhook")
    ratio = _ratio(
        _at(webhook, "classes", "read", "server_ms", "p50"),
        _at(modes, "normal", "classes", "read", "server_ms", "p50"),
    )
    redis = None if webhook is None else l1_hit_redis(webhook)
    return _goal(
        "replica mode read-only press, server p50",
        "≤ 1.3× single process, 1 Redis round trip",
        None if ratio is None else f"{ratio:g}×, {redis} Redis round trips (L1 hit)",
        ratio is not None and ratio <= LIMITS["webhook"] and redis is not None and redis <= 1,
    )


# -- checking a result -------------------------------------------------------------------

REQUIRED = (
    ("throughput",),
    ("updates",),
    ("classes", "all", "handler_ms", "p99"),
    ("classes", "all", "sql", "mean"),
    ("classes", "all", "redis", "mean"),
    ("classes", "presses", "tta_ms", "p99"),
    ("classes", "presses", "tta_from_arrival_ms", "p99"),
    ("classes", "all", "server_ms", "p99"),
    ("steady_read", "sql", "mean"),
    ("steady_read", "hit_ratio"),
    ("gc", "max_pause_ms"),
)


def validate(result: dict[str, Any]) -> list[str]:
    """What is wrong with a benchmark result (empty: all good)."""
    problems = []
    modes = result.get("modes", {})
    for name in result.get("options", {}).get("modes", []):
        if name not in modes:
            problems.append(f"mode {name} missing")
    for name, m in modes.items():
        for path in REQUIRED:
            if _at(m, *path) is None:
                problems.append(f"{name}: {'.'.join(path)} missing")
        if name != "floor" and _at(m, "cache", "hit_ratio") is None and m.get("source") == "cache":
            problems.append(f"{name}: cache hit ratio missing")
        for c in ("read", "card", "list", "wizard_press", "wizard_msg", "write"):
            if name == "normal" and _at(m, "classes", c) is None:
                problems.append(f"{name}: no {c} updates measured")
        if _at(m, "classes", "presses", "unanswered"):
            problems.append(
                f"{name}: {m['classes']['presses']['unanswered']} presses never answered"
            )
    normal = modes.get("normal")
    if normal:
        # users who never write (a writer's read after a change the harness
        # did not see is in the goal's figure, not held against the run)
        sql = _at(normal, "readers", "read_non_writers", "steady_sql")
        if sql is None or sql["mean"] != 0 or sql["max"] != 0:
            problems.append(
                f"normal: SQL per non-writer's read-only update at steady state is {sql}, not 0"
            )
        hit = _at(normal, "steady_read", "hit_ratio")
        if hit is None or hit < 0.99:
            problems.append(f"normal: read-only hit ratio {hit} below 0.99")
        violations = _at(normal, "classes", "presses", "answer_before_io", "violations")
        if violations:
            problems.append(f"normal: {violations} presses had I/O before their answer")
        if (_at(normal, "classes", "write", "commits_ok", "max") or 0) > 1:
            problems.append("normal: a write update committed more than one transaction")
    if "floor" in modes and normal and _at(normal, "ratios_to_floor", "read_server_p50") is None:
        problems.append("normal: ratio to the floor missing")
    if "replicas" in modes and _at(modes["replicas"], "replication", "delay_ms", "p99") is None:
        problems.append("replicas: commit-to-invalidation delay missing")
    if "webhook" in modes:
        webhook = modes["webhook"]
        if l1_hit_redis(webhook) is None:
            problems.append("webhook: no steady read-only update measured")
        if not _at(webhook, "second_process", "updates"):
            problems.append("webhook: the second process served nothing")
    if "saturation_2" in modes and not _at(modes["saturation_2"], "second_process", "updates"):
        problems.append("saturation_2: the second process served nothing")
    return problems
