"""Fixtures of the cache tests: Redis backends (fakeredis and the real server
behind a stoppable proxy), round-trip counting, a Postgres stand-in and two
cache replicas sharing one Redis.

Round trips are counted on the connection: every `send_packed_command` outside
the connection handshake is one request on the wire (a pipeline is one), and
the command names of each are recorded.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlparse

import msgspec
import pytest
import redis.asyncio as aioredis
from fakeredis import FakeServer
from fakeredis.aioredis import FakeAsyncRedisConnection, FakeRedis
from redis.asyncio import RedisCluster

from cache.client import no_retries
from cache.replica import CacheReplica
from cache.settings import CacheSettings
from cache.snapshots import CODEC, SnapshotCodec, UserSnapshot, WalletSnapshot
from db.events import UserChanged
from tests.cache.proxy import TcpProxy
from tests.cache.redis_cluster import OwnCluster

# -- counting round trips ----------------------------------------------------------


class RoundTrips:
    """The requests a client sent while recording: one tuple of command names each."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, ...]] = []
        self.recording = False

    def start(self) -> RoundTrips:
        self.requests.clear()
        self.recording = True
        return self

    def stop(self) -> list[tuple[str, ...]]:
        self.recording = False
        return list(self.requests)

    def take(self) -> list[tuple[str, ...]]:
        """What was sent since the last take, and keep recording."""
        taken = list(self.requests)
        self.requests.clear()
        self.recording = True
        return taken


def _name(command: Any) -> str:
    name = command.decode() if isinstance(command, bytes) else str(command)
    return name.upper()


def counting_connection(base: type[Any], trips: RoundTrips) -> type[Any]:
    class CountingConnection(base):  # type: ignore[misc, valid-type]
        _handshake = False
        _names: tuple[str, ...] = ()

        async def on_connect_check_health(self, *args: Any, **kwargs: Any) -> None:
            self._handshake = True
            try:
                await super().on_connect_check_health(*args, **kwargs)
            finally:
                self._handshake = False

        def pack_command(self, *args: Any) -> Any:
            self._names = (_name(args[0]),)
            return super().pack_command(*args)

        def pack_commands(self, commands: Any) -> Any:
            commands = list(commands)
            packed = super().pack_commands(commands)  # packs each with pack_command
            self._names = tuple(_name(args[0]) for args in commands)
            return packed

        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            if trips.recording and not self._handshake:
                trips.requests.append(self._names)
            await super().send_packed_command(command, check_health)

    return CountingConnection


# -- backends --------------------------------------------------------------------------


class Backend:
    """One Redis the replicas share, and ways to make it misbehave."""

    kind: str

    def client(self, trips: RoundTrips | None = None, name: str | None = None) -> aioredis.Redis:
        raise NotImplementedError

    async def stop_serving(self) -> None:
        raise NotImplementedError

    async def resume_serving(self) -> None:
        raise NotImplementedError

    async def kill_subscriber(self, name: str) -> int:
        """CLIENT KILL the pub/sub connections named `name`; how many."""
        admin = self.client()
        try:
            listing = await admin.client_list()
            ids = [c["id"] for c in listing if c.get("name") == name and self._subscriber(c)]
            for client_id in ids:
                await admin.execute_command("CLIENT", "KILL", "ID", client_id)
            return len(ids)
        finally:
            await admin.aclose()

    def _subscriber(self, client: dict[str, Any]) -> bool:
        return int(client.get("sub", 0)) > 0

    async def aclose(self) -> None:
        pass


class FakeBackend(Backend):
    kind = "fake"

    def __init__(self) -> None:
        self.server = FakeServer()

    def client(self, trips: RoundTrips | None = None, name: str | None = None) -> aioredis.Redis:
        base = FakeAsyncRedisConnection
        return FakeRedis(
            server=self.server,
            connection_class=counting_connection(base, trips) if trips else base,
            client_name=name,
            socket_timeout=0.2,
        )

    def _subscriber(self, client: dict[str, Any]) -> bool:
        return True  # fakeredis does not count subscriptions in CLIENT LIST

    async def stop_serving(self) -> None:
        self.server.connected = False

    async def resume_serving(self) -> None:
        self.server.connected = True


