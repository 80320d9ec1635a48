"""python -m bot bench: the real Dispatcher under a realistic load, mode by mode.

Simulated Telegram users drive the whole bot (every middleware, the real
snapshot cache, Postgres and Redis) through the Telegram double, against a
database of its own preloaded with COPY (default 100k users, 1M deals; reused
when it already holds that data set). The product runs side by side with a
floor (handlers that only answer), ablations and the seed plan's
anti-pattern; see `bot.bench.modes.MODES`. Absolute times drift on a shared
machine, so the table also gives ratios to the floor.

    python -m bot bench --quick                  # a minute or two, for development
    python -m bot bench --json out.json --plot out.png --markdown out.md
    python -m bot bench --modes normal floor no_l1 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from bot.bench import data as bench_data
from bot.bench.environment import machine, versions
from bot.bench.goals import goals, ratios_to_floor, validate
from bot.bench.meters import install_redis_counter
from bot.bench.modes import MODES, hot_query_times
from bot.bench.report import plot, render
from bot.bench.run import Phase, Plan, run_mode
from bot.bench.topology import Topology, start_topology
from bot.bench.workload import TRADERS_PACE
from bot.config import Config, ConfigError, load_config
from bot.sim.round_trip import RoundTrip

QUICK = {
    "users": 150,
    "data_users": 20_000,
    "deals": 100_000,
    "rate": 300.0,
    "duration": 2.0,
    "warmup": 1.0,
}
ORDER = list(MODES)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bot bench", description=__doc__.split("\n")[0])
    p.add_argument("--config", help="path to config.toml (default: ESCROW_CONFIG or ./config.toml)")
    p.add_argument("--quick", action="store_true", help="small data set, short modes (1-2 min)")
    p.add_argument("--users", type=int, help="simulated users (default 1000; quick 150)")
    p.add_argument("--data-users", type=int, help="users in the data set (default 100000)")
    p.add_argument("--deals", type=int, help="deals in the data set (default 1000000)")
    p.add_argument("--rate", type=float, help="open-loop updates/s (default 1000; quick 300)")
    p.add_argument("--duration", type=float, help="measured seconds per mode (default 15)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds per mode (default 3)")
    p.add_argument("--concurrency", type=int, default=50, help="closed-loop users (50)")
    p.add_argument("--replica-rate", type=float, default=50.0, help="second replica's writes/s")
    p.add_argument(
        "--rtt-ms",
        type=float,
        default=40.0,
        help="Telegram's median round trip in the double (40; 0: answered without waiting)",
    )
    p.add_argument("--modes", nargs="+", choices=ORDER, metavar="MODE", help=", ".join(ORDER))
    p.add_argument("--database", default="escrow_bench", help="bench database (escrow_bench)")
    p.add_argument("--reload", action="store_true", help="load the data set even if it is there")
    p.add_argument("--json", type=Path, default=Path("var/bench/results.json"))
    p.add_argument("--plot", default="var/bench/latency.png", help="PNG path ('' for none)")
    p.add_argument("--markdown", type=Path, help="also write the tables as markdown")
    p.add_argument("--check", action="store_true", help="exit 1 if the JSON fails validation")
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample each measured window with py-spy: where the CPU went (stacks beside --json)",
    )
    return p


def options(args: argparse.Namespace) -> dict[str, Any]:
    quick = QUICK if args.quick else {}
    modes = list(args.modes or ORDER)
    if "floor" in modes and "normal" not in modes:
        modes.insert(0, "normal")  # the floor replays what the product was sent
    modes.sort(key=ORDER.index)
    return {
        "quick": args.quick,
        "users": args.users or quick.get("users", 1000),
        "data_users": args.data_users or quick.get("data_users", 100_000),
        "deals": args.deals or quick.get("deals", 1_000_000),
        "rate": args.rate or quick.get("rate", 1000.0),
        "duration": args.duration or quick.get("duration", 15.0),
        "warmup": args.warmup if args.warmup is not None else quick.get("warmup", 3.0),
        "concurrency": args.concurrency,
        "replica_rate": args.replica_rate,
        "rtt_ms": args.rtt_ms,
        "modes": modes,
        "database": args.database,
        "profile": str(args.json.parent) if args.profile else None,
    }


async def _progress(phase: Phase, tty: bool) -> None:
    last = None
    while True:
        await asyncio.sleep(0.25)
        elapsed = time.monotonic() - phase.started
        done = phase.harness.completed if phase.harness else 0
        if tty:
            frac = min(1.0, elapsed / phase.seconds) if phase.seconds else 0.0
            bar = "#" * int(frac * 24)
            sys.stderr.write(
                f"\r  {phase.mode:<12} {phase.label:<18} [{bar:<24}] {elapsed:5.1f}s"
                f" {done:>7} updates "
            )
            sys.stderr.flush()
        elif (phase.mode, phase.label) != last:
            print(f"  {phase.mode:<12} {phase.label}", file=sys.stderr, flush=True)
        last = (phase.mode, phase.label)


async def run(config_path: str | None, opts: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    config = load_config(config_path)
    config = msgspec.structs.replace(
        config,
        database=config.database.with_database(opts["database"]),
        escrow=msgspec.structs.replace(config.escrow, **TRADERS_PACE),
    )
    currencies = list(config.currency_table().codes)
    print(f"data set: {opts['data_users']:,} users, {opts['deals']:,} deals", file=sys.stderr)
    data = await bench_data.prepare(
        config.database, opts["data_users"], opts["deals"], currencies, force=opts.get("reload")
    )
    print(
        f"  {'loaded with COPY' if data.loaded else 'reused'} ({data.seconds:.1f} s to load)",
        file=sys.stderr,
    )
    numbers = bench_data.pick_users(opts["data_users"], opts["users"])
    topology = await start_topology(config, opts) if "cluster" in opts["modes"] else None
    try:
        return await _run(config, opts, data, numbers, config_path, started, topology)
    finally:
        if topology is not None:
            topology[0].stop()


async def _run(
    config: Config,
    opts: dict[str, Any],
    data: bench_data.DataSet,
    numbers: list[int],
    config_path: str | None,
    started: float,
    topology: tuple[Topology, Config] | None,
) -> dict[str, Any]:
    currencies = list(config.currency_table().codes)
    tty = sys.stderr.isatty()
    plan = Plan(
        config=config,
        numbers=numbers,
        codes=await bench_data.deal_codes(config.database, numbers),
        rate=opts["rate"],
        seconds=opts["duration"],
        warmup=opts["warmup"],
        concurrency=opts["concurrency"],
        prefix=f"bench{secrets.token_hex(3)}",
        config_path=config_path,
        replica_rate=opts["replica_rate"],
        rtt_ms=opts.get("rtt_ms", 40.0),
        cluster=topology[1] if topology is not None else None,
        profile=Path(opts["profile"]) if opts.get("profile") else None,
    )
    result: dict[str, Any] = {
        "version": 1,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "options": opts,
        "data_set": {
            "users": data.users,
            "deals": data.deals,
            "loaded": data.loaded,
            "load_seconds": round(data.seconds, 2),
        },
        "mix": dataclasses.asdict(plan.mix),
        "round_trip": RoundTrip(median_ms=plan.rtt_ms).settings() if plan.rtt_ms else None,
        "hot_queries_ms": await hot_query_times(config.database, currencies[0]),
        "modes": {},
    }
    install_redis_counter()
    for handler in logging.getLogger().handlers:
        handler.addFilter(plan.logs)
    phase = Phase()
    ticker = asyncio.get_running_loop().create_task(_progress(phase, tty))
    try:
        for index, name in enumerate(opts["modes"]):
            result["modes"][name] = await run_mode(plan, MODES[name], index, phase)
            if tty:
                sys.stderr.write("\r" + " " * 100 + "\r")
            m = result["modes"][name]
            p99 = m["classes"]["all"]["handler_ms"]["p99"]
            print(f"  {name:<12} done: {m['updates']} updates, {m['throughput']:.0f}/s,"
                  f" handler p99 {p99} ms", file=sys.stderr)  # fmt: skip
    finally:
        ticker.cancel()
    phase.set("", "")
    for name, walls in phase.walls.items():
        if name in result["modes"]:
            result["modes"][name]["wall_seconds"] = walls
    result["machine"].update(await versions(plan))
    ratios_to_floor(result)
    result["goals"] = goals(result)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["curves_in_memory"] = plan.curves
    return result


def write_outputs(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    curves = result.pop("curves_in_memory", {})
    problems = validate(result)
    result["validation"] = problems
    notes = []
    m = result["machine"]
    title = (
        f"{result['data_set']['users']:,} users, {result['data_set']['deals']:,} deals, "
        f"{result['options']['users']} simulated users at {result['options']['rate']:.0f}/s · "
        f"{m.get('nproc')} × {m.get('cpu', '?')}, Postgres {m.get('postgres')}, "
        f"Redis {m.get('redis')}"
    )
    if args.plot:
        note = plot(curves, Path(args.plot), title)
        result["plot"] = None if note else str(args.plot)
        if note:
            notes.append(note)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    if args.markdown:
        text = f"{title}; run took {result['seconds']} s.\n\n" + render(result, markdown=True)
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")
    return notes


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    opts = options(args)
    opts["reload"] = args.reload
    try:
        load_config(args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop

        result = uvloop.run(run(args.config, opts))
    except ImportError:  # pragma: no cover - uvloop is a dependency
        result = asyncio.run(run(args.config, opts))
    notes = write_outputs(result, args)
    print()
    print(render(result))
    print()
    for note in notes:
        print(f"note: {note}")
    print(f"json: {args.json}" + (f"  plot: {args.plot}" if result.get("plot") else ""))
    if result["validation"]:
        print("validation problems:\n  " + "\n  ".join(result["validation"]))
        return 1 if args.check else 0
    print("validation: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
