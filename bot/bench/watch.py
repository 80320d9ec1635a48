"""What the benchmark watches besides the updates: garbage collector pauses and
log lines while a mode runs."""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

_now = time.perf_counter_ns


class GcWatch:
    """Pauses of the garbage collector, by generation, while it is on."""

    def __init__(self) -> None:
        self.pauses: list[list[int]] = [[], [], []]
        self._started = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = _now()
        else:
            self.pauses[info["generation"]].append(_now() - self._started)

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


class LogTally(logging.Filter):
    """Counts warnings and errors logged while a mode runs; lets only the first
    few of each kind through to the terminal."""

    def __init__(self, shown: int = 3) -> None:
        super().__init__()
        self.shown = shown
        self.counts: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.levelname} {record.name}: {record.msg}"[:160]
        if record.exc_info and record.exc_info[1] is not None:
            key += f" ({type(record.exc_info[1]).__name__})"
        self.counts[key] = self.counts.get(key, 0) + 1
        # warnings (slow updates, mostly) are only counted; errors are shown a
        # few times, in one line each (the JSON has the counts)
        if record.levelno < logging.ERROR or self.counts[key] > self.shown:
            return False
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.msg}: {record.exc_info[1]!r}"
            record.exc_info = record.exc_text = None
        return True

    def take(self) -> dict[str, int]:
        counts, self.counts = self.counts, {}
        return counts


def gc_figures(watch: GcWatch, frozen: bool, full_ms: float) -> dict[str, Any]:
    pauses = [p for generation in watch.pauses for p in generation]
    return {
        "frozen": frozen,
        "full_collection_ms": round(full_ms, 2),
        "collections": [len(g) for g in watch.pauses],
        "max_pause_ms_by_generation": [round(max(g, default=0) / 1e6, 3) for g in watch.pauses],
        "max_pause_ms": round(max(pauses, default=0) / 1e6, 3),
        "total_pause_ms": round(sum(pauses) / 1e6, 2),
    }
