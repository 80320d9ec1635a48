"""What a running replica measures: Prometheus metrics and slow-update logs.

Per update: latency and time-to-answer by route, SQL statements and Redis
round trips (counted through context variables, so concurrent updates never
mix their counts). Read at scrape time: cache hits and misses by level,
invalidations, listener state, connection pool usage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from cache.metrics import CacheCounters
from db.standby import StandbyReads

log = logging.getLogger("bot.updates")

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
COUNT_BUCKETS = (0, 1, 2, 3, 4, 6, 8, 12)


@dataclass(slots=True)
class UpdateRecord:
    started_ns: int
    update_id: int | None = None
    route: str = "unhandled"
    sql: int = 0
    redis: list[int] = field(default_factory=lambda: [0])
    answered_ns: int | None = None
    waits: list[tuple[int, int]] = field(default_factory=list)
    """Each Bot API round trip the update waited on: (sent, replied), ns."""


current: ContextVar[UpdateRecord | None] = ContextVar("update_record", default=None)


class Metrics:
    def __init__(self, slow_update_ms: float = 50.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.slow_update_ns = int(slow_update_ms * 1e6)
        self.update_seconds = Histogram(
            "escrow_update_seconds",
            "Update handling time, from the dispatcher in to done",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.server_seconds = Histogram(
            "escrow_update_server_seconds",
            "Update handling time less the Bot API round trips it waited on",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.answer_seconds = Histogram(
            "escrow_time_to_answer_seconds",
            "Button presses: from the dispatcher in to answerCallbackQuery sent",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.sql_per_update = Histogram(
            "escrow_sql_statements_per_update",
            "SQL statements sent for one update",
            ["route"],
            buckets=COUNT_BUCKETS,
            registry=self.registry,
        )
        self.redis_per_update = Histogram(
            "escrow_redis_round_trips_per_update",
            "Redis requests sent for one update",
            ["route"],
            buckets=COUNT_BUCKETS,
            registry=self.registry,
        )
        self.telegram_errors = Counter(
            "escrow_telegram_api_errors",
            "Failed Bot API requests",
            ["method", "error"],
            registry=self.registry,
        )
        self.telegram_retries = Counter(
            "escrow_telegram_retry_after",
            "Bot API requests sent again: after a 429's retry_after, or after a 5xx",
            ["method"],
            registry=self.registry,
        )

        self.notifications = Counter(
            "escrow_notifications",
            "Notifications by who sent them (direct: right after the change; worker) and result"
            " (sent; pending: tried again later; undeliverable: the chat refuses the bot;"
            " failed: Telegram refused the request, or attempts ran out; obsolete)",
            ["path", "result"],
            registry=self.registry,
        )

    def read_at_scrape(
        self, name: str, documentation: str, label: str, read: Callable[[], Mapping[str, int]]
    ) -> None:
        """A counter kept by a component as plain ints (so it costs the hot path
        nothing), exported as `name{label=...}` whenever /metrics is scraped."""
        self.registry.register(ReadAtScrape(name, documentation, label, read))

    def watch(self, engine: AsyncEngine, counters: CacheCounters) -> None:
        """Count SQL per update; export the cache's counters and the pool."""
        if not event.contains(engine.sync_engine, "before_cursor_execute", _count_statement):
            event.listen(engine.sync_engine, "before_cursor_execute", _count_statement)
        self.registry.register(StateCollector(engine, counters))

    def watch_standby(self, standby: StandbyReads) -> None:
        """Export where the reads a standby may serve went, and its state; its
        statements count in the update's SQL like the primary's."""
        sync = standby.engine.sync_engine
        if not event.contains(sync, "before_cursor_execute", _count_statement):
            event.listen(sync, "before_cursor_execute", _count_statement)
        self.registry.register(StandbyCollector(standby))

    def finish(self, record: UpdateRecord) -> None:
        took = time.perf_counter_ns() - record.started_ns
        telegram = waited(record.waits)
        route = record.route
        self.update_seconds.labels(route).observe(took / 1e9)
        self.server_seconds.labels(route).observe((took - telegram) / 1e9)
        self.sql_per_update.labels(route).observe(record.sql)
        self.redis_per_update.labels(route).observe(record.redis[0])
        if record.answered_ns is not None:
            self.answer_seconds.labels(route).observe(
                (record.answered_ns - record.started_ns) / 1e9
            )
        if took - telegram >= self.slow_update_ns:  # Telegram's slowness is not the bot's
            log.warning(
                "slow update",
                extra={
                    "update": record.update_id,
                    "route": route,
                    "ms": round(took / 1e6, 3),
                    "telegram_ms": round(telegram / 1e6, 3),
                    "answer_ms": None
                    if record.answered_ns is None
                    else round((record.answered_ns - record.started_ns) / 1e6, 3),
                    "sql": record.sql,
                    "redis": record.redis[0],
                },
            )


