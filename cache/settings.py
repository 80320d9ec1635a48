"""Settings of the Redis connection and the snapshot cache."""

from __future__ import annotations

from typing import Annotated

import msgspec


class RedisSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Empty: none configured (`run` starts an embedded Redis).
    url: str = "redis://127.0.0.1:6379/0"
    # Redis Cluster: `url` is any node's (the others are found from it).
    cluster: bool = False

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("url: must be a redis://, rediss:// or unix:// URL")
        if self.cluster and not self.url.startswith(("redis://", "rediss://")):
            raise ValueError("url: a cluster node's redis:// or rediss:// URL")


class CacheSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # In-process L1; 0 for either turns it off.
    l1_size: Annotated[int, msgspec.Meta(ge=0)] = 50_000
    l1_ttl_seconds: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    # Redis L2.
    l2_ttl_seconds: Annotated[int, msgspec.Meta(ge=1)] = 3600
    # Every key and the channel start with it, so deployments (and test
    # sessions) sharing one Redis never see each other's entries.
    key_prefix: Annotated[
        str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    ] = "escrow"
    # How long a version tombstone outlives its invalidation; a fill whose
    # load is older than half of this is not written (see cache/store.py).
    tombstone_ttl_seconds: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 60.0
    # Every Redis command (and connect) gives up after this: a slow Redis must
    # cost an update milliseconds, never seconds.
    redis_timeout_ms: Annotated[int, msgspec.Meta(ge=1, le=60_000)] = 250
    # A pooled connection idle longer than this is PINGed before it is used
    # (one that died while idle is replaced before it fails an update).
    redis_health_check_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0
    # After a Redis failure, reads go straight to Postgres for this long.
    breaker_open_seconds: Annotated[float, msgspec.Meta(gt=0, le=600)] = 2.0
    # The listener pings this often when idle; a missing PONG counts as a
    # disconnect (a silent network partition is noticed within ~2x this).
    listener_ping_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 1.0
    # Reconnect backoff of the listener: doubles from 50 ms up to this.
    listener_backoff_max_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    # Invalidations that could not reach Redis are kept (latest per user) and
    # sent when it is back; beyond this many the whole cache is reset instead.
    pending_limit: Annotated[int, msgspec.Meta(ge=0)] = 100_000
