"""A bounded randomized run: two `python -m bot run` webhook replicas, people
opening and settling deals through the buttons the bot shows them, while Redis
restarts and is flushed, pub/sub and Postgres connections are killed, a
replica is SIGKILLed and started again, and Telegram answers some calls with
429 or 500. Then, once quiet: the books balance, every wallet screen on either
replica shows Postgres's balances, every update was handled once, and nobody
was told "Something went wrong" or "Nothing was changed"."""

from __future__ import annotations

import asyncio
import os
import random
import re
import secrets
import time
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import aiohttp
import asyncpg
import pytest

from bot.config import Config
from bot.telegram import texts
from bot.telegram.handlers.errors import UNEXPECTED
from cache.settings import RedisSettings
from tests.cache.redis_server import OwnRedis
from tests.chaos.harness import (
    Faults,
    Person,
    Replicas,
    Stuck,
    Telegram,
    handled_counts,
    has,
    minor,
    offers,
    wallet_shown,
)
from tests.conftest import ADMIN_TELEGRAM_ID, unavailable
from tests.runtime.botapi import BotApiServer, serving, stop
from tests.runtime.botapi import Faults as TelegramFaults

pytestmark = pytest.mark.chaos

SEED = int(os.environ.get("CHAOS_SEED", "1010"))
RUN_SECONDS = 50.0
PAIRS = 4
FAULTS = 10
DOUBLE_PRESS = 0.15  # a press sent twice at once
SHORT_POST = 0.08  # a first POST Telegram gives up on early, then posts again
TELEGRAM_429, TELEGRAM_500 = 0.03, 0.03
# How long after a Redis restart or flush a redelivery may be handled twice: the
# breaker's open time and a lease
REDIS_AFTER = 2.0 + 1.0 + 0.5
ENDINGS = ("release", "cancel", "refund", "dispute_release", "dispute_refund")
SOMETHING_WRONG = UNEXPECTED.split("{")[0].split(".")[0]  # "😕 Something went wrong ..."

SETTINGS = {
    "runtime__outbox_grace_seconds": "2",
    "runtime__outbox_interval_seconds": "0.5",
    "runtime__outbox_retry_seconds": "1",
    "runtime__outbox_retry_max_seconds": "2",
    "runtime__jobs_interval_seconds": "5",
    "runtime__chat_send_per_second": "20",
    "runtime__chat_send_burst": "20",
    "observability__slow_update_ms": "0.001",  # every update logs its record
    "observability__log_format": "json",
    "runtime__lease_seconds": "1",
    # deposits credited on request (play money), allowed on purpose with a token
    "payments__provider": "demo",
    "payments__allow_demo": "true",
    # pairs open deal after deal, faster than a person may
    "escrow__deals_per_hour": "100000",
    "escrow__strangers_per_day": "100000",
}