def waited(intervals: list[tuple[int, int]]) -> int:
    """How long at least one of `intervals` was open: round trips awaited side
    by side hold the update up once, not twice."""
    if len(intervals) < 2:  # most updates: no round trip awaited, or one
        return intervals[0][1] - intervals[0][0] if intervals else 0
    total = 0
    reach = 0
    for start, end in sorted(intervals):
        start = max(start, reach)
        if end > start:
            total += end - start
            reach = end
    return total


def _count_statement(*args: Any) -> None:
    record = current.get()
    if record is not None:
        record.sql += 1


class ReadAtScrape(Collector):
    def __init__(
        self, name: str, documentation: str, label: str, read: Callable[[], Mapping[str, int]]
    ) -> None:
        self.name, self.documentation, self.label, self.read = name, documentation, label, read

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, count in self.read().items():
            family.add_metric([value], count)
        yield family


class StateCollector(Collector):
    """Read at scrape time: the cache's counters and the connection pool."""

    def __init__(self, engine: AsyncEngine, counters: CacheCounters) -> None:
        self.pool = engine.sync_engine.pool
        self.counters = counters

    def collect(self) -> Iterator[GaugeMetricFamily]:
        c = self.counters
        reads = GaugeMetricFamily(
            "escrow_cache_reads", "Snapshot reads by level and outcome", labels=["level", "outcome"]
        )
        for level, outcome, value in (
            ("l1", "hit", c.l1_hits),
            ("l1", "miss", c.l1_misses),
            ("l1", "bypassed", c.l1_bypassed),
            ("l2", "hit", c.l2_hits),
            ("l2", "miss", c.l2_misses),
            ("l2", "skipped", c.l2_skipped),
            ("postgres", "load", c.loads),
        ):
            reads.add_metric([level, outcome], value)
        yield reads
        invalidations = GaugeMetricFamily(
            "escrow_invalidations", "Invalidation events", labels=["direction"]
        )
        for direction, value in (
            ("sent", c.invalidations_sent),
            ("received", c.invalidations_received),
            ("pending", c.invalidations_pending),
        ):
            invalidations.add_metric([direction], value)
        yield invalidations
        listener = GaugeMetricFamily(
            "escrow_invalidation_listener_up", "1 while the listener is subscribed"
        )
        listener.add_metric([], 1 if c.listener_state == "subscribed" else 0)
        yield listener
        pool = GaugeMetricFamily("escrow_db_pool_connections", "Pool usage", labels=["state"])
        pool.add_metric(["checked_out"], self.pool.checkedout())  # type: ignore[attr-defined]
        pool.add_metric(["idle"], self.pool.checkedin())  # type: ignore[attr-defined]
        pool.add_metric(["overflow"], max(self.pool.overflow(), 0))  # type: ignore[attr-defined]
        yield pool


class StandbyCollector(Collector):
    """Read at scrape time: the hot standby's reads, state and lag."""

    def __init__(self, standby: StandbyReads) -> None:
        self.standby = standby

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        reads = CounterMetricFamily(
            "escrow_db_reads",
            "Reads a hot standby may serve, by where they went and why: standby/caught_up;"
            " primary/recent_write (the person's own write not replayed yet), lag (standby"
            " behind read_max_lag_ms), down (failed a check or a read), unheard (this replica"
            " cannot hear the others' writes), failed (the read failed on the standby), busy"
            " (its pool was in use), missing (a deal card not on the standby yet)",
            labels=["target", "reason"],
        )
        for (target, reason), count in sorted(self.standby.reads.items()):
            reads.add_metric([target, reason], count)
        yield reads
        watch = self.standby.watch
        yield GaugeMetricFamily(
            "escrow_db_standby_up", "1 while the standby passes its checks", value=int(watch.up)
        )
        lag = GaugeMetricFamily(
            "escrow_db_standby_lag_seconds",
            "How far the standby may be behind the primary (measured every read_lag_check_ms)",
        )
        lag.add_metric([], watch.lag())
        yield lag
