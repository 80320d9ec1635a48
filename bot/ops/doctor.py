"""python -m bot doctor: is this deployment healthy and fast?

Checks that the database is at the migration head, EXPLAINs every hot statement
(db/sql/hot.py) with real values from the database and reports whether it
uses its index (a statement that locks or writes is planned, never run),
that the notification outbox is being worked off, and checks Redis, the
invalidation listener and a hot standby's replay. Exit code 0 only if every
check passes.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Config
from bot.ops import migrate
from bot.payments.cryptopay.amounts import to_minor_units
from bot.payments.cryptopay.client import CryptoPayClient
from bot.payments.cryptopay.errors import CryptoPayException
from bot.runtime.startup import redacted_url
from cache.client import build_redis
from cache.replica import CacheReplica
from db.engine import build_engine, build_standby
from db.explain import explain, indexes_used, scans, seq_scanned
from db.sql.hot import HOT_QUERIES, HotQuery, Sample
from db.sql.ops import LIABILITIES, OUTBOX, ROW_ESTIMATES, SAMPLE

# Below this many rows the planner rightly prefers a sequential scan; the
# index is then proven usable with sequential scans switched off.
SMALL_TABLE = 10_000


STUCK_AFTER = timedelta(minutes=1)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


async def sample_values(engine: AsyncEngine, currency: str) -> Sample:
    async with engine.connect() as conn:
        row = (await conn.execute(SAMPLE)).first()
    if row is None:  # an empty database: the plans still tell which index is used
        return Sample(0, 0, "nobody", currency, 0, "NONE", 0)
    return Sample(**row._mapping)


async def check_query(
    engine: AsyncEngine, query: HotQuery, sample: Sample, rows: dict[str, int]
) -> Check:
    params = query.params(sample)
    analyze = not query.writes
    result = await explain(engine, query.statement, params, runs=1, analyze=analyze)
    plan = result["Plan"]
    took = f"{result['Execution Time']:.3f} ms" if analyze else "planned"
    expected = query.expected(generic=False)
    missing = expected - indexes_used(plan)
    scanned = seq_scanned(plan)
    whole = scanned & {"escrows", "users", "wallets", "invitations"} - set(query.seq_scans)
    if not missing and not whole:
        return Check(query.name, True, f"{', '.join(sorted(expected))} · {took}")
    if all(rows.get(table, 0) < SMALL_TABLE for table in scanned):
        forced = await explain(
            engine,
            query.statement,
            params,
            runs=1,
            settings={"enable_seqscan": "off"},
            analyze=analyze,
        )
        if not expected - indexes_used(forced["Plan"]):
            return Check(
                query.name, True, f"{', '.join(sorted(expected))} usable (small tables scan)"
            )
    return Check(
        query.name, False, f"expected {', '.join(sorted(missing))}; plan: {'; '.join(scans(plan))}"
    )


async def run_doctor(config: Config) -> list[Check]:
    checks: list[Check] = []
    engine = build_engine(config.database)
    try:
        try:
            current = await migrate.current_revision(engine)
        except Exception as exc:  # unreachable, wrong credentials, no database
            return [Check("database", False, f"unreachable: {exc}")]
        head = migrate.head_revision()
        checks.append(
            Check("migrations", current == head, f"at {current or 'nothing'}, head is {head}")
        )
        if current == head:
            async with engine.connect() as conn:
                rows = {r.relname: r.rows for r in await conn.execute(ROW_ESTIMATES)}
            sample = await sample_values(engine, config.currency_table().codes[0])
            for query in HOT_QUERIES:
                checks.append(await check_query(engine, query, sample, rows))
            checks.append(await check_outbox(engine))
        checks.extend(await check_redis(config, engine))
        if config.database.read_url:
            checks.append(await check_standby(config))
        if config.payments.provider == "cryptopay" and current == head:
            checks.extend(await check_cryptopay(config, engine))
    finally:
        await engine.dispose()
    return checks


async def check_outbox(engine: AsyncEngine) -> Check:
    async with engine.connect() as conn:
        row = (await conn.execute(OUTBOX, {"stuck": STUCK_AFTER})).one()
    detail = f"{row.pending} pending"
    if row.stuck:
        detail += (
            f", {row.stuck} due for over {STUCK_AFTER.seconds // 60} min (oldest due "
            f"{row.oldest:%Y-%m-%d %H:%M:%S} UTC): is any replica running?"
        )
    return Check("notification outbox", not row.stuck, detail)


async def check_standby(config: Config) -> Check:
    """The `read_url` server replays this primary's WAL, within the lag bound."""
    standby = build_standby(config.database)
    assert standby is not None
    where = redacted_url(config.database.read_url)
    watch, bound = standby.watch, config.database.read_max_lag_ms
    try:
        # A check measures against the positions of the checks before it, and
        # a record the primary has not flushed yet (the background writer's)
        # reaches the standby a moment later: checked at the replicas' own
        # pace until within the bound, for at most the bound and two checks.
        give_up = time.monotonic() + bound / 1000 + 2 * watch.interval
        while True:
            await watch.check()
            lag_ms = 1000 * watch.lag()
            if lag_ms <= bound or time.monotonic() > give_up:
                break
            await asyncio.sleep(watch.interval)
        if math.isfinite(lag_ms):
            detail = f"replaying, at most {lag_ms:.0f} ms behind (bound {bound} ms) at {where}"
        else:
            detail = f"has replayed none of the primary's recent WAL (bound {bound} ms) at {where}"
        return Check("standby", lag_ms <= bound, detail)
    except Exception as exc:
        return Check("standby", False, f"not usable at {where}: {exc!r}")
    finally:
        await standby.aclose()


