"""A second bot process for the benchmark's cross-replica figures.

The child builds its own replica (`build_app`) on the same Postgres and Redis
(same key prefix), and either deposits into the given users' wallets through
its services at a steady rate, or (`serve`) serves simulated users of its own
through its own Telegram double, as a second webhook replica does (built with
`replicas=True`; its update ids far from the parent's, so that the shared
duplicate check keeps them apart). For every committed change it notes
time.monotonic_ns() right after the commit (when the services hand the events
to the publisher); the benchmark's process notes when its listener has dropped
the user from L1. CLOCK_MONOTONIC is one clock for every process on a Linux
machine, so the difference is the commit-to-invalidation delay.

    parent                         child (python -m bot.bench.replica)
    spawn ------------ argv ---->  build_app, read the users' snapshots
          <----------- "ready" --
          ------------ "go" ---->  deposit at --rate for --seconds
                                   (serve: welcome, warm up, serve for --seconds)
          <----------- JSON -----  {"commits": [[telegram_id, version, ns], ...]}
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import msgspec

from bot.bench.arrivals import closed_loop, open_loop, trader_count, workload_of
from bot.bench.rows import telegram_id
from db.events import Event, UserChanged

if TYPE_CHECKING:
    from bot.bench.modes import Mode
    from bot.bench.run import Plan


def mode_prefix(plan: Plan, index: int) -> str:
    """The Redis key prefix of the mode run as number `index`."""
    return f"{plan.prefix}m{index}"


def split(plan: Plan, mode: Mode) -> tuple[list[int], list[int]]:
    """The users this process drives, and those a serving second process drives."""
    if mode.second == "serves":
        return plan.numbers[0::2], plan.numbers[1::2]
    return plan.numbers, []


def start_replica(plan: Plan, mode: Mode, index: int) -> ReplicaProcess:
    """Spawn the second bot process for `mode`, run as number `index`."""
    spec = {
        "config": plan.config_path,
        "database": plan.config.database.sqlalchemy_url.database,
        "prefix": mode_prefix(plan, index),
        "seconds": plan.seconds,
    }
    if mode.second == "serves":
        theirs = split(plan, mode)[1]
        spec |= {
            "serve": True,
            "rate": plan.rate / 2,
            "warmup": plan.warmup,
            "numbers": theirs,
            "codes": [plan.codes.get(n, []) for n in theirs],
            "rtt_ms": plan.rtt_ms if mode.round_trip else 0,
            "mix": dataclasses.asdict(plan.mix),
            "concurrency": max(1, plan.concurrency // 2) if mode.loop == "closed" else None,
        }
    else:
        navigators = plan.numbers[trader_count(len(plan.numbers)) :]
        spec |= {"rate": plan.replica_rate, "users": [telegram_id(n) for n in navigators[:200]]}
    replica = ReplicaProcess(spec)
    replica.start()
    return replica


class _Recorder:
    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.commits: list[tuple[int, int, int]] = []

    async def publish(self, events: tuple[Event, ...]) -> None:
        now = time.monotonic_ns()
        for event in events:
            if isinstance(event, UserChanged):
                self.commits.append((event.telegram_id, event.version, now))
        await self.sink.publish(events)


def _config(spec: dict[str, Any]) -> Any:
    from bot.bench.workload import TRADERS_PACE
    from bot.config import load_config

    config = load_config(spec["config"])
    return msgspec.structs.replace(
        config,
        database=config.database.with_database(spec["database"]),
        cache=msgspec.structs.replace(config.cache, key_prefix=spec["prefix"]),
        escrow=msgspec.structs.replace(config.escrow, **TRADERS_PACE),
    )


async def _serve(spec: dict[str, Any]) -> dict[str, Any]:
    from bot.bench.figures import mode_figures
    from bot.bench.harness import Harness
    from bot.bench.workload import BenchUser, Mix
    from bot.runtime.app import build_app
    from bot.sim.round_trip import RoundTrip
    from bot.sim.telegram import FakeTelegram, start_update_ids_at

    config = _config(spec)
    start_update_ids_at(10**12)
    rtt = RoundTrip(median_ms=spec["rtt_ms"], seed=2) if spec["rtt_ms"] else None
    telegram = FakeTelegram(keep_log=False, latency=rtt)
    app = await build_app(config, session=telegram, replicas=True)
    try:
        recorder = _Recorder(app.services.ctx.events)
        app.services.ctx.events = recorder
        harness = Harness(telegram, app.bot, app.dispatcher)
        pairs = zip(spec["numbers"], spec["codes"], strict=True)
        users = [BenchUser(harness, i, n, codes) for i, (n, codes) in enumerate(pairs)]
        harness.writers = {user.id for user in users[: trader_count(len(users))]}
        currencies = config.currency_table()
        workload = workload_of(users, currencies[currencies.codes[0]], Mix(**spec["mix"]), seed=3)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for start in range(0, len(users), 50):
            await asyncio.gather(*(user.welcome() for user in users[start : start + 50]))
        concurrency = spec.get("concurrency")

        async def drive(seconds: float, seed: int) -> float:
            if concurrency:
                return await closed_loop(workload.arrival, concurrency, seconds)
            return await open_loop(harness, workload.arrival, spec["rate"], seconds, seed=seed)

        await drive(spec["warmup"], 4)
        recorder.commits.clear()
        harness.measuring = True
        sent = await drive(spec["seconds"], 5)
        figures = mode_figures(harness.samples)
        errors = figures["classes"]["all"]["errors"]
        return {
            "commits": recorder.commits,
            "errors": errors,
            "sent": len(harness.samples),
            "figures": {
                "updates": figures["updates"],
                "throughput": figures["throughput"],
                "seconds": round(sent, 3),
                "errors": errors,
                "dropped": harness.dropped,
                "classes": {
                    name: {key: c[key] for key in ("count", "server_ms", "redis", "sql")}
                    for name, c in figures["classes"].items()
                },
            },
        }
    finally:
        await app.aclose()


async def _child(spec: dict[str, Any]) -> dict[str, Any]:
    from bot.runtime.app import build_app
    from bot.sim.telegram import FakeTelegram

    if spec.get("serve"):
        return await _serve(spec)
    config = _config(spec)
    app = await build_app(config, session=FakeTelegram(keep_log=False))
    errors = 0
    try:
        recorder = _Recorder(app.services.ctx.events)
        app.services.ctx.events = recorder
        users = [await app.cache.cache.get(telegram_id) for telegram_id in spec["users"]]
        actors = [user for user in users if user is not None]
        currency = config.currency_table().codes[0]
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        interval = 1 / spec["rate"]
        start = time.perf_counter()
        n = 0
        while (elapsed := time.perf_counter() - start) < spec["seconds"]:
            await asyncio.sleep(max(0.0, n * interval - elapsed))
            actor = actors[n % len(actors)]
            try:
                await app.services.wallets.credit_deposit(
                    actor, currency, 100, reference=f"{spec['prefix']}:{n}"
                )
            except Exception:
                errors += 1
            n += 1
        return {"commits": recorder.commits, "errors": errors, "sent": n}
    finally:
        await app.aclose()


class ReplicaProcess:
    """The parent's handle on the child."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.proc: asyncio.subprocess.Process | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.bench.replica", json.dumps(self.spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    async def ready(self, seconds: float = 60) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        line = await asyncio.wait_for(asyncio.to_thread(stdout.readline), seconds)
        if line.strip() != b"ready":
            raise RuntimeError(f"the second replica did not start: {line!r}")

    def go(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    async def result(self, seconds: float = 60) -> dict[str, Any]:
        assert self.proc is not None
        out, _ = await asyncio.to_thread(self.proc.communicate, None, seconds)
        return json.loads(out.decode().strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Heard:
    """The parent's listener hook: when each (user, version) was dropped from L1."""

    def __init__(self) -> None:
        self.at: dict[tuple[int, int], int] = {}

    def __call__(self, message: Any) -> None:
        if isinstance(message, UserChanged):
            self.at.setdefault((message.telegram_id, message.version), time.monotonic_ns())

    def delays_ms(self, commits: list[list[int]]) -> tuple[list[float], int]:
        """Delays of the commits heard, and how many were never heard."""
        delays, lost = [], 0
        for user, version, committed in commits:
            heard = self.at.get((user, version))
            if heard is None:
                lost += 1
            else:
                delays.append((heard - committed) / 1e6)
        return delays, lost


if __name__ == "__main__":
    # the parent's terminal is for the parent's report: errors only
    logging.basicConfig(level=logging.ERROR, format="replica %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    result = asyncio.run(_child(json.loads(sys.argv[1])))
    print(json.dumps(result), flush=True)
