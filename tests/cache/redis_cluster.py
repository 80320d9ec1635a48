"""A Redis Cluster of the test session's own: three masters and three replicas
on free loopback ports, each in a temporary folder, created with `redis-cli
--cluster create` and stopped and removed when the session ends (even if it
fails). `cluster-node-timeout` is short, so a replica takes over from a
stopped master within about two seconds.

Every suite may use the `redis_cluster` fixture (session-scoped, offered by
tests/conftest.py, started on first use, one per session): `redis_cluster.url`
is a seed node's URL for `RedisSettings(cluster=True)`.
With CI set, a cluster that cannot be started fails the tests that need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.cache.proxy import ThreadedTcpProxy
from tests.cache.redis_server import free_port
from tests.conftest import unavailable

NODE_TIMEOUT_MS = 1000


class ClusterNode:
    """One redis-server of the cluster, behind a proxy of its own: the node
    announces the proxy's port, so every client goes through it, and a test
    can take the whole cluster away (`OwnCluster.stop_serving`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.bus_port = free_port()
        self.proxy = ThreadedTcpProxy("127.0.0.1", self.port)
        self.proxy.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    def client(self) -> aioredis.Redis:
        return aioredis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    async def start(self, binary: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            binary,
            "--port", str(self.port),
            "--cluster-port", str(self.bus_port),
            "--cluster-announce-port", str(self.proxy.port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.directory / "nodes.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
            "--repl-diskless-sync-delay", "0",
            "--save", "",
            "--appendonly", "no",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

    async def info(self, section: str) -> dict[str, object]:
        client = self.client()
        try:
            return await client.info(section)
        finally:
            await client.aclose()

    async def cluster_info(self) -> dict[str, str]:
        client = self.client()
        try:
            raw = await client.execute_command("CLUSTER", "INFO")
        finally:
            await client.aclose()
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)  # type: ignore[misc]

    async def kill(self) -> None:
        """Gone at once, as a crashed host: nothing saved, no goodbye."""
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGKILL)
            await process.wait()


class OwnCluster:
    def __init__(self, directory: Path, masters: int = 3, replicas_each: int = 1) -> None:
        self.directory = directory
        self.masters = masters
        self.nodes = [
            ClusterNode(directory / f"node{n}") for n in range(masters * (1 + replicas_each))
        ]
        self.replicas_each = replicas_each
        self.started_in = 0.0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].proxy.port}/0"

    async def stop_serving(self) -> None:
        """Every node out of reach: connects refused, open connections closed."""
        for node in self.nodes:
            await node.proxy.stop()

    async def resume_serving(self) -> None:
        for node in self.nodes:
            if not node.proxy.listening:
                await node.proxy.start()

    async def start(self) -> None:
        began = time.monotonic()
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError("redis-server and redis-cli are needed for a cluster")
        for node in self.nodes:
            await node.proxy.start()
            await node.start(server)
        for node in self.nodes:
            await self._until_pinged(node)
        create = await asyncio.create_subprocess_exec(
            cli,
            "--cluster", "create",
            *(f"127.0.0.1:{node.port}" for node in self.nodes),
            "--cluster-replicas", str(self.replicas_each),
            "--cluster-yes",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await create.communicate()
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {output.decode()[-2000:]}")
        await self.until_ok()
        await self.until_replicated()
        self.started_in = time.monotonic() - began

    async def until_replicated(self, seconds: float = 30) -> None:
        """Until every replica has synced with its master (one that never did
        cannot take over)."""
        async with asyncio.timeout(seconds):
            for node in self.running():
                while True:
                    info = await node.info("replication")
                    if info.get("role") == "master" or info.get("master_link_status") == "up":
                        break
                    await asyncio.sleep(0.05)

    @staticmethod
    async def _until_pinged(node: ClusterNode) -> None:
        client = node.client()
        try:
            async with asyncio.timeout(10):
                while True:
                    with contextlib.suppress(OSError, aioredis.RedisError):
                        if await client.ping():
                            return
                    await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    async def until_ok(self, seconds: float = 30) -> None:
        """Until every running node says cluster_state:ok, knows all the others
        and sees every slot served."""
        async with asyncio.timeout(seconds):
            while True:
                states = []
                for node in self.running():
                    with contextlib.suppress(OSError, aioredis.RedisError):
                        states.append(await node.cluster_info())
                if len(states) == len(self.running()) and all(
                    state.get("cluster_state") == "ok"
                    and state.get("cluster_slots_ok") == "16384"
                    and int(state.get("cluster_known_nodes", 0)) == len(self.nodes)
                    for state in states
                ):
                    return
                await asyncio.sleep(0.05)

    async def until_taken_over(self, gone: ClusterNode, seconds: float = 30) -> None:
        """Until every running node has a new master serving what `gone` did."""
        async with asyncio.timeout(seconds):
            while True:
                if await self._taken_over(gone):
                    break
                await asyncio.sleep(0.05)
        await self.until_ok(seconds)

    async def _taken_over(self, gone: ClusterNode) -> bool:
        for node in self.running():
            client = node.client()
            try:
                slots = await client.execute_command("CLUSTER", "SLOTS")
            except (OSError, aioredis.RedisError):
                return False
            finally:
                await client.aclose()
            if any(int(master[1]) == gone.proxy.port for _, _, master, *_ in slots):
                return False
        return True

    def running(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.process is not None]

    async def master_of(self, key: str) -> ClusterNode:
        """The node serving `key` now."""
        client = self.running()[0].client()
        try:
            slot = int(await client.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, master, *_ in await client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    port = int(master[1])
                    return next(node for node in self.nodes if node.proxy.port == port)
        finally:
            await client.aclose()
        raise LookupError(key)

    async def stop(self) -> None:
        for node in self.nodes:
            await node.kill()
            await node.proxy.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


STARTING = (OSError, RuntimeError, TimeoutError, aioredis.RedisError)


async def started_cluster(prefix: str, what: str) -> OwnCluster:
    """A started cluster in a folder of its own. A free port found is free
    only until something else binds it (another session starting servers at
    the same moment): a start that fails is tried once more, on new ports."""
    for attempt in (1, 2):
        cluster = OwnCluster(Path(tempfile.mkdtemp(prefix=prefix)))
        try:
            await cluster.start()
            return cluster
        except STARTING as exc:
            await cluster.stop()
            if attempt == 2:
                unavailable(what, exc)
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
async def redis_cluster() -> AsyncIterator[OwnCluster]:
    """A Redis Cluster for this session (3 masters, 3 replicas)."""
    cluster = await started_cluster("escrow-cluster-", "a Redis Cluster of the session's own")
    try:
        yield cluster
    finally:
        await cluster.stop()