class RealBackend(Backend):
    kind = "real"

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.db = int(parsed.path.lstrip("/") or 0)
        self.proxy = TcpProxy(parsed.hostname or "127.0.0.1", parsed.port or 6379)

    async def start(self) -> None:
        await self.proxy.start()

    def client(self, trips: RoundTrips | None = None, name: str | None = None) -> aioredis.Redis:
        base = aioredis.Connection
        pool = aioredis.ConnectionPool(
            connection_class=counting_connection(base, trips) if trips else base,
            host="127.0.0.1",
            port=self.proxy.port,
            db=self.db,
            client_name=name,
            socket_timeout=0.2,
            socket_connect_timeout=0.2,
            retry=no_retries(),
        )
        return aioredis.Redis(connection_pool=pool)

    async def stop_serving(self) -> None:
        await self.proxy.stop()

    async def resume_serving(self) -> None:
        await self.proxy.start()

    async def aclose(self) -> None:
        await self.proxy.stop()


class ClusterBackend(Backend):
    """The session's Redis Cluster (tests/cache/redis_cluster.py): clients are
    RedisCluster clients, subscriptions sharded, and `stop_serving` takes
    every node away at once."""

    kind = "cluster"

    def __init__(self, cluster: OwnCluster) -> None:
        self.cluster = cluster

    def client(self, trips: RoundTrips | None = None, name: str | None = None) -> aioredis.Redis:
        seed = self.cluster.nodes[0].proxy.port
        client = RedisCluster(
            host="127.0.0.1",
            port=seed,
            client_name=name,
            # its first command reads the slot map and the command table (a
            # large reply), which a busy machine may take longer than 0.2 s with;
            # a node taken away refuses connects at once, so a connect waits
            # only on a busy machine (ten clients connecting at once: 0.2 s was
            # seen to run out)
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            retry=no_retries(),
        )
        if trips:
            connection_class = counting_connection(aioredis.Connection, trips)
            client.connection_kwargs["connection_class"] = connection_class
            for node in client.startup_nodes:
                node.connection_class = connection_class
        return client  # type: ignore[return-value]

    async def kill_subscriber(self, name: str) -> int:
        killed = 0
        for node in self.cluster.running():
            admin = node.client()
            try:
                for client in await admin.client_list():
                    if client.get("name") == name and int(client.get("ssub", 0)) > 0:
                        await admin.execute_command("CLIENT", "KILL", "ID", client["id"])
                        killed += 1
            finally:
                await admin.aclose()
        return killed

    async def stop_serving(self) -> None:
        await self.cluster.stop_serving()

    async def resume_serving(self) -> None:
        await self.cluster.resume_serving()

    async def aclose(self) -> None:
        await self.cluster.resume_serving()


@pytest.fixture(params=["fake", "real", "cluster"])
def backend_url(request: pytest.FixtureRequest) -> str | None:
    """None for fakeredis; the session's Redis database for the real server,
    or its cluster's seed node (requested only here, so the fakeredis half
    runs without a Redis)."""
    if request.param == "fake":
        return None
    if request.param == "cluster":
        cluster: OwnCluster = request.getfixturevalue("redis_cluster")
        return f"cluster+{cluster.url}"
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def backend(
    request: pytest.FixtureRequest, backend_url: str | None
) -> AsyncIterator[Backend]:
    if backend_url is None:
        yield FakeBackend()
        return
    if backend_url.startswith("cluster+"):
        cluster = ClusterBackend(request.getfixturevalue("redis_cluster"))
        yield cluster
        await cluster.aclose()
        return
    real = RealBackend(backend_url)
    await real.start()
    yield real
    await real.aclose()


# -- a Postgres stand-in ---------------------------------------------------------------