class Run:
    """The people and what they did that the books must show."""

    def __init__(self, telegram: Telegram, rng: random.Random) -> None:
        self.telegram = telegram
        self.rng = rng
        self.admin = Person(telegram, ADMIN_TELEGRAM_ID, "Ada", "ada_admin")
        self.admin_lock = asyncio.Lock()
        tag = secrets.token_hex(2)
        self.people = [
            Person(telegram, 70_000_000 + i, f"P{i}", f"chaos{tag}_{i}") for i in range(2 * PAIRS)
        ]
        self.deposited = 0
        self.deals: dict[str, str] = {}  # code -> how it ended
        self.stuck: list[str] = []
        # forms Redis lost (restarted empty or flushed while one was open): the
        # person was told and started over, as the README says they must
        self.forms_lost: list[str] = []
        self.faults: Faults | None = None

    def lost_to_redis(self, exc: Stuck, since: float) -> bool:
        return exc.form_gone and self.faults is not None and self.faults.redis_lost_data(since)

    def double(self, rng: random.Random) -> bool:
        return rng.random() < DOUBLE_PRESS

    async def deposit(self, person: Person, amount: str, rng: random.Random) -> None:
        await person.send("/wallet", offers("➕ Deposit"))
        await person.press("➕ Deposit", offers("USDT"), double=self.double(rng))
        await person.press("USDT", has("Demo mode"))
        await person.send(amount, has("✅ Deposited"))
        self.deposited += minor(amount)

    async def card(self, person: Person, code: str) -> None:
        await person.send(f"/deal {code}", has(f"Deal #{code}"))

    async def open_deal(
        self, buyer: Person, seller: Person, amount: str, rng: random.Random
    ) -> str:
        await buyer.send("/new", offers("I'm buying"))
        await buyer.press("I'm buying", has("Who is the seller"))
        await buyer.send(f"@{seller.username}", offers("USDT"))
        await buyer.press("USDT", has("How much?"))
        await buyer.send(amount, has("What is the deal for?"))
        await buyer.send(f"Item {rng.randrange(10**6)}", offers("✅ Create deal"))
        # the deal made, as this press tells it, and as a second press (or the
        # redelivery of a press whose replica died after creating it) shows it too
        shown = await buyer.press(
            "✅ Create deal", has("✅ Deal created.", "Deal #"), double=self.double(rng)
        )
        found = re.search(r"Deal #(\w+)", shown.text)
        assert found is not None
        return found.group(1)

    async def settle(self, code: str, release: bool, rng: random.Random) -> None:
        admin = self.admin
        async with self.admin_lock:
            await admin.send("/admin", offers("⚠️ Open disputes"))
            await admin.press("⚠️ Open disputes", offers(f"#{code}"))
            # on the deal's own card: notifications of newer disputes offer the same buttons
            card = await admin.press(f"#{code}", offers("✅ Release to seller"))
            if release:
                ask = await admin.press(
                    "✅ Release to seller", offers("✅ Yes, release to the seller"), on=card
                )
                await admin.press(
                    "✅ Yes, release to the seller",
                    has("Released to the seller.", f"Deal #{code}"),
                    double=self.double(rng),
                    on=ask,
                )
            else:
                ask = await admin.press(
                    "↩️ Refund buyer", offers("↩️ Yes, refund the buyer"), on=card
                )
                await admin.press(
                    "↩️ Yes, refund the buyer",
                    has("Refunded to the buyer.", f"Deal #{code}"),
                    double=self.double(rng),
                    on=ask,
                )

    async def deal(self, buyer: Person, seller: Person, rng: random.Random) -> None:
        amount = f"{rng.randint(1, 40)}.{rng.randint(0, 99):02d}"
        code = await self.open_deal(buyer, seller, amount, rng)
        ending = rng.choice(ENDINGS)
        deal = f"Deal #{code}"
        self.deals[code] = f"{ending} (open)"
        if ending == "cancel":
            await self.card(buyer, code)
            await buyer.press("Cancel deal", offers("Yes, cancel the deal"))
            await buyer.press(
                "Yes, cancel the deal", has(deal, "cancelled"), double=self.double(rng)
            )
            self.deals[code] = ending
            return
        await self.card(seller, code)
        await seller.press("✅ Accept", has("You accepted", deal), double=self.double(rng))
        await self.card(buyer, code)
        await buyer.press("💰 Fund", has(deal, "funded — the money"), double=self.double(rng))
        if ending == "refund":
            await self.card(seller, code)
            await seller.press("↩️ Cancel and refund the buyer", offers("↩️ Yes, cancel and refund"))
            await seller.press(
                "↩️ Yes, cancel and refund",
                has(deal, "refunded to the buyer"),
                double=self.double(rng),
            )
        elif ending == "release":
            await self.card(seller, code)
            await seller.press(
                "📦 Mark as delivered", has(deal, "delivered — waiting"), double=self.double(rng)
            )
            await self.card(buyer, code)
            await buyer.press("✅ Release payment", offers("✅ Yes, release the payment"))
            await buyer.press(
                "✅ Yes, release the payment",
                has(deal, "released to the seller"),
                double=self.double(rng),
            )
        else:
            await self.card(buyer, code)
            await buyer.press("⚠️ Open a dispute", has("What went wrong?"))
            await buyer.send("Never arrived", has(deal, "in dispute"))
            await self.settle(code, ending == "dispute_release", rng)
        self.deals[code] = ending

    async def life(self, index: int, deadline: float) -> None:
        """One pair: both start and deposit, then deals between them until the deadline."""
        rng = random.Random(SEED * 100 + index)
        a, b = self.people[2 * index], self.people[2 * index + 1]
        for person in (a, b):
            for _ in range(3):
                began = time.monotonic()
                try:
                    await person.send("/start", has("Hi,"))
                    await self.deposit(person, f"{rng.randint(500, 2000)}.00", rng)
                    break
                except Stuck as exc:
                    if not self.lost_to_redis(exc, began):
                        self.stuck.append(f"pair {index}: {exc}")
                        return
                    self.forms_lost.append(str(exc))
        while time.monotonic() < deadline:
            buyer, seller = (a, b) if rng.random() < 0.5 else (b, a)
            began = time.monotonic()
            try:
                await self.deal(buyer, seller, rng)
            except Stuck as exc:
                if self.lost_to_redis(exc, began):
                    self.forms_lost.append(str(exc))
                    continue
                # Told, and carried on from the menu as a person would.
                self.stuck.append(f"pair {index}: {exc}")
                try:
                    for person in (a, b):
                        await person.send("/start", has("Hi,"))
                except Stuck as again:
                    self.stuck.append(f"pair {index}, given up: {again}")
                    return


