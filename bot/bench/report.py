"""From the benchmark's figures to tables (plain or markdown) and a latency plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bot.bench.profile import profile_table

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
            [name + ("" if m.get("round_trip", True) else " (no rtt)"), _f(m["throughput"], 0)]
            + [_f(_get(p, "tta_from_arrival_ms", k), 3) for k in ("p50", "p95", "p99", "max")]
            + [_f(_get(a, "handler_ms", k), 3) for k in ("p50", "p99")]
            + [_f(_get(a, "server_ms", k), 3) for k in ("p50", "p95", "p99")]
            + [_f(_get(m, "ratios_to_floor", "read_server_p50"))]
        )
    head = ["mode", "upd/s", "answer p50", "p95", "p99", "max", "handler p50", "p99"]
    head += ["server p50", "p95", "p99", "×floor"]
    rtt = result.get("round_trip")
    said = f"median {rtt['median_ms']:g} ms" if rtt else "off"
    out.append(
        (
            "Presses: arrival to answerCallbackQuery sent; all updates: handler time and "
            f"server time (Telegram waits excluded), ms; Telegram round trip {said}",
            head,
            rows,
        )
    )
    head = ["mode", "read", "card", "list", "wizard press", "wizard msg", "write"]
    rows = [
        [name]
        + [
            _f(_get(m, "classes", c, "server_ms", "p95"), 3)
            for c in ("read", "card", "list", "wizard_press", "wizard_msg", "write")
        ]
        for name, m in modes.items()
    ]
    out.append(("Server time p95 by route class (Telegram waits excluded), ms", head, rows))
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
        head = ["class", "n", "answer p50", "p99", "max", "handler p50", "p95", "server p50"]
        head += ["p95", "p99", "max", "SQL mean/max", "Redis mean/max"]
        rows = []
        for c, f in normal["classes"].items():
            rows.append(
                [c, str(f["count"])]
                + [_f(_get(f, "tta_from_arrival_ms", k), 3) for k in ("p50", "p99", "max")]
                + [_f(_get(f, "handler_ms", k), 3) for k in ("p50", "p95")]
                + [_f(_get(f, "server_ms", k), 3) for k in ("p50", "p95", "p99", "max")]
                + [
                    f"{f['sql']['mean']:.2f}/{f['sql']['max']}",
                    f"{f['redis']['mean']:.2f}/{f['redis']['max']}",
                ]
            )
        out.append(("normal mode by route class (answer from arrival), ms", head, rows))
        out.append(_readers(normal))
        out.append(_costs(normal))
    out.append(_servers(modes))
    webhook = modes.get("webhook")
    if normal and webhook:
        out.append(_replicas(normal, webhook))
    profiled = {name: m["profile"] for name, m in modes.items() if m.get("profile")}
    if profiled:
        out.append(profile_table(profiled))
    if result.get("goals"):
        rows = [
            [
                g["goal"],
                g["target"],
                g["measured"],
                "yes" if g["met"] else "NO",
                g.get("far") or "",
                g.get("bound") or "",
            ]
            for g in result["goals"]
        ]
        head = ["goal", "target", "measured", "met", "how far", "what bounds it"]
        out.append(("Goals", head, rows))
    return out


def _readers(normal: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    head = ["reads", "n", "server p50", "p95", "p99", "refills", "refills/s", "SQL/read"]
    head += ["steady SQL", "Redis/read", "hit"]
    rows = []
    for who, r in normal.get("readers", {}).items():
        rows.append(
            [who, str(r["count"])]
            + [_f(_get(r, "server_ms", k), 3) for k in ("p50", "p95", "p99")]
            + [str(r["refills"]), _f(r["refills_per_s"])]
            + [f"{r['sql_per_read']['mean']:.3f}/{r['sql_per_read']['max']}"]
            + [f"{r['steady_sql']['mean']:.3f}/{r['steady_sql']['max']}"]
            + [_f(_get(r, "redis_per_read", "mean"), 3), _f(r["hit_ratio"], 4)]
        )
    title = "normal mode: reads and cards by users who write and who never do (refills included)"
    return title, head, rows


def _costs(normal: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    head = ["class", "n", "SQL", "commits", "Redis round trips", "commands", "bytes out", "in"]
    rows = [
        [c, str(f["count"])]
        + [_f(_get(f, key, "mean"), 2) for key in ("sql", "commits", "redis", "redis_commands")]
        + [_f(_get(f, key, "mean"), 0) for key in ("redis_bytes_out", "redis_bytes_in")]
        for c, f in normal["classes"].items()
    ]
    return "normal mode: what one update costs by class (means, this process's view)", head, rows


def _servers(modes: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    head = ["mode", "Redis commands/upd", "bytes in/upd", "out/upd", "WAL bytes/write"]
    head += ["Postgres transactions/upd", "CPU µs/upd: this process", "Redis", "Postgres"]
    head += ["standby's share of reads"]
    rows = [
        [name]
        + [
            _f(_get(m, "servers", key), 1)
            for key in (
                "redis_commands_per_update",
                "redis_bytes_in_per_update",
                "redis_bytes_out_per_update",
                "wal_bytes_per_write",
                "transactions_per_update",
                "process_cpu_us_per_update",
                "redis_cpu_us_per_update",
                "postgres_cpu_us_per_update",
            )
        ]
        + [_f(_get(m, "servers", "standby_share"), 3)]
        for name, m in modes.items()
        if m.get("servers")
    ]
    title = "The servers' own counters over each measured window (server-wide: every client)"
    return title, head, rows


def _replicas(
    normal: dict[str, Any], webhook: dict[str, Any]
) -> tuple[str, list[str], list[list[str]]]:
    head = ["", "upd/s", "answer p99", "read server p50", "p95", "Redis/steady read", "L1 hit"]
    head += ["Redis/press", "Redis/msg", "Redis/write", "errors"]
    rows = []
    for name, m in (("single process", normal), ("webhook replica", webhook)):
        c = m["classes"]
        counts = _get(m, "steady_read", "redis_counts") or {}
        rows.append(
            [
                name,
                _f(m["throughput"], 0),
                _f(_get(c, "presses", "tta_from_arrival_ms", "p99"), 3),
                _f(_get(c, "read", "server_ms", "p50"), 3),
                _f(_get(c, "read", "server_ms", "p95"), 3),
                _f(_get(m, "steady_read", "redis", "mean"), 2),
                min(counts, key=int, default="–"),
                _f(_get(c, "presses", "redis", "mean"), 2),
                _f(_get(c, "wizard_msg", "redis", "mean"), 2),
                _f(_get(c, "write", "redis", "mean"), 2),
                _f(_get(c, "all", "errors")),
            ]
        )
    other = webhook.get("second_process")
    if other:
        c = other["classes"]
        rows.append(
            ["second replica", _f(other["throughput"], 0), "–"]
            + [_f(_get(c, "read", "server_ms", k), 3) for k in ("p50", "p95")]
            + ["–", "–", _f(_get(c, "presses", "redis", "mean"), 2)]
            + [_f(_get(c, "wizard_msg", "redis", "mean"), 2)]
            + [_f(_get(c, "write", "redis", "mean"), 2), _f(other.get("errors"))]
        )
    return "Webhook replicas (two processes serving) beside one process, per update", head, rows


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
        (axes[0], "tta", "press: arrival to answerCallbackQuery sent (ms)"),
        (axes[1], "server", "server time, all updates, Telegram waits excluded (ms)"),
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
