"""A second bot process for the benchmark's cross-replica figure.

The child builds its own replica (`build_app`) on the same Postgres and Redis
(same key prefix), and deposits into the given users' wallets through its
services at a steady rate. For every committed change it notes
time.monotonic_ns() right after the commit (when the services hand the events
to the publisher); the benchmark's process notes when its listener has dropped
the user from L1. CLOCK_MONOTONIC is one clock for every process on a Linux
machine, so the difference is the commit-to-invalidation delay.

    parent                         child (python -m bot.bench.replica)
    spawn ------------ argv ---->  build_app, read the users' snapshots
          <----------- "ready" --
          ------------ "go" ---->  deposit at --rate for --seconds
          <----------- JSON -----  {"commits": [[telegram_id, version, ns], ...]}
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import msgspec

from db.events import Event, UserChanged


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


async def _child(spec: dict[str, Any]) -> dict[str, Any]:
    from bot.config import load_config
    from bot.runtime.app import build_app
    from bot.sim.telegram import FakeTelegram

    config = load_config(spec["config"])
    config = msgspec.structs.replace(
        config,
        database=config.database.with_database(spec["database"]),
        cache=msgspec.structs.replace(config.cache, key_prefix=spec["prefix"]),
    )
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
        for telegram_id, version, committed in commits:
            heard = self.at.get((telegram_id, version))
            if heard is None:
                lost += 1
            else:
                delays.append((heard - committed) / 1e6)
        return delays, lost


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    result = asyncio.run(_child(json.loads(sys.argv[1])))
    print(json.dumps(result), flush=True)
