"""Zero setup: with no database URL and no Redis URL, `run` starts an embedded
PostgreSQL and Redis (unix sockets only, data in a folder), local mode walks
through its deals on them, and both are stopped on exit."""

from __future__ import annotations

import msgspec
import psutil

from bot.config import Config
from bot.runtime.run import Replica
from cache.settings import RedisSettings


def servers_using(folder) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if str(folder) in " ".join(process.info["cmdline"] or ()):
            found.append(process)
    return found


async def test_no_urls_configured_runs_local_mode_on_embedded_servers(config: Config, tmp_path):
    folder = tmp_path / "embedded"
    unset = msgspec.structs.replace(
        config,
        database=msgspec.structs.replace(config.database, url=""),
        redis=RedisSettings(url=""),
        observability=msgspec.structs.replace(config.observability, http_port=0),
        runtime=msgspec.structs.replace(config.runtime, embedded_data_dir=str(folder)),
    )
    lines: list[str] = []
    replica = Replica(unset, out=lines.append)
    assert await replica.run() == 0

    # the configuration it ran with pointed at the embedded servers' sockets
    assert replica.config.database.url.endswith(f"?host={folder / 'postgres'}")
    assert replica.config.redis.url.startswith("unix://")
    shown = "\n".join(lines)
    assert shown.count("✅ Payment released to the seller.") == 2
    assert "Ada: ✂️ Settled by a split." in shown
    assert "Bob: 👛 Your wallet ⏎ USDT: 443.25 USDT available" in shown
    assert (folder / "postgres" / "PG_VERSION").exists()  # the data stays
    assert servers_using(folder) == []  # and the servers are gone
