"""How updates arrive: open loop (Poisson at a set rate, whatever the bot's
pace, so queueing shows), closed loop (each simulated user waits for the last
answer: the saturation throughput) and replay (another mode's updates at
their recorded times, for the floor)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from bot.bench.harness import ROUTE_NAMES, Harness
from bot.bench.workload import BenchUser, Mix, Pair, pairs_of
from bot.services.money import Currency

_now = time.perf_counter_ns


async def open_loop(
    harness: Harness,
    arrival: Callable[[int], Awaitable[None]],
    rate: float,
    seconds: float,
    *,
    max_inflight: int | None = None,
    seed: int = 2,
) -> float:
    """Poisson arrivals at `rate` per second for `seconds`, whatever the bot's
    pace (arrivals beyond `max_inflight` in flight are dropped and counted);
    then waits for what is in flight. The seconds it took to send them all.

    By default up to one second of arrivals may be in flight: past that the
    bot is hopelessly behind, and a longer queue only lengthens the run."""
    rng = random.Random(seed)
    max_inflight = max_inflight or max(100, int(rate))
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    start = _now()
    end = start + int(seconds * 1e9)
    due = start
    while due < end:
        now = _now()
        while due <= now and due < end:
            if harness.inflight < max_inflight:
                task = loop.create_task(arrival(due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            else:
                harness.dropped += 1
            due += int(rng.expovariate(rate) * 1e9) + 1
        await asyncio.sleep(max(0.0, (due - _now()) / 1e9))
    sent = (_now() - start) / 1e9
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    return sent


async def closed_loop(
    arrival: Callable[[int], Awaitable[None]], concurrency: int, seconds: float
) -> float:
    """`concurrency` users, each sending its next update as soon as the last is done."""
    start = _now()
    end = start + int(seconds * 1e9)

    async def worker() -> None:
        while (now := _now()) < end:
            await arrival(now)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (_now() - start) / 1e9


async def replay(
    harness: Harness, users: list[BenchUser], trace: list[tuple[int, int, bool, str, int]]
) -> float:
    """The recorded updates of another mode, at their recorded times."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[object]] = set()
    start = _now()
    for offset, index, press, payload, route_id in trace:
        due = start + offset
        delay = due - _now()
        if delay > 0:
            await asyncio.sleep(delay / 1e9)
        user = users[index]
        if press:
            shown = user.chat.messages.get(user.nav_id) or user.last
            update = user.callback(payload, shown.message)
        else:
            update = user.message(payload)
        task = loop.create_task(harness.feed(index, user.id, update, ROUTE_NAMES[route_id], due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sent = (_now() - start) / 1e9
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    return sent


# -- who does what at each arrival ---------------------------------------------------


def trader_count(users: int) -> int:
    """The first fifth of the users trade in pairs; the others navigate."""
    return max(2, users // 5) // 2 * 2 if users >= 10 else 0


def workload_of(users: list[BenchUser], money: Currency, mix: Mix, seed: int) -> Workload:
    """The first fifth of `users` trading in pairs, the others navigating."""
    traders = users[: trader_count(len(users))]
    pairs = pairs_of(traders, money, look=mix.trader_look)
    return Workload(users[len(traders) :], pairs, mix, seed=seed)


class Workload:
    """Picks who does what at each arrival."""

    def __init__(self, navigators: list[BenchUser], pairs: list[Pair], mix: Mix, seed: int = 1):
        self.navigators = navigators
        self.pairs = pairs
        self.mix = mix
        self.rng = random.Random(seed)
        total = mix.read + mix.card + mix.list
        self._read, self._card = mix.read / total, (mix.read + mix.card) / total

    async def arrival(self, sched: int) -> None:
        rng = self.rng
        if self.pairs and rng.random() < self.mix.trader:
            pair = _idle(self.pairs, rng)
            if pair is not None:
                return await pair.advance(sched, rng)
        user = _idle(self.navigators, rng) or rng.choice(self.navigators)
        r = rng.random()
        kind = "read" if r < self._read else "card" if r < self._card else "list"
        await user.navigate(kind, sched, rng)


def _idle(people: Sequence, rng: random.Random, tries: int = 8):
    for _ in range(tries):
        candidate = rng.choice(people)
        if not candidate.busy:
            return candidate
    return None