class FakeLoader:
    """Users by Telegram id; `commit()` changes one the way a transaction would
    (version + 1) and returns its event. `hold()` parks the next loads after
    they have read, to force interleavings."""

    def __init__(self) -> None:
        self.users: dict[int, UserSnapshot] = {}
        self.calls = 0
        self._hold: asyncio.Event | None = None
        self.holding = asyncio.Event()

    def add(self, telegram_id: int, available: int = 100) -> UserSnapshot:
        snapshot = UserSnapshot(
            id=telegram_id - 1000,
            telegram_id=telegram_id,
            username=f"user{telegram_id}",
            first_name="User",
            last_name=None,
            language_code="en",
            status="active",
            is_admin=False,
            version=1,
            wallets=(WalletSnapshot("USDT", available, 0),),
        )
        self.users[telegram_id] = snapshot
        return snapshot

    def commit(self, telegram_id: int, available: int) -> UserChanged:
        old = self.users[telegram_id]
        new = msgspec.structs.replace(
            old, version=old.version + 1, wallets=(WalletSnapshot("USDT", available, 0),)
        )
        self.users[telegram_id] = new
        return UserChanged(new.id, telegram_id, new.version)

    def hold(self) -> asyncio.Event:
        self._hold = asyncio.Event()
        self.holding.clear()
        return self._hold

    async def __call__(self, telegram_id: int) -> UserSnapshot | None:
        self.calls += 1
        snapshot = self.users.get(telegram_id)
        await asyncio.sleep(0)
        if self._hold is not None:
            gate, self._hold = self._hold, None
            self.holding.set()
            await gate.wait()
        return snapshot


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- replicas --------------------------------------------------------------------------


def fast_settings(**overrides: Any) -> CacheSettings:
    """Fast listener and breaker; a prefix of its own for every test."""
    values: dict[str, Any] = {
        "key_prefix": f"test-{secrets.token_hex(4)}",
        "l1_ttl_seconds": 30.0,
        "breaker_open_seconds": 1.0,
        "listener_ping_seconds": 0.05,
        "listener_backoff_max_seconds": 0.1,
        "redis_timeout_ms": 200,
    }
    values.update(overrides)
    return CacheSettings(**values)


class Node:
    """One replica under test: its cache, publisher, listener and counters."""

    def __init__(self, name: str, replica: CacheReplica, trips: RoundTrips, clients: list[Any]):
        self.name = name
        self.replica = replica
        self.cache = replica.cache
        self.publisher = replica.publisher
        self.listener = replica.listener
        self.trips = trips
        self.listener_name = f"{replica.cache.keys.prefix}-{name}-listener"
        self._clients = clients

    @property
    def publish(self) -> str:
        """The command an invalidation is published with (in a round trip's names)."""
        return "SPUBLISH" if self.cache.sharded else "PUBLISH"

    async def publish_raw(self, data: bytes, group: int = 0) -> None:
        """Publish `data` as an invalidation message of slot group `group`."""
        keys = self.cache.keys
        if self.cache.sharded:
            await self.cache.redis.spublish(keys.shard_channel(group), data)
        else:
            await self.cache.redis.publish(keys.channel, data)

    async def aclose(self) -> None:
        await self.replica.aclose()
        for client in self._clients:
            await client.aclose()


async def start_node(
    backend: Backend,
    name: str,
    loader: Callable[[int], Any],
    settings: CacheSettings,
    *,
    clock: Callable[[], float],
    codec: SnapshotCodec = CODEC,
) -> Node:
    trips = RoundTrips()
    client = backend.client(trips)
    listener_client = backend.client(name=f"{settings.key_prefix}-{name}-listener")
    replica = CacheReplica.build(
        client, loader, settings, listener_redis=listener_client, codec=codec, clock=clock
    )
    node = Node(name, replica, trips, [client, listener_client])
    await client.ping()  # the command connection exists before anything is counted
    replica.listener.start()
    async with asyncio.timeout(5):
        await replica.listener.wait_for("subscribed")
    return node


class Pair:
    def __init__(self, backend: Backend, loader: FakeLoader, clock: ManualClock) -> None:
        self.backend = backend
        self.loader = loader
        self.clock = clock
        self.settings = fast_settings()
        self.nodes: list[Node] = []

    async def node(self, name: str, **kwargs: Any) -> Node:
        node = await start_node(
            self.backend,
            name,
            self.loader,
            kwargs.pop("settings", self.settings),
            clock=self.clock,
            **kwargs,
        )
        self.nodes.append(node)
        return node

    async def aclose(self) -> None:
        for node in self.nodes:
            await node.aclose()


@pytest.fixture
async def pair(backend: Backend) -> AsyncIterator[Pair]:
    """Two (or more) replicas over one Redis and one fake database."""
    pair = Pair(backend, FakeLoader(), ManualClock())
    yield pair
    await pair.aclose()
