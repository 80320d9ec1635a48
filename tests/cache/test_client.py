"""The Redis client every part of the bot uses (cache, FSM, locks): after a
restart, connections that died while idle are replaced before they fail a
command; a hung Redis is never waited for twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from cache.client import build_redis, round_trips
from cache.keys import SLOT_GROUPS, CacheKeys
from cache.settings import CacheSettings, RedisSettings
from tests.cache.proxy import TcpProxy
from tests.cache.redis_cluster import OwnCluster
from tests.cache.redis_server import OwnRedis


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    await server.start()
    yield server
    await server.stop()


async def test_pooled_connections_dead_after_a_restart_fail_no_command(server: OwnRedis) -> None:
    client = build_redis(RedisSettings(url=server.url), CacheSettings())
    try:
        await client.set("k", b"1")
        await server.stop()
        await server.start()  # same port, nothing saved: an empty Redis
        # nothing ran while Redis was away; the first commands after it came back succeed
        for _ in range(3):
            assert await client.get("k") is None
    finally:
        await client.aclose()


async def test_connections_lost_without_a_goodbye_are_replaced_at_once(
    server: OwnRedis,
) -> None:
    """Redis's host rebooted (or a firewall forgot the connections): the pooled
    connections look open until the first command on them is reset."""
    proxy = TcpProxy("127.0.0.1", server.port)
    await proxy.start()
    client = build_redis(RedisSettings(url=f"redis://127.0.0.1:{proxy.port}/0"), CacheSettings())
    try:
        await asyncio.gather(*(client.set(f"k{i}", b"1") for i in range(4)))  # 4 pooled
        await proxy.forget()
        for i in range(4):
            assert await client.get(f"k{i}") == b"1"
    finally:
        await client.aclose()
        await proxy.stop()


async def test_a_hung_redis_costs_one_timeout_not_two(server: OwnRedis) -> None:
    proxy = TcpProxy("127.0.0.1", server.port)
    await proxy.start()
    settings = CacheSettings(redis_timeout_ms=300)
    client = build_redis(RedisSettings(url=f"redis://127.0.0.1:{proxy.port}/0"), settings)
    try:
        await client.set("k", b"1")
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await client.get("k")
        assert time.monotonic() - started < 0.55  # one 300 ms timeout, not retried
    finally:
        await client.aclose()
        await proxy.stop()


async def test_health_check_pings_are_not_counted_as_the_updates_round_trips(
    server: OwnRedis,
) -> None:
    client = build_redis(
        RedisSettings(url=server.url), CacheSettings(redis_health_check_seconds=0.01)
    )
    try:
        await client.set("k", b"1")
        await asyncio.sleep(0.02)  # idle past the health check interval: the next use PINGs first
        counter = [0]
        token = round_trips.set(counter)
        try:
            assert await client.get("k") == b"1"
        finally:
            round_trips.reset(token)
        assert counter == [1]
    finally:
        await client.aclose()


async def test_a_cluster_client_counts_round_trips_like_one_redis(
    redis_cluster: OwnCluster,
) -> None:
    """RedisCluster takes no connection class, yet every request of an update
    is counted: a command to its master is one, a pipeline to two masters two."""
    client = build_redis(RedisSettings(url=redis_cluster.url, cluster=True), CacheSettings())
    keys = CacheKeys("rt")
    one, other = keys.snapshot(0), keys.snapshot(SLOT_GROUPS // 2)  # two masters apart
    try:
        await client.get(other)  # the slot map read, connections to both masters open
        await client.get(one)
        counter = [0]
        token = round_trips.set(counter)
        try:
            await client.set(one, b"1")
            assert await client.get(one) == b"1"
            assert counter == [2]
            pipe = client.pipeline(transaction=False)
            pipe.get(one)
            pipe.get(other)
            assert await pipe.execute() == [b"1", None]
            assert counter == [4]
        finally:
            round_trips.reset(token)
    finally:
        await client.aclose()
