"""Settings of the Redis connection and the snapshot cache."""

from __future__ import annotations

from typing import Annotated

import msgspec


class RedisSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str = "redis://127.0.0.1:6379/0"

    def __post_init__(self) -> None:
        if not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("url: must be a redis://, rediss:// or unix:// URL")


class CacheSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    l1_size: Annotated[int, msgspec.Meta(ge=0)] = 50_000
    l1_ttl_seconds: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    l2_ttl_seconds: Annotated[int, msgspec.Meta(ge=1)] = 3600
