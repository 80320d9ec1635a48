"""A Postgres primary with a streaming hot standby, of the tests' own.

The shared server on 5432 allows no replication, so the tests that read from
a standby start a pair once per session: `initdb` with superuser `root` and
trust on loopback (like the project's URLs), from the newest
/usr/lib/postgresql/*/bin (or ESCROW_TEST_PG_BIN), run as the `postgres` OS
user when the tests run as root; the primary with wal_level=replica, the
standby by `pg_basebackup -R`, each on a free loopback port with its data in
a temporary directory. Both are stopped and their directories removed at the
end, also when a test or the start-up failed. With CI set, a pair that does
not start fails the tests.

The fault tests stop and start the standby and pause its replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import msgspec
import pytest

from db.engine import DatabaseSettings
from db.standby import StandbyReads


def postgres_bin() -> Path:
    """ESCROW_TEST_PG_BIN, else the newest Debian-style install, else PATH's."""
    if chosen := os.environ.get("ESCROW_TEST_PG_BIN"):
        return Path(chosen)
    installed = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    if installed:
        return max(installed, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    found = shutil.which("initdb")
    return Path(found).parent if found else Path("/usr/lib/postgresql/15/bin")


BIN = postgres_bin()
# Postgres refuses to run as root: as root, the servers run as this OS user.
OS_USER = "postgres"
AS_ROOT = os.geteuid() == 0
SUPERUSER = "root"
DATABASE = "escrow"
START_TIMEOUT = 60
CHECK_MS = 25

PRIMARY_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{dir}'
wal_level = replica
max_wal_senders = 4
wal_keep_size = '256MB'
hot_standby = on
fsync = off
shared_buffers = '32MB'
max_connections = 150
log_min_messages = warning
"""
STANDBY_CONF = """
port = {port}
unix_socket_directories = '{dir}'
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(*args: str, timeout: float = START_TIMEOUT) -> str:
    done = subprocess.run(
        ["runuser", "-u", OS_USER, "--", *args] if AS_ROOT else list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr.strip() or done.stdout}")
    return done.stdout


class PostgresPair:
    """The pair's directories, ports and controls; `start()` brings both up."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="escrow-pg-pair-"))
        self.primary_dir = self.root / "primary"
        self.standby_dir = self.root / "standby"
        self.primary_port = free_port()
        self.standby_port = free_port()
        self.started: list[Path] = []

    def url(self, port: int, database: str = DATABASE) -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{port}/{database}"

    @property
    def primary_url(self) -> str:
        return self.url(self.primary_port)

    @property
    def standby_url(self) -> str:
        return self.url(self.standby_port)

    def start(self) -> None:
        if AS_ROOT:
            user = pwd.getpwnam(OS_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        _run(
            str(BIN / "initdb"),
            "-D",
            str(self.primary_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        with (self.primary_dir / "postgresql.conf").open("a") as conf:
            conf.write(PRIMARY_CONF.format(port=self.primary_port, dir=self.primary_dir))
        with (self.primary_dir / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        self._pg_ctl_start(self.primary_dir)
        self.psql(self.primary_port, f"CREATE DATABASE {DATABASE}", database="postgres")
        _run(
            str(BIN / "pg_basebackup"),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
            "-D",
            str(self.standby_dir),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.primary_port),
            "-U",
            SUPERUSER,
        )
        with (self.standby_dir / "postgresql.conf").open("a") as conf:
            conf.write(STANDBY_CONF.format(port=self.standby_port, dir=self.standby_dir))
        self.start_standby()

    def _pg_ctl_start(self, data_dir: Path) -> None:
        _run(
            str(BIN / "pg_ctl"),
            "-D",
            str(data_dir),
            "-l",
            str(self.root / f"{data_dir.name}.log"),
            "-w",
            "-t",
            str(START_TIMEOUT),
            "start",
        )
        if data_dir not in self.started:
            self.started.append(data_dir)

    def _pg_ctl_stop(self, data_dir: Path, mode: str = "fast") -> None:
        _run(str(BIN / "pg_ctl"), "-D", str(data_dir), "-m", mode, "-w", "stop")
        self.started.remove(data_dir)

    def start_standby(self) -> None:
        """Start the standby and wait until it has replayed what the primary has."""
        self._pg_ctl_start(self.standby_dir)
        self.wait_replayed()

    def stop_standby(self) -> None:
        """As a crash or a shut-down host does: at once, refusing connections."""
        self._pg_ctl_stop(self.standby_dir, "immediate")

    def wait_replayed(self, timeout: float = START_TIMEOUT) -> None:
        """Until the standby answers as a standby and has replayed the
        primary's WAL as it was when this was called."""
        target = self.psql(self.primary_port, "SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(RuntimeError):
                done = self.psql(
                    self.standby_port,
                    f"SELECT pg_is_in_recovery() AND pg_last_wal_replay_lsn() >= '{target}'",
                )
                if done == "t":
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standby did not replay up to {target}")
            time.sleep(0.05)

    async def pause_replay(self) -> None:
        """Pause replay, and wait until it has paused (a request only, at first)."""
        await self.execute(self.standby_port, "SELECT pg_wal_replay_pause()")
        for _ in range(1000):
            state = await self.execute(self.standby_port, "SELECT pg_get_wal_replay_pause_state()")
            if state == "paused":
                return
            await asyncio.sleep(0.01)
        raise RuntimeError(f"the standby's replay did not pause: {state}")

    async def resume_replay(self) -> None:
        await self.execute(self.standby_port, "SELECT pg_wal_replay_resume()")

    async def execute(self, port: int, statement: str) -> str:
        connection = await asyncpg.connect(
            host="127.0.0.1", port=port, user=SUPERUSER, database=DATABASE, timeout=5
        )
        try:
            return str(await connection.fetchval(statement))
        finally:
            await connection.close()

    def psql(self, port: int, statement: str, database: str = DATABASE) -> str:
        return _run(
            str(BIN / "psql"),
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            SUPERUSER,
            "-d",
            database,
            "-c",
            statement,
            timeout=10,
        ).strip()

    def stop(self) -> None:
        """Stop what runs (the standby first) and remove both directories."""
        for data_dir in reversed(list(self.started)):
            with contextlib.suppress(Exception):
                self._pg_ctl_stop(data_dir, "immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def standby_settings(settings: DatabaseSettings, pair: PostgresPair) -> DatabaseSettings:
    """`settings` on the pair: the primary's database, reads on the standby,
    its replay checked often (a test waits for one check after each reset)."""
    return msgspec.structs.replace(
        settings,
        url=pair.primary_url,
        read_url=pair.standby_url,
        password="",
        read_lag_check_ms=CHECK_MS,
    )


async def replayed(standby: StandbyReads) -> None:
    """Until `standby` has passed a check that shows every commit made before
    this call replayed there (a wait, not a measure: generous for a busy machine)."""
    async with asyncio.timeout(30):
        await standby.watch.replayed_since(time.monotonic())


def start_pair() -> Iterator[PostgresPair]:
    """The body of the session fixture (tests/conftest.py registers it)."""
    from tests.conftest import unavailable

    pair = PostgresPair()
    try:
        if not (BIN / "pg_basebackup").exists():
            raise RuntimeError(f"no Postgres binaries in {BIN}")
        pair.start()
    except (OSError, RuntimeError, subprocess.SubprocessError, KeyError) as exc:
        pair.stop()
        unavailable("A Postgres primary with a hot standby", exc)
    try:
        yield pair
    finally:
        pair.stop()


@pytest.fixture(scope="session")
def postgres_pair() -> Iterator[PostgresPair]:
    yield from start_pair()


@pytest.fixture
def standby_pair(postgres_pair: PostgresPair) -> Iterator[PostgresPair]:
    """The pair for a test that stops the standby or pauses its replay: both
    running, streaming and replayed again after it."""
    yield postgres_pair
    if postgres_pair.standby_dir not in postgres_pair.started:
        postgres_pair.start_standby()
    postgres_pair.psql(postgres_pair.standby_port, "SELECT pg_wal_replay_resume()")
    postgres_pair.wait_replayed()