async def rows(conn: asyncpg.Connection, query: str) -> list[Any]:
    return list(await conn.fetch(query))


async def books(conn: asyncpg.Connection, deposited: int) -> list[str]:
    """The money invariants (tests/integration/test_ledger_properties.py), in USDT."""
    problems: list[str] = []
    wallets = {
        (r["user_id"], r["currency"]): (r["available"], r["held"])
        for r in await rows(conn, "SELECT user_id, currency, available, held FROM wallets")
    }
    if negative := {k: v for k, v in wallets.items() if v[0] < 0 or v[1] < 0}:
        problems.append(f"negative balances: {negative}")
    legs = {
        (r["user_id"], r["currency"], r["account"]): r["total"]
        for r in await rows(
            conn,
            "SELECT user_id, currency, account, sum(amount) AS total FROM ledger_entries"
            " WHERE account IN ('available', 'held') GROUP BY 1, 2, 3",
        )
    }
    for (user, currency), (available, held) in wallets.items():
        ledger = (legs.pop((user, currency, "available"), 0), legs.pop((user, currency, "held"), 0))
        if ledger != (available, held):
            problems.append(f"wallet {user} {currency} {available, held} but ledger {ledger}")
    if legs:
        problems.append(f"ledger legs without a wallet: {legs}")
    unbalanced = await rows(
        conn,
        "SELECT idempotency_key FROM ledger_entries GROUP BY 1"
        " HAVING sum(amount) <> 0 OR count(DISTINCT currency) <> 1",
    )
    if unbalanced:
        problems.append(f"unbalanced movements: {[r[0] for r in unbalanced]}")
    fees = {r["currency"]: r["fees"] for r in await rows(conn, "SELECT * FROM platform_accounts")}
    in_ledger = await conn.fetchval(
        "SELECT -coalesce(sum(amount), 0) FROM ledger_entries"
        " WHERE kind = 'deposit' AND account = 'external' AND currency = 'USDT'"
    )
    withdrawn = await conn.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM withdrawals"
        " WHERE status = 'approved' AND currency = 'USDT'"
    )
    inside = sum(a + h for (_, c), (a, h) in wallets.items() if c == "USDT") + fees.get("USDT", 0)
    if in_ledger - withdrawn != inside:
        problems.append(f"deposits {in_ledger} - withdrawals {withdrawn} != money inside {inside}")
    if in_ledger != deposited:
        problems.append(f"deposits in the ledger {in_ledger}, confirmed to people {deposited}")
    backing: defaultdict[tuple[int, str], int] = defaultdict(int)
    for r in await rows(
        conn,
        "SELECT buyer_id AS user_id, currency, amount FROM escrows"
        " WHERE status IN ('funded', 'delivered', 'disputed')"
        " UNION ALL SELECT user_id, currency, amount FROM withdrawals WHERE status = 'pending'",
    ):
        backing[r["user_id"], r["currency"]] += r["amount"]
    for key, (_, held) in wallets.items():
        if backing.pop(key, 0) != held:
            problems.append(f"held {held} of {key} is not what its funded deals hold")
    if backing:
        problems.append(f"funded deals without a wallet: {dict(backing)}")
    return problems


