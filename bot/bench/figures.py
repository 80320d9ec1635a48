"""From the benchmark's samples to figures: latency distributions and curves, I/O
per update, cache hit ratios, per route class and per mode."""

from __future__ import annotations

import math
from typing import Any

from bot.bench.harness import (
    CLASSES,
    ERROR,
    FALLBACK,
    PRESS,
    REFILL,
    ROUTE_NAMES,
    ROUTES,
    WRITER,
    Samples,
)

QUANTILES = (50, 95, 99)
CURVE = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    if not values:
        return math.nan
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]


def dist(values: list[float]) -> dict[str, float | None]:
    values.sort()
    out: dict[str, float | None] = {f"p{p}": _r(pct(values, p)) for p in QUANTILES}
    out["max"] = _r(values[-1]) if values else None
    out["mean"] = _r(sum(values) / len(values)) if values else None
    return out


def _r(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 4)


def _mean_max(values: list[int]) -> dict[str, float]:
    return {
        "mean": round(sum(values) / len(values), 4) if values else 0.0,
        "max": max(values or [0]),
    }


def class_figures(s: Samples, rows: list[int]) -> dict[str, Any]:
    handler = [(s.end[i] - s.t0[i]) / 1e6 for i in rows]
    server = [(s.end[i] - s.t0[i] - s.telegram_wait[i]) / 1e6 for i in rows]
    response = [(s.end[i] - s.sched[i]) / 1e6 for i in rows]
    presses = [i for i in rows if s.flags[i] & PRESS]
    answered = [i for i in presses if s.answer[i]]
    checked = [i for i in answered if s.first_io[i]]
    return {
        "count": len(rows),
        "presses": len(presses),
        "unanswered": len(presses) - len(answered),
        "tta_ms": dist([(s.answer[i] - s.t0[i]) / 1e6 for i in answered]),
        "tta_from_arrival_ms": dist([(s.answer[i] - s.sched[i]) / 1e6 for i in answered]),
        "handler_ms": dist(handler),
        # the handler's time less the Bot API round trips its own task awaited
        "server_ms": dist(server),
        "telegram_wait_ms": dist([s.telegram_wait[i] / 1e6 for i in rows]),
        "response_from_arrival_ms": dist(response),
        "sql": _mean_max([s.sql[i] for i in rows]),
        "redis": _mean_max([s.redis[i] for i in rows]),
        # how many updates ran each count of round trips
        "redis_counts": _counts([s.redis[i] for i in rows]),
        "redis_commands": _mean_max([s.redis_commands[i] for i in rows]),
        "redis_bytes_out": _mean_max([s.redis_out[i] for i in rows]),
        "redis_bytes_in": _mean_max([s.redis_in[i] for i in rows]),
        "commits": _mean_max([s.commits[i] for i in rows]),
        # of the updates that did not fail (a pool timeout commits nothing)
        "commits_ok": _mean_max([s.commits[i] for i in rows if not s.flags[i] & ERROR]),
        "answer_before_io": {
            "checked": len(checked),
            "violations": sum(1 for i in checked if s.answer[i] > s.first_io[i]),
        },
        "errors": sum(1 for i in rows if s.flags[i] & ERROR),
    }


