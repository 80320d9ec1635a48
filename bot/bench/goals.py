"""What a benchmark result is checked against.

- `goals`: the issue's targets, reported met or not (benchmark targets, not tests);
- `validate`: what must hold whatever the machine (CI runs `bench --quick --check`);
- `ratios_to_floor`: each mode's p50s over the floor's.
"""

from __future__ import annotations

import math
from typing import Any


def _at(node: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    return node


def _ratio(a: Any, b: Any) -> float | None:
    if a is None or b is None or not b or (isinstance(b, float) and math.isnan(b)):
        return None
    return round(a / b, 3)


def ratios_to_floor(result: dict[str, Any]) -> None:
    """Each mode's p50s over the floor's, for the same kind of update."""
    modes = result["modes"]
    floor = modes.get("floor")
    if floor is None:
        return
    for name, mode in modes.items():
        if name == "floor":
            continue
        ratios = {}
        for cls in ("read", "card", "list", "wizard_press", "wizard_msg", "write", "all"):
            ratios[f"{cls}_handler_p50"] = _ratio(
                _at(mode, "classes", cls, "handler_ms", "p50"),
                _at(floor, "classes", cls, "handler_ms", "p50"),
            )
        for cls in ("read", "presses"):
            ratios[f"{cls}_tta_p50"] = _ratio(
                _at(mode, "classes", cls, "tta_ms", "p50"),
                _at(floor, "classes", cls, "tta_ms", "p50"),
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
    tta = _at(normal, "classes", "presses", "tta_ms", "p99")
    out.append(
        _goal("button time-to-answer p99", "≤ 2 ms", tta, tta is not None and tta <= 2, " ms")
    )
    for cls, label, limit in (
        ("read", "read-only updates p95", 2),
        ("write", "writes p95", 5),
        ("wizard_msg", "wizard messages p95", 3),
    ):
        p95 = _at(normal, "classes", cls, "handler_ms", "p95")
        out.append(_goal(label, f"≤ {limit} ms", p95, p95 is not None and p95 <= limit, " ms"))
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
    ratio = _at(normal, "ratios_to_floor", "read_handler_p50")
    out.append(_goal("cached read-only press vs floor (p50)", "≤ 1.5×", ratio,
                     ratio is not None and ratio <= 1.5, "×"))  # fmt: skip
    sat = _at(modes, "saturation", "throughput")
    out.append(_goal("saturation per bot process", "≥ 2,000 updates/s", sat,
                     sat is not None and sat >= 2000, "/s"))  # fmt: skip
    delay = _at(modes, "replicas", "replication", "delay_ms", "p99")
    out.append(_goal("cross-replica invalidation p99", "≤ 5 ms", delay,
                     delay is not None and delay <= 5, " ms"))  # fmt: skip
    return out


# -- checking a result -------------------------------------------------------------------

REQUIRED = (
    ("throughput",),
    ("updates",),
    ("classes", "all", "handler_ms", "p99"),
    ("classes", "all", "sql", "mean"),
    ("classes", "all", "redis", "mean"),
    ("classes", "presses", "tta_ms", "p99"),
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
        sql = _at(normal, "steady_read", "sql")
        if sql is None or sql["mean"] != 0 or sql["max"] != 0:
            problems.append(f"normal: SQL per read-only update at steady state is {sql}, not 0")
        hit = _at(normal, "steady_read", "hit_ratio")
        if hit is None or hit < 0.99:
            problems.append(f"normal: read-only hit ratio {hit} below 0.99")
        violations = _at(normal, "classes", "presses", "answer_before_io", "violations")
        if violations:
            problems.append(f"normal: {violations} presses had I/O before their answer")
        if (_at(normal, "classes", "write", "commits_ok", "max") or 0) > 1:
            problems.append("normal: a write update committed more than one transaction")
    if "floor" in modes and normal and _at(normal, "ratios_to_floor", "read_handler_p50") is None:
        problems.append("normal: ratio to the floor missing")
    if "replicas" in modes and _at(modes["replicas"], "replication", "delay_ms", "p99") is None:
        problems.append("replicas: commit-to-invalidation delay missing")
    return problems
