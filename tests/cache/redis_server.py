"""A redis-server of a test's own: its own free port and data folder, so a test
may save it, stop it and start it again from its saved data (never the shared
Redis on 6379, which other sessions use)."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cache.client import no_retries
from tests.conftest import IN_CI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OwnRedis:
    """`start()` loads `dump.rdb` from `directory` if there is one, as a
    restarted Redis does; nothing is saved unless the test says `save()`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> aioredis.Redis:
        # No retries: a SHUTDOWN's closed connection is the answer, not a failure.
        return aioredis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=2, retry=no_retries()
        )

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed"
            if IN_CI:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        self._process = await asyncio.create_subprocess_exec(
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--dbfilename", "dump.rdb",
            "--save", "",
            "--appendonly", "no",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        client = self.client()
        try:
            async with asyncio.timeout(10):
                while True:
                    try:
                        if await client.ping():
                            return
                    except (OSError, aioredis.RedisError):
                        await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    async def save(self) -> None:
        client = self.client()
        try:
            await client.save()
        finally:
            await client.aclose()

    async def run_id(self) -> str:
        client = self.client()
        try:
            return str((await client.info("server"))["run_id"])
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """Stop without saving: what was saved last is what a start brings back."""
        process, self._process = self._process, None
        if process is None:
            return
        client = self.client()
        try:
            await client.shutdown(nosave=True)
        except (OSError, aioredis.RedisError):
            pass  # the connection closes as the server goes
        finally:
            await client.aclose()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