def mode_figures(s: Samples) -> dict[str, Any]:
    """Per route class, all updates, presses, per route, and the steady read-only class."""
    by_class: dict[str, list[int]] = {name: [] for name in CLASSES}
    by_route: dict[str, list[int]] = {}
    for i, route_id in enumerate(s.route):
        route = ROUTE_NAMES[route_id]
        by_class[ROUTES[route]].append(i)
        by_route.setdefault(route, []).append(i)
    everything = list(range(len(s)))
    classes = {name: class_figures(s, rows) for name, rows in by_class.items() if rows}
    classes["all"] = class_figures(s, everything)
    classes["presses"] = class_figures(s, [i for i in everything if s.flags[i] & PRESS])
    reads = by_class["read"]
    fallbacks = [i for i in reads if s.flags[i] & FALLBACK]
    steady = [i for i in reads if not s.flags[i] & (REFILL | FALLBACK)]
    span = (max(s.end) - min(s.sched)) / 1e9 if len(s) else 0.0
    return {
        "updates": len(s),
        "throughput": round(len(s) / span, 1) if span else 0.0,
        "classes": classes,
        "routes": {
            route: {
                "count": len(rows),
                "handler_ms": dist([(s.end[i] - s.t0[i]) / 1e6 for i in rows]),
                "sql_mean": _mean_max([s.sql[i] for i in rows])["mean"],
                "redis_mean": _mean_max([s.redis[i] for i in rows])["mean"],
                # how many updates ran each count (those that did not fail)
                "sql_counts": _counts([s.sql[i] for i in rows if not s.flags[i] & ERROR]),
                "redis_counts": _counts([s.redis[i] for i in rows if not s.flags[i] & ERROR]),
            }
            for route, rows in sorted(by_route.items())
        },
        "readers": readers(s, by_class, span),
        "steady_read": {
            "count": len(steady),
            "refills": sum(1 for i in reads if s.flags[i] & REFILL),
            # Redis failed (or had, before the user's entry could be written):
            # served from Postgres by design
            "redis_fallbacks": len(fallbacks),
            # served without SQL (L1 or L2), and without any I/O at all (L1)
            "hit_ratio": _share(steady, lambda i: s.sql[i] == 0),
            "l1_hit_ratio": _share(steady, lambda i: s.sql[i] == 0 and s.redis[i] == 0),
            "sql": _mean_max([s.sql[i] for i in steady]),
            "redis": _mean_max([s.redis[i] for i in steady]),
            "redis_counts": _counts([s.redis[i] for i in steady]),
        },
        "curves": {
            "handler_ms": _curve([(s.end[i] - s.t0[i]) / 1e6 for i in everything]),
            "server_ms": _curve(
                [(s.end[i] - s.t0[i] - s.telegram_wait[i]) / 1e6 for i in everything]
            ),
            "tta_from_arrival_ms": _curve(
                [(s.answer[i] - s.sched[i]) / 1e6 for i in everything if s.answer[i]]
            ),
        },
    }


def readers(s: Samples, by_class: dict[str, list[int]], span: float) -> dict[str, Any]:
    """Reads (menu, wallet, help) and deal cards of users who also write (traders,
    whose own and counterparties' writes change their snapshot) and of users who
    never write, apart: refills per second and SQL per read, refills included."""
    out: dict[str, Any] = {}
    for cls in ("read", "card"):
        for who, writer in (("writers", True), ("non_writers", False)):
            rows = [i for i in by_class[cls] if bool(s.flags[i] & WRITER) == writer]
            if not rows:
                continue
            refills = sum(1 for i in rows if s.flags[i] & REFILL)
            out[f"{cls}_{who}"] = {
                "count": len(rows),
                "handler_ms": dist([(s.end[i] - s.t0[i]) / 1e6 for i in rows]),
                "server_ms": dist([(s.end[i] - s.t0[i] - s.telegram_wait[i]) / 1e6 for i in rows]),
                "refills": refills,
                "refills_per_s": round(refills / span, 2) if span else None,
                "sql_per_read": _mean_max([s.sql[i] for i in rows]),
                # leaving out refills and Redis failures' fallbacks, as steady_read does
                "steady_sql": _mean_max(
                    [s.sql[i] for i in rows if not s.flags[i] & (REFILL | FALLBACK)]
                ),
                "redis_per_read": _mean_max([s.redis[i] for i in rows]),
                "hit_ratio": _share(rows, lambda i: s.sql[i] == 0),
            }
    return out


def _counts(values: list[int]) -> dict[str, int]:
    counts: dict[int, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return {str(value): counts[value] for value in sorted(counts)}


def _share(rows: list[int], test: Any) -> float | None:
    return round(sum(1 for i in rows if test(i)) / len(rows), 5) if rows else None


def _curve(values: list[float]) -> dict[str, float | None]:
    values.sort()
    return {f"p{p:g}": _r(pct(values, p)) for p in CURVE} | {
        "max": _r(values[-1]) if values else None
    }


def cache_figures(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    d = {k: v - before[k] for k, v in after.items() if isinstance(v, int)}
    gets = d["l1_hits"] + d["l1_misses"] + d["l1_bypassed"]
    l2_reads = d["l2_hits"] + d["l2_misses"]
    return {
        "gets": gets,
        "l1_hit_ratio": round(d["l1_hits"] / gets, 5) if gets else None,
        "l2_hit_ratio": round(d["l2_hits"] / l2_reads, 5) if l2_reads else None,
        "hit_ratio": round((d["l1_hits"] + d["l2_hits"]) / gets, 5) if gets else None,
        "counters": d,
    }


def curves(s: Samples) -> dict[str, list[float]]:
    """Every update's server time and every press's answer from arrival, ms (the plot's)."""
    return {
        "server": [(s.end[i] - s.t0[i] - s.telegram_wait[i]) / 1e6 for i in range(len(s))],
        "tta": [(s.answer[i] - s.sched[i]) / 1e6 for i in range(len(s)) if s.answer[i]],
    }
