"""What the servers did while a mode was measured, read from their own
counters before and after the window: Redis's commands and network bytes
(every client's: the listeners' pub/sub traffic included), Postgres's WAL
bytes and commits, and the CPU time of this process (the bot, and the
benchmark's simulated users and Telegram double with it: the floor mode
measures those alone), of Redis (INFO cpu) and of every Postgres process on
this machine (/proc). These are the figures a capacity plan scales from
(docs/scaling.md). The servers' counters are server-wide: run the benchmark
on a quiet machine, or they count other clients too."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from redis.asyncio import Redis, RedisCluster

from bot.bench import data as bench_data
from bot.bench.figures import dist
from db.engine import DatabaseSettings
from db.sql.ops import WAL_AND_COMMITS
from db.standby import StandbyReads

if TYPE_CHECKING:
    from bot.bench.replica import Heard

REDIS_STATS = ("total_commands_processed", "total_net_input_bytes", "total_net_output_bytes")


class ServerTally:
    def __init__(
        self,
        settings: DatabaseSettings,
        redis: Redis | None = None,
        standby: StandbyReads | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.standby = standby  # with a hot standby: where its reads went, and why
        self._pg: asyncpg.Connection | None = None

    async def read(self) -> dict[str, int]:
        if self._pg is None:
            self._pg = await bench_data._connect(self.settings)
        out: dict[str, int] = {"process_cpu_us": int(time.process_time() * 1e6)}
        if self.redis is not None:
            nodes = await self._nodes("stats")
            out.update({key: sum(int(node[key]) for node in nodes) for key in REDIS_STATS})
            cpu = await self._nodes("cpu")
            used = sum(node["used_cpu_user"] + node["used_cpu_sys"] for node in cpu)
            out["redis_cpu_us"] = int(used * 1e6)
        if self.standby is not None:
            for (target, reason), count in self.standby.reads.items():
                out[f"reads:{target}:{reason}"] = count
        postgres = postgres_cpu_us()
        if postgres is not None:
            out["postgres_cpu_us"] = postgres
        row = await self._pg.fetchrow(WAL_AND_COMMITS)
        out["wal_bytes"], out["commits"] = int(row["wal"]), int(row["xact_commit"])
        return out

    async def _nodes(self, section: str) -> list[dict[str, Any]]:
        """INFO `section` of the one Redis, or of every node of a cluster."""
        if isinstance(self.redis, RedisCluster):
            every = await self.redis.info(section, target_nodes=RedisCluster.ALL_NODES)
            return list(every.values())
        assert self.redis is not None
        return [await self.redis.info(section)]

    async def aclose(self) -> None:
        if self._pg is not None:
            await self._pg.close()
            self._pg = None


def server_figures(
    before: dict[str, int], after: dict[str, int], updates: int, writes: int
) -> dict[str, Any]:
    """Totals over the window, per update, and WAL per write (full-page images
    after a checkpoint included: they are most of it on a big table)."""
    d = {key: after[key] - before.get(key, 0) for key in after if key in before or ":" in key}

    def per(key: str, count: int) -> float | None:
        return round(d[key] / count, 1) if key in d and count else None

    return {
        "totals": d,
        "redis_commands_per_update": per("total_commands_processed", updates),
        "redis_bytes_in_per_update": per("total_net_input_bytes", updates),
        "redis_bytes_out_per_update": per("total_net_output_bytes", updates),
        "wal_bytes_per_write": per("wal_bytes", writes),
        # CPU µs per update: this process, Redis, the machine's Postgres
        "process_cpu_us_per_update": per("process_cpu_us", updates),
        "redis_cpu_us_per_update": per("redis_cpu_us", updates),
        "postgres_cpu_us_per_update": per("postgres_cpu_us", updates),
        # every transaction of the database: a read in AUTOCOMMIT is one too
        "transactions_per_update": per("commits", updates),
        **standby_share(d),
    }


def standby_share(d: dict[str, int]) -> dict[str, Any]:
    """With a hot standby: the share of the reads it may serve that it served,
    and why the others went to the primary."""
    reads = {key: count for key, count in d.items() if key.startswith("reads:")}
    if not reads:
        return {}
    total = sum(reads.values())
    served = reads.get("reads:standby:caught_up", 0)
    primary = {key.split(":")[2]: n for key, n in reads.items() if key.startswith("reads:primary:")}
    return {
        "standby_reads": total,
        "standby_share": round(served / total, 4) if total else None,
        "standby_primary_because": {reason: n for reason, n in primary.items() if n},
    }


def postgres_cpu_us() -> int | None:
    """CPU time (user + system) of every process named postgres on this
    machine, in µs; None where /proc is not there to tell."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    ticks, total = os.sysconf("SC_CLK_TCK"), 0
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        name_end = text.rfind(")")
        if text[text.find("(") + 1 : name_end] != "postgres":
            continue
        fields = text[name_end + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total * 1_000_000 // ticks


def second_figures(
    figures: dict[str, Any],
    result: dict[str, Any],
    heard: Heard,
    loop: str,
    window: tuple[dict[str, int], dict[str, int], int, int],
) -> None:
    """The second process's part of a mode's figures: the invalidations this
    one heard of its commits, and, if it served too, its own figures, the
    two processes' throughput together (closed loop) and the servers'
    counters per update of both (the process's own CPU stays per its own)."""
    delays, lost = heard.delays_ms(result["commits"])
    figures["replication"] = {
        "commits": len(result["commits"]),
        "heard": len(delays),
        "lost": lost,
        "errors": result["errors"],
        "delay_ms": dist(delays),
    }
    if "figures" not in result:
        return
    second = figures["second_process"] = result["figures"]
    if loop == "closed":
        figures["throughput_both"] = round(figures["throughput"] + second["throughput"], 1)
    before, after, updates, writes = window
    served = updates + second["updates"]
    both = server_figures(before, after, served, writes + second["classes"]["write"]["count"])
    both["process_cpu_us_per_update"] = figures["servers"]["process_cpu_us_per_update"]
    both["served_by_both"] = served
    figures["servers"] = both
