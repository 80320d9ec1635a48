"""Counters of one replica's cache, read by the benchmark and the metrics endpoint.

Plain integers bumped in place: no locks (one event loop), no allocation on
the hot path. `as_dict()` is what an exporter reads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(slots=True)
class CacheCounters:
    # Reads, by where they were answered.
    l1_hits: int = 0
    l1_misses: int = 0
    l1_bypassed: int = 0  # L1 not trusted (listener down, breaker open, L1 off)
    l1_fills_skipped: int = 0  # an invalidation raced the read; not kept in L1
    l2_hits: int = 0
    l2_misses: int = 0  # no entry, a tombstone, another schema or generation
    l2_skipped: int = 0  # breaker open, or the listener not (yet) subscribed: straight to Postgres
    loads: int = 0  # SQL round trips
    load_joins: int = 0  # reads that shared an in-flight load (single flight)
    unknown_users: int = 0  # loads that found no user (never cached)
    # Writes to L2 by readers.
    fills: int = 0
    fills_refused: int = 0  # a newer version or generation was there: stale fill prevented
    fills_skipped: int = 0  # the load was too old to be written safely
    # Redis health.
    redis_errors: int = 0
    breaker_opens: int = 0
    # Invalidations.
    invalidations_sent: int = 0  # user events applied to L2 and published
    invalidations_received: int = 0  # user events heard by the listener (own ones too)
    invalidations_pending: int = 0  # waiting for Redis to come back
    invalidations_overflowed: int = 0  # not kept (pending_limit); a reset follows
    publish_failures: int = 0
    generation_resets: int = 0  # resets this replica made
    generation_changes: int = 0  # generations this replica switched to
    redis_runs_disowned: int = 0  # a Redis not the entries' own (restarted, failed over) found
    # Listener.
    listener_state: str = "stopped"  # stopped | connecting | subscribed | disconnected
    listener_connects: int = 0
    listener_disconnects: int = 0
    listener_bad_messages: int = 0

    def as_dict(self) -> dict[str, int | str]:
        return dataclasses.asdict(self)

    @property
    def l1_hit_ratio(self) -> float:
        reads = self.l1_hits + self.l1_misses + self.l1_bypassed
        return self.l1_hits / reads if reads else 0.0
