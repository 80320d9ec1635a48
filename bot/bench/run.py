"""One mode of the benchmark, start to finish: build the replica, welcome the
users, warm up, measure, take it apart."""

from __future__ import annotations

import asyncio
import gc
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from bot.bench import data as bench_data
from bot.bench.arrivals import closed_loop, open_loop, replay, trader_count, workload_of
from bot.bench.figures import cache_figures, curves, mode_figures
from bot.bench.harness import Harness
from bot.bench.meters import count_sql
from bot.bench.modes import Built, Mode, build, hot_query_times
from bot.bench.profile import Profile
from bot.bench.replica import Heard, ReplicaProcess, mode_prefix, split, start_replica
from bot.bench.servers import ServerTally, second_figures, server_figures
from bot.bench.watch import GcWatch, LogTally, gc_figures
from bot.bench.workload import BenchUser, Mix
from bot.config import Config
from bot.sim.round_trip import RoundTrip
from bot.sim.telegram import FakeTelegram
from cache.snapshots import UserSnapshot
from db.events import UserChanged


@dataclass
class Plan:
    """What every mode shares."""

    config: Config
    numbers: list[int]  # the simulated users' numbers in the data set
    codes: dict[int, list[str]]  # a few of each user's deal codes
    rate: float
    seconds: float
    warmup: float
    concurrency: int
    prefix: str
    config_path: str | None
    replica_rate: float = 50.0
    rtt_ms: float = 40.0  # the Telegram double's median round trip (0: none)
    mix: Mix = field(default_factory=Mix)
    trace: list[tuple[int, int, bool, str, int]] | None = None
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    cluster: Config | None = None  # the `cluster` mode's: a Redis Cluster, a primary and standby
    logs: LogTally = field(default_factory=LogTally)
    profile: Path | None = None  # where py-spy's stacks of each measured window go


def round_trip(plan: Plan, mode: Mode) -> RoundTrip | None:
    """The double's round trip for `mode` (seeded by the mode's name), or none."""
    if not plan.rtt_ms or not mode.round_trip:
        return None
    return RoundTrip(median_ms=plan.rtt_ms, seed=zlib.crc32(mode.name.encode()))


class Phase:
    """What the progress bar shows."""

    def __init__(self) -> None:
        self.mode = self.label = ""
        self.seconds = 0.0
        self.started = time.monotonic()
        self.harness: Harness | None = None

        self.walls: dict[str, dict[str, float]] = {}

    def set(self, mode: str, label: str, seconds: float = 0.0) -> None:
        now = time.monotonic()
        if self.mode:
            walls = self.walls.setdefault(self.mode, {})
            walls[self.label] = round(walls.get(self.label, 0.0) + now - self.started, 2)
        self.mode, self.label, self.seconds = mode, label, seconds
        self.started = now


async def _welcome(users: list[BenchUser]) -> None:
    for start in range(0, len(users), 50):
        await asyncio.gather(*(user.welcome() for user in users[start : start + 50]))


def _hooks(built: Built, harness: Harness, heard: Heard) -> None:
    """Tell the harness whose snapshot changed (a first read after a change is a
    refill) and which loads were Redis failures' fallback to Postgres."""
    app = built.app
    if app is None:
        return

    def on_event(message: object) -> None:
        if isinstance(message, UserChanged):
            harness.user_changed(message.telegram_id)

    app.cache.listener.on_event.extend((on_event, heard))
    publisher = app.services.ctx.events
    original = publisher.publish

    async def publish(events: tuple) -> None:
        for event in events:
            if isinstance(event, UserChanged):
                harness.user_changed(event.telegram_id)
        await original(events)

    publisher.publish = publish  # type: ignore[method-assign]
    snapshots = app.cache.cache
    loader, fill = snapshots.loader, snapshots.script.fill

    async def load(telegram_id: int) -> UserSnapshot | None:
        # Nothing is awaited between the cache's Redis attempt (failed, or
        # skipped by the open breaker) and this call: the state is that read's.
        harness.loading(telegram_id, redis_down=not snapshots.breaker.closed)
        return await loader(telegram_id)

    async def fill_l2(telegram_id: int, *args: Any) -> tuple[int, int]:
        try:
            result = await fill(telegram_id, *args)
        except BaseException:
            harness.filled(telegram_id, ok=False)
            raise
        harness.filled(telegram_id, ok=True)
        return result

    snapshots.loader = load
    snapshots.script.fill = fill_l2  # type: ignore[method-assign]


