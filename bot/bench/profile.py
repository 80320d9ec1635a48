"""Where this process's CPU went while a mode was measured (`--profile`).

py-spy (the `bench` extra) samples this process from outside for the measured
window only; each sample the event loop was busy in is put down twice: to the
package its innermost frame runs (`spent_in`: aiogram, pydantic, SQLAlchemy,
asyncpg, redis-py, the product's own code, the event loop, the harness) and
to whose work it was (`owner`: the innermost frame of ours on the stack, the
product's or the harness's: the simulated users and the Telegram double, and
aiogram's dispatch of an update until a middleware or handler of ours runs).
Idle samples (the loop waiting on its sockets) are not counted, so the total
is the busy time; divided by the updates measured, microseconds per update,
comparable with the process's CPU per update in the servers' table.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

RATE = 250  # samples per second
HARNESS = ("bot/bench/", "bot/sim/")
OURS = ("bot/", "cache/", "db/")
ENTRY = ("bot/__main__.py",)  # under every sample: whose work is below it
PACKAGES = (  # (name, path prefixes), the first that matches
    ("harness", HARNESS),
    ("product", OURS),
    ("aiogram", ("aiogram/",)),
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("sqlalchemy", ("sqlalchemy/",)),
    ("asyncpg", ("asyncpg/",)),
    ("redis-py", ("redis/",)),
    ("msgspec", ("msgspec/",)),
    ("event loop", ("asyncio/", "uvloop/")),
    ("logging, metrics", ("logging/", "prometheus_client/", "structlog/")),
)
_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^():]+)(?::\d+)?\)$")


def _path(frame: str) -> str:
    match = _FRAME.match(frame)
    return match["path"] if match else ""


def package(path: str) -> str:
    for name, prefixes in PACKAGES:
        if path.startswith(prefixes):
            return name
    return "other"


def owner(paths: list[str]) -> str:
    """Whose work a stack (outermost first) was: its innermost frame of ours,
    or neither's (aiogram's dispatch of an update until a middleware of ours
    runs, the event loop's own)."""
    for path in reversed(paths):
        if path.startswith(HARNESS):
            return "harness"
        if path.startswith(OURS) and not path.startswith(ENTRY):
            return "product"
    return "dispatch"


def attribute(raw: str, *, rate: int, updates: int) -> dict[str, Any]:
    """py-spy's raw (collapsed) stacks to microseconds per update by package,
    by owner, both, and the product's busiest functions."""
    spent: Counter[str] = Counter()
    owners: Counter[str] = Counter()
    both: Counter[tuple[str, str]] = Counter()
    functions: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        paths = [_path(f) for f in frames]
        n = int(count)
        samples += n
        leaf, whose = package(paths[-1]), owner(paths)
        spent[leaf] += n
        owners[whose] += n
        both[(whose, leaf)] += n
        for frame, path in zip(reversed(frames), reversed(paths), strict=True):
            if path.startswith(HARNESS + ENTRY):
                break
            if path.startswith(OURS):
                functions[frame] += n  # the innermost product frame: its own and what it called
                break

    def us(n: int) -> float:
        return round(n / rate / max(updates, 1) * 1e6, 1)

    return {
        "rate": rate,
        "samples": samples,
        "busy_us_per_update": us(samples),
        "spent_in_us_per_update": {k: us(v) for k, v in spent.most_common()},
        "owner_us_per_update": {k: us(v) for k, v in owners.most_common()},
        "by_owner_and_package": {f"{o}/{p}": us(v) for (o, p), v in both.most_common()},
        "product_functions_us_per_update": {k: us(v) for k, v in functions.most_common(12)},
    }


class Profile:
    """py-spy recording this process from `start` until `stop`, its stacks
    kept in `out` (collapsed: one line per stack, for a flame graph)."""

    def __init__(self, out: Path) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._out = out
        out.parent.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def binary() -> str | None:
        here = Path(sys.executable).with_name("py-spy")
        return str(here) if here.exists() else shutil.which("py-spy")

    async def start(self) -> None:
        spy = self.binary()
        if spy is None:
            raise RuntimeError("--profile needs py-spy: pip install -e '.[bench]'")
        self._process = await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(os.getpid()), "--rate", str(RATE), "--nonblocking",
            "--format", "raw", "--output", str(self._out),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    async def stop(self, updates: int) -> dict[str, Any]:
        process = self._process
        assert process is not None
        try:
            process.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
            _, err = await asyncio.wait_for(process.communicate(), 30)
            if process.returncode and not self._out.stat().st_size:
                raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-400:]}")
            figures = attribute(self._out.read_text(), rate=RATE, updates=updates)
            errors = re.search(rb"Errors: (\d+)", err)
            figures["errors"] = int(errors[1]) if errors else None
            figures["stacks"] = str(self._out)
            return figures
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.kill()


def _n(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def profile_table(profiled: dict[str, dict[str, Any]]) -> tuple[str, list[str], list[list[str]]]:
    """µs of the process's busy time per update: whose work, spent in which package."""
    columns: list[str] = []
    for p in profiled.values():
        for key in p["by_owner_and_package"]:
            if key not in columns:
                columns.append(key)
    head = ["mode", "busy µs/upd", *(f"{k} µs/upd" for k in ("product", "harness", "dispatch"))]
    head += columns[:10]
    rows = [
        [name, _n(p["busy_us_per_update"])]
        + [_n(p["owner_us_per_update"].get(k)) for k in ("product", "harness", "dispatch")]
        + [_n(p["by_owner_and_package"].get(k)) for k in columns[:10]]
        for name, p in profiled.items()
    ]
    title = (
        "Where the process's busy time went (py-spy over the measured window; "
        "whose work/spent in; idle left out), µs per update"
    )
    return title, head, rows
