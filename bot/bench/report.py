"""From the benchmark's samples to figures, tables, JSON, a plot and a verdict."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bot.bench.harness import (
    CLASSES,
    ERROR,
    FALLBACK,
    PRESS,
    REFILL,
    ROUTE_NAMES,
    ROUTES,
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
        "response_from_arrival_ms": dist(response),
        "sql": _mean_max([s.sql[i] for i in rows]),
        "redis": _mean_max([s.redis[i] for i in rows]),
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
            }
            for route, rows in sorted(by_route.items())
        },
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
        },
        "curves": {
            "handler_ms": _curve([(s.end[i] - s.t0[i]) / 1e6 for i in everything]),
            "tta_ms": _curve([(s.answer[i] - s.t0[i]) / 1e6 for i in everything if s.answer[i]]),
        },
    }


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


# -- tables ------------------------------------------------------------------------------


def _f(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _get(mode: dict[str, Any], *path: str) -> Any:
    node: Any = mode
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def tables(result: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    modes = result["modes"]
    out = []
    rows = []
    for name, m in modes.items():
        p, a = m["classes"].get("presses", {}), m["classes"]["all"]
        rows.append(
            [name, _f(m["throughput"], 0)]
            + [_f(_get(p, "tta_ms", k), 3) for k in ("p50", "p95", "p99", "max")]
            + [_f(_get(a, "handler_ms", k), 3) for k in ("p50", "p95", "p99", "max")]
            + [_f(_get(m, "ratios_to_floor", "read_handler_p50"))]
        )
    head = ["mode", "upd/s", "answer p50", "p95", "p99", "max", "handler p50", "p95", "p99", "max"]
    out.append(
        ("Time to answer (presses) and handler latency (all updates), ms", [*head, "×floor"], rows)
    )
    head = ["mode", "read", "card", "list", "wizard press", "wizard msg", "write"]
    rows = [
        [name]
        + [_f(_get(m, "classes", c, "handler_ms", "p95"), 3) for c in head[1:4]]
        + [
            _f(_get(m, "classes", c, "handler_ms", "p95"), 3)
            for c in ("wizard_press", "wizard_msg", "write")
        ]
        for name, m in modes.items()
    ]
    out.append(("Handler latency p95 by route class, ms", head, rows))
    head = ["mode", "SQL/upd", "SQL/read (steady)", "SQL/write max", "commits/write", "Redis/upd"]
    head += ["Redis/read", "L1 hit", "L1+L2 hit", "read hit", "errors", "dropped", "gc max ms"]
    rows = []
    for name, m in modes.items():
        rows.append(
            [
                name,
                _f(_get(m, "classes", "all", "sql", "mean")),
                _f(_get(m, "steady_read", "sql", "mean"), 3),
                _f(_get(m, "classes", "write", "sql", "max")),
                _f(_get(m, "classes", "write", "commits", "mean")),
                _f(_get(m, "classes", "all", "redis", "mean")),
                _f(_get(m, "classes", "read", "redis", "mean"), 3),
                _f(_get(m, "cache", "l1_hit_ratio"), 4),
                _f(_get(m, "cache", "hit_ratio"), 4),
                _f(_get(m, "steady_read", "hit_ratio"), 4),
                _f(_get(m, "classes", "all", "errors")),
                _f(m.get("dropped")),
                _f(_get(m, "gc", "max_pause_ms"), 1),
            ]
        )
    out.append(("I/O per update, cache, errors and garbage collection", head, rows))
    normal = modes.get("normal")
    if normal:
        head = ["class", "n", "answer p50", "p99", "max", "handler p50", "p95", "p99", "max"]
        head += ["SQL mean/max", "Redis mean/max"]
        rows = []
        for c, f in normal["classes"].items():
            rows.append(
                [c, str(f["count"])]
                + [_f(_get(f, "tta_ms", k), 3) for k in ("p50", "p99", "max")]
                + [_f(_get(f, "handler_ms", k), 3) for k in ("p50", "p95", "p99", "max")]
                + [
                    f"{f['sql']['mean']:.2f}/{f['sql']['max']}",
                    f"{f['redis']['mean']:.2f}/{f['redis']['max']}",
                ]
            )
        out.append(("normal mode by route class (ms)", head, rows))
    if result.get("goals"):
        rows = [
            [g["goal"], g["target"], g["measured"], "yes" if g["met"] else "NO"]
            for g in result["goals"]
        ]
        out.append(("Goals", ["goal", "target", "measured", "met"], rows))
    return out


def render(result: dict[str, Any], *, markdown: bool = False) -> str:
    parts = []
    for title, head, rows in tables(result):
        if markdown:
            lines = [f"**{title}**", "", "| " + " | ".join(head) + " |"]
            lines.append(
                "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"
            )
            lines += ["| " + " | ".join(row) + " |" for row in rows]
        else:
            widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
            fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
            lines = [title, fmt.format(*head), fmt.format(*("-" * w for w in widths))]
            lines += [fmt.format(*row) for row in rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


# -- the plot --------------------------------------------------------------------------------


def plot(curves: dict[str, dict[str, list[float]]], path: Path, title: str) -> str | None:
    """Latency tails per mode (1 - CDF, log-log); None, or why there is no plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): no plot"
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5), sharey=True)
    for ax, key, label in (
        (axes[0], "tta", "button time-to-answer (ms)"),
        (axes[1], "handler", "handler latency, all updates (ms)"),
    ):
        for index, (mode, data) in enumerate(curves.items()):
            values = sorted(v for v in data.get(key, []) if v > 0)
            if not values:
                continue
            n = len(values)
            ax.step(
                values,
                [1 - i / n for i in range(n)],
                where="post",
                label=mode,
                lw=2.2 if mode in ("normal", "floor") else 1.1,
                color=plt.get_cmap("tab20")(index % 20),
                linestyle="-" if index < 10 else "--",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("fraction of updates slower (1 − CDF)")
    axes[1].legend(fontsize=8, loc="lower left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