async def run_mode(plan: Plan, mode: Mode, index: int, phase: Phase) -> dict[str, Any]:
    base = plan.cluster if mode.topology and plan.cluster is not None else plan.config
    settings = base.database
    cache = msgspec.structs.replace(base.cache, key_prefix=mode_prefix(plan, index))
    config = msgspec.structs.replace(base, cache=cache)
    extra: dict[str, Any] = {}
    plan.logs.take()
    if mode.drop_indexes:
        phase.set(mode.name, "dropping indexes")
        await bench_data.drop_seed_indexes(settings)
        currency = config.currency_table().codes[0]
        extra["hot_queries_ms"] = await hot_query_times(settings, currency)
    built: Built | None = None
    replica: ReplicaProcess | None = None
    removers = []
    try:
        phase.set(mode.name, "starting")
        telegram = FakeTelegram(keep_log=False, latency=round_trip(plan, mode))
        built = await build(mode, config, telegram)
        harness = phase.harness = Harness(telegram, built.bot, built.dispatcher)
        removers = [count_sql(engine) for engine in built.engines]
        heard = Heard()
        _hooks(built, harness, heard)
        numbers = split(plan, mode)[0]
        users = [
            BenchUser(harness, i, number, plan.codes.get(number, ()))
            for i, number in enumerate(numbers)
        ]
        harness.writers = {user.id for user in users[: trader_count(len(users))]}
        if mode.second:
            # started now, not earlier: its start-up (seconds of imports) would
            # take the CPU from the modes measured meanwhile
            phase.set(mode.name, "second process")
            replica = start_replica(plan, mode, index)
            await replica.ready()
        if mode.second == "serves":
            assert replica is not None
            replica.go()  # it welcomes its users, warms up and measures as this one does
        phase.set(mode.name, "welcome", 0)
        await _welcome(users)
        drive, pairs = _driver(plan, mode, harness, users)
        phase.set(mode.name, "warm-up", plan.warmup)
        await drive(plan.warmup, warmup=True)
        counters = built.app.cache.cache.counters if built.app else None
        before = counters.as_dict() if counters else None
        gc.collect()
        if mode.freeze_gc:
            gc.freeze()
        else:
            gc.unfreeze()
        started = time.perf_counter()
        gc.collect()
        full_ms = (time.perf_counter() - started) * 1000
        harness.measuring = True
        if plan.trace is None and mode.name == "normal":
            harness.start_trace()
        if mode.second == "deposits":
            assert replica is not None
            replica.go()
        phase.set(mode.name, "measure", plan.seconds)
        app = built.app
        tally = ServerTally(
            settings, *((app.cache.cache.redis, app.database.standby) if app else ())
        )
        at_start = await tally.read()
        profile = Profile(plan.profile / f"profile-{mode.name}.txt") if plan.profile else None
        if profile is not None:
            await profile.start()
        with GcWatch() as watch:
            sent = await drive(plan.seconds, warmup=False)
        harness.measuring = False
        if profile is not None:
            extra["profile"] = await profile.stop(len(harness.samples))
        window = (at_start, await tally.read(), len(harness.samples), harness.samples.writes())
        servers = server_figures(*window)
        await tally.aclose()
        if harness.trace is not None:
            plan.trace = harness.trace
        figures = mode_figures(harness.samples)
        figures.update(
            description=mode.what,
            loop=mode.loop,
            source=mode.source,
            seconds=round(sent, 3),
            rate=_rate(plan, mode) if mode.loop == "open" else None,
            round_trip=telegram.latency is not None,
            concurrency=_concurrency(plan, mode) if mode.loop == "closed" else None,
            dropped=harness.dropped,
            max_inflight=harness.max_inflight,
            gc=gc_figures(watch, mode.freeze_gc, full_ms),
            log=plan.logs.take(),
            servers=servers,
            **extra,
        )
        if counters is not None and before is not None:
            figures["cache"] = cache_figures(before, counters.as_dict())
        if built.seed is not None:
            figures["seed_snapshot_driver"] = built.seed.driver
        if pairs:
            figures["deals_completed"] = sum(p.deals for p in pairs)
            figures["flow_resets"] = sum(p.resets for p in pairs)
        if replica is not None:
            phase.set(mode.name, "replica")
            second_figures(figures, await replica.result(), heard, mode.loop, window)
        plan.curves[mode.name] = curves(harness.samples)
        return figures
    finally:
        phase.harness = None
        if replica is not None:
            replica.kill()
        for remove in removers:
            remove()
        if built is not None:
            await built.aclose()
        gc.unfreeze()
        if mode.drop_indexes:
            phase.set(mode.name, "rebuilding indexes")
            await bench_data.restore_indexes(settings)


def _rate(plan: Plan, mode: Mode) -> float:
    """Open-loop arrivals per second in this process (two serving share --rate)."""
    return plan.rate / 2 if mode.second == "serves" else plan.rate


def _concurrency(plan: Plan, mode: Mode) -> int:
    """Closed-loop users in this process (two serving share --concurrency)."""
    return max(1, plan.concurrency // 2) if mode.second == "serves" else plan.concurrency


def _driver(plan: Plan, mode: Mode, harness: Harness, users: list[BenchUser]):
    """How this mode sends updates, and the trading pairs (none when replaying)."""
    if mode.loop == "replay":
        trace = plan.trace or []

        async def drive_replay(seconds: float, *, warmup: bool) -> float:
            if warmup:  # the first seconds of the trace, unmeasured
                cut = int(seconds * 1e9)
                return await replay(harness, users, [t for t in trace if t[0] < cut])
            return await replay(harness, users, trace)

        return drive_replay, []
    currencies = plan.config.currency_table()
    money = currencies[currencies.codes[0]]
    workload = workload_of(users, money, plan.mix, seed=zlib.crc32(mode.name.encode()))

    async def drive(seconds: float, *, warmup: bool) -> float:
        if mode.loop == "closed":
            return await closed_loop(workload.arrival, _concurrency(plan, mode), seconds)
        return await open_loop(harness, workload.arrival, _rate(plan, mode), seconds)

    return drive, workload.pairs
