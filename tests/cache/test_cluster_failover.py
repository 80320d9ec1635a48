"""A Redis Cluster master killed mid-load, its replica taking over: no
invalidation that matters is lost.

Three cache replicas (the product's client and listener, `build_redis` with
`cluster = true`) over a cluster of the test's own (killing a master of the
session's cluster would change it for the tests after), a fake database whose
versions are the truth. One replica commits changes to 32 users (two per slot
group, so on every master) and publishes them; all three read the users over
and over. The master holding a third of the groups is killed (SIGKILL: no
goodbye, nothing saved) while this goes on.

The bound (docs/cache.md, "Staleness bounds"): once the cluster serves every
slot again, no replica serves a snapshot older than the database for longer
than `listener_backoff_max_seconds + 2 × listener_ping_seconds +
redis_timeout_ms` (the writer's listener finding the new master and sending
what it held back), and before that, no longer than the readers take to see
the master gone (its connections close at once; a silent one misses a PONG
within 2 × `listener_ping_seconds`). Checked read by read: a read returning
version v while the database had v' > v when the read began is stale since
v + 1 was committed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest

from cache.client import build_redis
from cache.keys import SLOT_GROUPS, CacheKeys
from cache.replica import CacheReplica
from cache.settings import RedisSettings
from tests.cache.conftest import FakeLoader, fast_settings
from tests.cache.redis_cluster import OwnCluster, started_cluster

USERS = [7_000 + n for n in range(2 * SLOT_GROUPS)]
SETTINGS = fast_settings(
    listener_ping_seconds=0.2,
    listener_backoff_max_seconds=0.5,
    breaker_open_seconds=0.3,
    redis_timeout_ms=200,
    tombstone_ttl_seconds=60,
)
AFTER_RECOVERY = (
    SETTINGS.listener_backoff_max_seconds
    + 2 * SETTINGS.listener_ping_seconds
    + SETTINGS.redis_timeout_ms / 1000
)
LATENCY = 0.1  # an invalidation's way to every listener, on a quiet cluster
SLACK = 0.5  # a loaded two-core machine's scheduling


@pytest.fixture
async def cluster() -> AsyncIterator[OwnCluster]:
    cluster = await started_cluster("escrow-failover-", "a Redis Cluster of the test's own")
    yield cluster
    await cluster.stop()


class Load:
    """Commits on the writer, reads on every replica, and what each read saw."""

    def __init__(self, loader: FakeLoader, replicas: list[CacheReplica]) -> None:
        self.loader = loader
        self.replicas = replicas
        self.committed: dict[tuple[int, int], float] = {}  # (user, version) -> when
        self.stale: list[tuple[float, float]] = []  # (when read, stale since)
        self.reads = 0
        self.commits = 0
        self.running = True

    async def write(self) -> None:
        writer = self.replicas[0]
        while self.running:
            user = random.choice(USERS)
            event = self.loader.commit(user, available=random.randrange(1_000))
            self.committed[(user, event.version)] = time.monotonic()
            self.commits += 1
            await writer.publisher.publish((event,))
            await asyncio.sleep(0.005)

    async def read(self, replica: CacheReplica) -> None:
        while self.running:
            user = random.choice(USERS)
            truth = self.loader.users[user].version
            snapshot = await replica.cache.get(user)
            self.reads += 1
            assert snapshot is not None
            if snapshot.version < truth:
                now = time.monotonic()
                self.stale.append((now, self.committed[(user, snapshot.version + 1)]))
            await asyncio.sleep(0.001)


async def test_a_master_killed_mid_load_loses_no_invalidation_that_matters(
    cluster: OwnCluster,
) -> None:
    loader = FakeLoader()
    for user in USERS:
        loader.add(user)
    replicas = []
    for _ in range(3):
        client = build_redis(RedisSettings(url=cluster.url, cluster=True), SETTINGS)
        replica = CacheReplica.build(client, loader, SETTINGS)
        replica._owned = (client,)
        await replica.start()
        assert replica.listener.state == "subscribed"
        replicas.append(replica)
    load = Load(loader, replicas)
    tasks = [asyncio.create_task(load.write())]
    tasks += [asyncio.create_task(load.read(replica)) for replica in replicas]
    try:
        await asyncio.sleep(1.0)  # warm: entries in L2 and L1 everywhere
        victim = await cluster.master_of(CacheKeys(SETTINGS.key_prefix).generations[0])
        disowned_before = sum(r.cache.counters.redis_runs_disowned for r in replicas)
        killed_at = time.monotonic()
        await victim.kill()
        await cluster.until_taken_over(victim)  # a replica took over its slots
        recovered_at = time.monotonic()
        await asyncio.sleep(3.0)  # the load goes on over the new master
        for task in tasks:
            assert not task.done(), task  # no read or write failed meanwhile
    finally:
        load.running = False
        await asyncio.gather(*tasks, return_exceptions=True)
    try:
        for task in tasks:
            task.result()  # a stale read's missing commit would fail here (KeyError)
        disowned = sum(r.cache.counters.redis_runs_disowned for r in replicas) - disowned_before
        failover = recovered_at - killed_at
        worst = max((read_at - since for read_at, since in load.stale), default=0.0)
        print(
            f"failover {failover:.2f} s, {load.commits} commits, {load.reads} reads, "
            f"{len(load.stale)} stale (worst {worst:.2f} s), cluster started in "
            f"{cluster.started_in:.2f} s"
        )
        # the writer met the dead master (its invalidations were held back) ...
        assert replicas[0].cache.counters.publish_failures >= 1
        # ... and what the promoted replica holds was disowned (by the first listener there)
        assert disowned >= 1
        detect = 2 * SETTINGS.listener_ping_seconds
        for read_at, since in load.stale:
            # stale only: just after the commit (its message on the way), while
            # the readers notice the master gone, or while the writer finds the
            # new one and sends what it held back
            assert (
                read_at - since <= LATENCY + SLACK
                or killed_at <= read_at <= killed_at + detect + SLACK
                or recovered_at <= read_at <= recovered_at + AFTER_RECOVERY + SLACK
            ), (read_at - killed_at, read_at - since)
            assert read_at - since <= failover + AFTER_RECOVERY + SLACK
        # and the cache agrees with the database everywhere once the load stops
        for replica in replicas:
            await replica.publisher.flush_pending()
        await asyncio.sleep(2 * SETTINGS.listener_ping_seconds)
        for replica in replicas:
            assert replica.listener.state == "subscribed"
            for user in USERS:
                snapshot = await replica.cache.get(user)
                assert snapshot is not None and snapshot.version == loader.users[user].version
    finally:
        for replica in replicas:
            await replica.aclose()