async def check_redis(config: Config, engine: AsyncEngine) -> list[Check]:
    redis = build_redis(config.redis, config.cache)
    where = redacted_url(config.redis.url)
    try:
        started = time.perf_counter()
        await redis.ping()
        took = 1000 * (time.perf_counter() - started)
        ping = Check("redis", True, f"PING {took:.2f} ms at {where}")
    except Exception as exc:
        return [Check("redis", False, f"unreachable at {where}: {exc!r}")]
    finally:
        await redis.aclose()
    replica = CacheReplica.from_settings(config.redis, config.cache, engine)
    try:
        started = time.perf_counter()
        await replica.start(wait_seconds=3)
        state = replica.listener.state
        listening = Check(
            "invalidation listener",
            state == "subscribed",
            f"{state} in {1000 * (time.perf_counter() - started):.1f} ms",
        )
    finally:
        await replica.aclose()
    return [ping, listening]


async def check_cryptopay(config: Config, engine: AsyncEngine) -> list[Check]:
    """Per currency: Crypto Pay's balance beside what the ledger owes users
    (and the fees); a balance below what users are owed is a shortfall."""
    currencies = config.currency_table()
    payments = config.payments
    client = CryptoPayClient(
        payments.cryptopay_token,
        base_url=payments.cryptopay_api_base,
        timeout=payments.cryptopay_timeout_seconds,
    )
    try:
        balances = {b.currency_code: b.available for b in await client.get_balance()}
    except CryptoPayException as exc:
        return [Check("crypto pay", False, f"unreachable: {exc}")]
    finally:
        await client.close()
    async with engine.connect() as conn:
        rows = await conn.execute(LIABILITIES, {"currencies": list(currencies.codes)})
        owed = {row.currency: (row.owed, row.fees) for row in rows}
    checks = []
    for money in currencies:
        users, fees = owed.get(money.code, (0, 0))
        held = to_minor_units(balances.get(money.code, 0), money.decimals, round_down=True)
        margin = held - users
        detail = (
            f"Crypto Pay {money.format(held)} · owed to users {money.format(users)} · "
            f"fees {money.format(fees)} · "
            + (
                f"margin {money.format(margin)}"
                if margin >= 0
                else f"SHORT {money.format(-margin)}"
            )
        )
        checks.append(Check(f"crypto pay {money.code}", margin >= 0, detail))
    return checks


def report(checks: list[Check]) -> str:
    width = max(len(check.name) for check in checks)
    lines = [f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}" for c in checks]
    failed = [c.name for c in checks if not c.ok]
    verdict = "healthy" if not failed else f"NOT healthy: {', '.join(failed)}"
    return "\n".join([*lines, "", f"verdict: {verdict}"])


async def doctor_command(config: Config) -> int:
    checks = await run_doctor(config)
    print(report(checks))
    return 0 if all(check.ok for check in checks) else 1


if __name__ == "__main__":  # pragma: no cover
    from bot.config import load_config

    raise SystemExit(asyncio.run(doctor_command(load_config())))