async def test_a_bounded_run_with_faults_keeps_every_promise(config: Config, tmp_path):
    url = config.database.sqlalchemy_url
    dsn: dict[str, Any] = {
        "host": url.host,
        "port": url.port or 5432,
        "user": url.username,
        "password": url.password,
        "database": "postgres",
    }
    try:
        server_conn = await asyncpg.connect(**dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable("Postgres", exc)
    name = f"escrow_chaos_{os.getpid()}_{secrets.token_hex(3)}"
    await server_conn.execute(f'CREATE DATABASE "{name}"')
    dsn["database"] = name
    redis = OwnRedis(tmp_path)
    await redis.start()
    telegram_api = BotApiServer()
    rng = random.Random(SEED)
    problems: list[str] = []
    began = time.monotonic()
    timings: dict[str, float] = {}
    try:
        async with serving(telegram_api) as api_port, aiohttp.ClientSession() as http:
            replica_config = SimpleNamespace(
                database=config.database.with_database(name),
                redis=RedisSettings(url=redis.url),
                cache=SimpleNamespace(key_prefix="chaos"),
            )
            replicas = Replicas(replica_config, api_port, tmp_path, SETTINGS)
            await replicas.start()
            telegram = Telegram(telegram_api, replicas, http, rng, short_post_rate=SHORT_POST)
            run = Run(telegram, rng)
            faults = Faults(rng, redis, replicas, dsn)
            run.faults = faults
            plan = faults.plan(RUN_SECONDS - 5, FAULTS)
            try:
                await run.admin.send("/start", has("Hi,"))
                refusing = TelegramFaults(
                    random.Random(SEED + 1), rate_429=TELEGRAM_429, rate_500=TELEGRAM_500
                )
                telegram_api.faults = refusing
                deadline = time.monotonic() + RUN_SECONDS
                await asyncio.gather(
                    faults.run(plan), *(run.life(i, deadline) for i in range(PAIRS))
                )
                timings["run"] = time.monotonic() - began
                # Quiescence: faults off, both replicas up, the outbox drained.
                telegram_api.faults = None
                conn = await asyncpg.connect(**dsn)
                try:
                    for _ in range(300):
                        pending = await conn.fetchval(
                            "SELECT count(*) FROM notifications WHERE status = 'pending'"
                        )
                        if not pending:
                            break
                        await asyncio.sleep(0.1)
                    else:
                        problems.append(f"{pending} notifications still pending")
                    statuses = dict(
                        await conn.fetch("SELECT status, count(*) FROM notifications GROUP BY 1")
                    )
                    if set(statuses) - {"sent", "obsolete"}:
                        problems.append(f"notifications not sent: {statuses}")
                    timings["quiet"] = time.monotonic() - began

                    # Every wallet screen, on each replica, shows Postgres's balances.
                    for person in run.people:
                        for replica in range(2):
                            shown = await person.send("/wallet", has("Your wallet"), replica)
                            seen = wallet_shown(shown.text)
                            stored = await conn.fetchrow(
                                "SELECT w.available, w.held FROM wallets w JOIN users u"
                                " ON u.id = w.user_id"
                                " WHERE u.telegram_id = $1 AND w.currency = 'USDT'",
                                person.user_id,
                            )
                            if stored is None or seen != (stored["available"], stored["held"]):
                                problems.append(
                                    f"{person.username} on replica {replica}: wallet shows"
                                    f" {seen}, Postgres has {stored and tuple(stored)}"
                                )
                    problems += await books(conn, run.deposited)
                    statuses_of_deals = dict(
                        await conn.fetch("SELECT status, count(*) FROM escrows GROUP BY 1")
                    )
                finally:
                    await conn.close()
            finally:
                codes = await asyncio.gather(
                    *(stop(p) for p in replicas.running), return_exceptions=True
                )
            timings["stopped"] = time.monotonic() - began
    finally:
        await redis.stop()
        await server_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await server_conn.close()

    problems += [f"stuck: {s}" for s in run.stuck]
    if codes != [0, 0]:
        problems.append(f"replicas exited with {codes}")

    # Every update Telegram delivered was handled exactly once.
    deliveries = telegram.deliveries
    handled, errors = handled_counts([p.log for p in replicas.running])
    for update_id, delivery in deliveries.items():
        # A POST cut by a SIGKILL may leave no record of what the killed replica
        # did (it may have finished): 0 is allowed then, and a loss shows as a
        # person who never saw the update's screen (stuck, naming the update).
        # Or the killed replica finished it and died before its "done" mark
        # landed (written after the update, off its path): the redelivery is
        # handled again, guarded like any redelivery (docs/cache.md).
        cut = any(s.endswith("Error") for s in delivery.statuses)
        allowed = {0, 1, 2} if cut else {1}
        # While Redis restarts or is flushed (and its breaker stays open after),
        # the dedup can't tell a redelivery: handled again, guarded in Postgres.
        if faults.redis_impaired(delivery.first_at, delivery.last_at, REDIS_AFTER):
            allowed |= {2}
        if handled[update_id] not in allowed:
            problems.append(
                f"update {update_id} ({delivery.kind} {delivery.text[:40]!r} in chat"
                f" {delivery.chat}) handled {handled[update_id]} times; POSTs {delivery.statuses}"
            )
    problems += [f"failed: {e}" for e in errors]

    # Nobody was told something went wrong, or that nothing changed.
    for chat_id, chat in telegram_api.chats.items():
        for said in chat.texts:
            if said.startswith(SOMETHING_WRONG) or texts.CANCELLED in said:
                problems.append(f"chat {chat_id} was told {said!r}")

    summary = (
        f"seed {SEED}; {len(deliveries)} updates, {len(run.deals)} deals {statuses_of_deals};"
        f" faults {faults.done}; Telegram refused {refusing.refused};"
        f" repeated answers refused {len(telegram_api.refused_answers)};"
        f" forms lost to Redis {len(run.forms_lost)};"
        f" timings { ({k: round(v, 1) for k, v in timings.items()}) }"
    )
    print(summary)
    assert not problems, summary + "\n" + "\n".join(problems)
