"""The servers the benchmark's `cluster` mode runs on, started for the run and
removed after it: a Redis Cluster of three masters with a replica each, and a
Postgres primary with a streaming hot standby, on free loopback ports in one
temporary folder. The machine's own Postgres allows no replication, so the
pair is made with `initdb` and `pg_basebackup` (as the `postgres` OS user when
run as root); unlike the tests' pair it keeps fsync on, as production does,
so its commits and WAL cost what they would. The tests start their own
servers (tests/cache/redis_cluster.py, tests/postgres_standby.py), with
proxies and faults the benchmark has no use for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis

from bot.bench import data as bench_data
from bot.config import Config
from cache.settings import RedisSettings

MASTERS, REPLICAS_EACH = 3, 1
SUPERUSER, DATABASE, OS_USER = "root", "escrow", "postgres"
PRIMARY_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{dir}'
wal_level = replica
max_wal_senders = 4
wal_keep_size = '1GB'
hot_standby = on
max_connections = 200
shared_buffers = '256MB'
log_min_messages = warning
"""
STANDBY_CONF = "port = {port}\nunix_socket_directories = '{dir}'\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postgres_bin() -> Path:
    installed = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    if installed:
        return max(installed, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    found = shutil.which("initdb")
    if found is None:
        raise RuntimeError("initdb is needed for the cluster mode's Postgres pair")
    return Path(found).parent


class Topology:
    """`await start()`, then `redis_url` (a seed node), `primary_url` and
    `standby_url` (database `escrow`: the benchmark creates its own there);
    `stop()` kills everything and removes the folder."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="escrow-bench-topology-"))
        self.redis_ports = [free_port() for _ in range(MASTERS * (1 + REPLICAS_EACH))]
        self.bus_ports = [free_port() for _ in self.redis_ports]  # not port + 10000: may not fit
        self.primary_port, self.standby_port = free_port(), free_port()
        self._redis: list[subprocess.Popen[bytes]] = []
        self._postgres: list[Path] = []
        self._bin = _postgres_bin()
        self._as_root = os.geteuid() == 0

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_ports[0]}/0"

    def _pg_url(self, port: int) -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"

    @property
    def primary_url(self) -> str:
        return self._pg_url(self.primary_port)

    @property
    def standby_url(self) -> str:
        return self._pg_url(self.standby_port)

    async def start(self) -> None:
        try:
            await self._start_cluster()
            await asyncio.to_thread(self._start_pair)
        except BaseException:
            self.stop()
            raise

    # -- Redis Cluster ---------------------------------------------------------------

    async def _start_cluster(self) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError("redis-server and redis-cli are needed for the cluster mode")
        for port, bus in zip(self.redis_ports, self.bus_ports, strict=True):
            folder = self.root / f"redis{port}"
            folder.mkdir()
            self._redis.append(
                subprocess.Popen(  # noqa: ASYNC220 - started and left running, not waited on
                    [
                        server,
                        "--port",
                        str(port),
                        "--cluster-port",
                        str(bus),
                        "--bind",
                        "127.0.0.1",
                        "--dir",
                        str(folder),
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.redis_ports:
            await _until(lambda p=port: _redis_answers(p), "a Redis Cluster node to start")
        create = await asyncio.create_subprocess_exec(
            cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.redis_ports),
            "--cluster-replicas", str(REPLICAS_EACH), "--cluster-yes",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await create.communicate()
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {output.decode()[-1000:]}")
        for port in self.redis_ports:
            await _until(lambda p=port: _node_ready(p), "the Redis Cluster to be ready")

    # -- Postgres primary and standby -----------------------------------------------

    def _run(self, *args: str) -> str:
        command = ["runuser", "-u", OS_USER, "--", *args] if self._as_root else list(args)
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr or done.stdout}")
        return done.stdout

    def _start_pair(self) -> None:
        pg = self.root / "pg"
        pg.mkdir()
        if self._as_root:
            user = pwd.getpwnam(OS_USER)
            os.chmod(self.root, 0o755)  # (mkdtemp's 0700 keeps the postgres user out)
            os.chown(pg, user.pw_uid, user.pw_gid)
        primary, standby = pg / "primary", pg / "standby"
        self._run(str(self._bin / "initdb"), "-D", str(primary), "-U", SUPERUSER,
                  "--auth=trust", "-E", "UTF8")  # fmt: skip
        with (primary / "postgresql.conf").open("a") as conf:
            conf.write(PRIMARY_CONF.format(port=self.primary_port, dir=primary))
        with (primary / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        self._pg_ctl(primary, "start")
        self._run(str(self._bin / "pg_basebackup"), "-R", "-X", "stream", "--checkpoint=fast",
                  "-D", str(standby), "-h", "127.0.0.1", "-p", str(self.primary_port),
                  "-U", SUPERUSER)  # fmt: skip
        with (standby / "postgresql.conf").open("a") as conf:
            conf.write(STANDBY_CONF.format(port=self.standby_port, dir=standby))
        self._pg_ctl(standby, "start")

    def _pg_ctl(self, data: Path, action: str) -> None:
        log = data.parent / f"{data.name}.log"
        if action == "start":
            self._run(str(self._bin / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "start")
            self._postgres.append(data)
        else:
            self._run(str(self._bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        for data in reversed(self._postgres):
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._pg_ctl(data, "stop")
        self._postgres.clear()
        for process in self._redis:
            process.kill()
            process.wait()
        self._redis.clear()
        shutil.rmtree(self.root, ignore_errors=True)


async def start_topology(config: Config, opts: dict[str, Any]) -> tuple[Topology, Config]:
    """The cluster mode's servers, started, and its configuration: the data set
    loaded into the primary (the standby replays it)."""
    print("cluster mode: a Redis Cluster and a Postgres primary with a standby", file=sys.stderr)
    topology = Topology()
    await topology.start()
    try:
        database = msgspec.structs.replace(
            config.database, url=topology.primary_url, read_url=topology.standby_url
        ).with_database(opts["database"])
        currencies = list(config.currency_table().codes)
        data = await bench_data.prepare(database, opts["data_users"], opts["deals"], currencies)
        print(f"  data set loaded there ({data.seconds:.1f} s)", file=sys.stderr)
    except BaseException:
        topology.stop()
        raise
    redis = RedisSettings(url=topology.redis_url, cluster=True)
    return topology, msgspec.structs.replace(config, database=database, redis=redis)


async def _redis_answers(port: int) -> bool:
    client = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    try:
        return bool(await client.ping())
    except (aioredis.RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def _node_ready(port: int) -> bool:
    """The cluster is served, and this node is a master or a synced replica."""
    client = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=1, decode_responses=True)
    try:
        state = (await client.execute_command("CLUSTER", "INFO")).split("cluster_state:")[1]
        if not state.startswith("ok"):
            return False
        replication = await client.info("replication")
        return replication["role"] == "master" or replication.get("master_link_status") == "up"
    except (aioredis.RedisError, OSError, IndexError):
        return False
    finally:
        await client.aclose()


async def _until(check, what: str, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)
