"""User snapshots cached in-process (L1) and in Redis (L2), kept consistent by
invalidation events published after commit. Never imports `bot/`.

- `snapshots`: UserSnapshot / WalletSnapshot and their wire format.
- `store`: SnapshotCache, the read-through (L1 → L2 → Postgres).
- `local`: L1, this process's bounded, short-lived copy of the snapshots.
- `invalidation`: the publisher (the services' EventSink); `listener`: every
  replica's listener; `channels`: the channels they use (one on one Redis, one
  per slot group on a Redis Cluster).
- `keys`: every key and channel name, in slot groups (Redis Cluster).
- `replica`: CacheReplica, the three wired together for one bot replica.
"""

from cache.invalidation import InvalidationPublisher
from cache.listener import InvalidationListener
from cache.replica import CacheReplica
from cache.settings import CacheSettings, RedisSettings
from cache.snapshots import UserSnapshot, WalletSnapshot
from cache.store import SnapshotCache

__all__ = [
    "CacheReplica",
    "CacheSettings",
    "InvalidationListener",
    "InvalidationPublisher",
    "RedisSettings",
    "SnapshotCache",
    "UserSnapshot",
    "WalletSnapshot",
]
