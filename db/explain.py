"""EXPLAIN of a hot statement, and what its plan used: for the doctor and the tests.

The statements themselves are registered in `db.sql.hot`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncEngine

INDEX_SCANS = frozenset({"Index Scan", "Index Only Scan", "Bitmap Index Scan"})


@dataclass(frozen=True, slots=True)
class Sample:
    """Real values from the database the hot statements are explained against.

    The params of a statement are only meaningful if they hit rows: the test
    reads these from the data set it builds, and `doctor` picks what it can
    from the live database (the rest only shapes plans)."""

    user_id: int  # a party to many deals, as buyer and as seller, open and finished
    telegram_id: int  # that user's
    username: str  # that user's @username, lower-cased
    currency: str  # a configured currency (every user has a wallet in it)
    deal_id: int  # one of that user's finished deals; also a keyset cursor
    deal_code: str  # that deal's code
    invitee_telegram_id: int  # someone an active invitation is addressed to
    admin_id: int = 0  # an active admin (the admin reads check the reader's row)
    funded_deal_id: int = 0  # one of that user's funded deals, as buyer
    funded_deal_version: int = 1  # its version
    create_key: str = ""  # the key a deal of that user's was created with
    invitation_code: str = ""  # an active invitation's code
    invitee_username: str = ""  # an active invitation to an @username not on the bot
    withdrawal_id: int = 0  # a pending withdrawal
    withdrawer_id: int = 0  # its owner
    sending_withdrawal_id: int = 0  # a withdrawal the provider is paying
    creating_deposit_id: int = 0  # a deposit whose invoice is being created
    deposit_id: int = 0  # a deposit with an open invoice
    invoice_id: int = 0  # that invoice
    notification_id: int = 0  # a pending notification
    disputed_deal_id: int = 0  # a deal in dispute
    disputed_deal_code: str = ""  # its code
    disputer_id: int = 0  # its buyer
    evidence_id: int = 0  # a piece of evidence of a dispute
    provider: str = "cryptopay"


@dataclass(frozen=True, slots=True)
class HotQuery:
    name: str
    statement: Executable
    # The statement's parameters, built from sample values (see `Sample`).
    params: Callable[[Sample], dict[str, Any]]
    # Every index the plan must use (Index Scan, Index Only Scan or Bitmap Index Scan).
    indexes: tuple[str, ...]
    # Locks or writes: EXPLAIN without ANALYZE, which plans and does not run it.
    writes: bool = False
    # Tables its plan may read whole (each entry that has some says why).
    seq_scans: tuple[str, ...] = ()
    # Indexes only the generic plan of a prepared statement uses, on top of `indexes`.
    generic_indexes: tuple[str, ...] = ()

    def expected(self, *, generic: bool) -> set[str]:
        """Every index the plan for the parameters' values (or the generic plan) must use."""
        return {*self.indexes, *(self.generic_indexes if generic else ())}


def _literal(value: Any) -> str:
    """A parameter value as an SQL literal, for EXECUTE of a prepared statement."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        value = "{" + ",".join('"' + str(item) + '"' for item in value) + "}"
    return "'" + str(value).replace("'", "''") + "'"


async def explain(
    engine: AsyncEngine,
    statement: Executable,
    params: dict[str, Any],
    *,
    generic: bool = False,
    runs: int = 3,
    settings: dict[str, str] | None = None,
    analyze: bool = True,
) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of `statement`, run `runs` times; the fastest run.
    Without `analyze`, the plan alone: the statement is planned, not run (how a
    statement that locks or writes is explained), and there is no execution time.

    A custom plan is made for the parameters' values; a generic plan (forced
    with `generic`) is what a prepared statement settles on after five
    executions if it does not cost more, and has to prove a partial index
    serves the query without knowing the parameters. `settings` are planner
    settings for this connection only (e.g. enable_seqscan=off)."""
    compiled = statement.compile(dialect=engine.dialect)
    values = compiled.construct_params(params)
    args = [values[name] for name in compiled.positiontup or ()]
    options = (
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)" if analyze else "EXPLAIN (SUMMARY, FORMAT JSON)"
    )
    runs = runs if analyze else 1
    plans = []
    async with engine.connect() as conn:
        raw: asyncpg.Connection = (await conn.get_raw_connection()).driver_connection
        for name, value in (settings or {}).items():
            await raw.execute(f"SET {name} = {value}")
        if generic:
            await raw.execute(f"PREPARE hot AS {compiled}")
            await raw.execute("SET plan_cache_mode = force_generic_plan")
            execute = f"{options} EXECUTE hot({', '.join(_literal(arg) for arg in args)})"
        try:
            for _ in range(runs):
                if generic:
                    output = await raw.fetchval(execute)
                else:
                    output = await raw.fetchval(f"{options} {compiled}", *args)
                # SQLAlchemy's connections decode json already
                plans.append((json.loads(output) if isinstance(output, str) else output)[0])
        finally:
            if generic:
                await raw.execute("DEALLOCATE hot; RESET plan_cache_mode")
            if settings:
                await raw.execute("RESET ALL")
    return min(plans, key=lambda plan: plan.get("Execution Time", 0.0))


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def indexes_used(plan: dict[str, Any]) -> set[str]:
    return {node["Index Name"] for node in nodes(plan) if node["Node Type"] in INDEX_SCANS}


def seq_scanned(plan: dict[str, Any]) -> set[str]:
    return {node["Relation Name"] for node in nodes(plan) if node["Node Type"] == "Seq Scan"}


def scans(plan: dict[str, Any]) -> list[str]:
    """The plan's scan nodes, in a few words each."""
    return [
        " ".join(
            filter(
                None,
                (
                    node["Node Type"],
                    node.get("Scan Direction") == "Backward" and "Backward",
                    node.get("Index Name"),
                    node.get("Relation Name") and f"on {node['Relation Name']}",
                ),
            )
        )
        for node in nodes(plan)
        if "Scan" in node["Node Type"]
    ]
