"""`python -m bot run` with `[runtime] workers = 2`: two worker processes on one
webhook port (SO_REUSEPORT), each a replica with its own /metrics; SIGTERM
stops both after their updates, and a worker that dies takes the set down."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys

import aiohttp
import pytest

from tests.runtime.botapi import (
    ROOT,
    BotApiServer,
    message,
    output,
    replica_env,
    serving,
    start,
    stop,
)


def consecutive_free_ports() -> int:
    """A port p such that p and p + 1 are both free now."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise AssertionError("no two consecutive free ports")


def worker_pids(supervisor_pid: int) -> list[int]:
    children = f"/proc/{supervisor_pid}/task/{supervisor_pid}/children"
    with open(children) as listing:
        return [int(pid) for pid in listing.read().split()]


def gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}")


async def handled(http: aiohttp.ClientSession, side_port: int) -> int:
    """Updates a worker has handled, from its own /metrics."""
    async with http.get(f"http://127.0.0.1:{side_port}/metrics") as response:
        body = await response.text()
    counts = re.findall(r"^escrow_update_seconds_count\{[^}]*\} (\S+)$", body, re.M)
    return int(sum(float(count) for count in counts))


async def ready(http: aiohttp.ClientSession, side_port: int) -> None:
    for _ in range(600):
        try:
            async with http.get(f"http://127.0.0.1:{side_port}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"worker on side port {side_port} never became ready")


@pytest.fixture
async def api():
    server = BotApiServer()
    async with serving(server) as port:
        yield server, port


async def test_two_workers_share_the_port_and_stop_together(
    replica_config, api, tmp_path, database
):
    server, api_port = api
    side_port = consecutive_free_ports()
    port = consecutive_free_ports()
    log = tmp_path / "workers.log"
    run = await start(replica_config, api_port, log, ports=(port, side_port), runtime__workers="2")
    try:
        pids = worker_pids(run.process.pid)
        assert len(pids) == 2, output(log)
        async with aiohttp.ClientSession() as http:
            await ready(http, side_port + 1)  # the second worker's own side server
            # a new connection per update: the kernel spreads connections, not requests
            for user in range(90_001, 90_041):
                async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(force_close=True)
                ) as fresh:
                    assert await run.post(fresh, message(user, "/start")) == 200
            first, second = await handled(http, side_port), await handled(http, side_port + 1)
        # every update answered once, and both workers took some of them
        assert first + second == 40, output(log)
        assert first > 0 and second > 0, (first, second)
        assert len(server.methods("sendMessage")) == 40
        assert len(server.methods("setWebhook")) == 1  # once for the set, not per worker
    finally:
        code = await stop(run)
    logs = output(log)
    assert code == 0, logs
    assert all(gone(pid) for pid in pids), logs
    assert logs.count("stopped; pools closed") == 2, logs
    assert "Traceback" not in logs, logs


async def test_a_worker_that_dies_takes_the_set_down(replica_config, api, tmp_path, database):
    _, api_port = api
    side_port = consecutive_free_ports()
    log = tmp_path / "workers.log"
    run = await start(
        replica_config,
        api_port,
        log,
        ports=(consecutive_free_ports(), side_port),
        runtime__workers="2",
    )
    try:
        first, second = worker_pids(run.process.pid)
        os.kill(second, signal.SIGKILL)
        # not serving on with fewer workers: the other stops and the set exits non-zero
        code = await asyncio.wait_for(run.process.wait(), 30)
    finally:
        await stop(run)
    logs = output(log)
    assert code != 0, logs
    assert "exited (-9): stopping the others" in logs, logs
    assert gone(first), logs


async def test_workers_need_webhook_mode(replica_config, api):
    _, api_port = api
    env = replica_env(replica_config, api_port, consecutive_free_ports(), 0)
    env.update(ESCROW__RUNTIME__WORKERS="2", ESCROW__TELEGRAM__MODE="polling")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "workers = 2 needs webhook mode" in err.decode()
