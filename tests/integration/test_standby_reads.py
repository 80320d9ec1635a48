"""Reads on a hot standby (db/standby.py), on a primary and streaming standby
of the tests' own: what may go there and what never does, read-your-writes
while the standby replays nothing, the lag bound, and a standby that stops."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest
from sqlalchemy import event, text

from bot.config import Config
from bot.ops.doctor import check_standby
from bot.services.base import ServiceContext
from bot.services.reads import ReadService
from bot.services.settings import EscrowSettings
from bot.services.views import UserView
from cache.loader import PostgresSnapshotLoader
from db import Database
from db.engine import DatabaseSettings, build_standby
from db.events import DealChanged
from db.replay import NotAStandby
from db.standby import StandbyReads
from tests.cache.proxy import TcpProxy
from tests.conftest import RecordedEvents, Services, StatementLog
from tests.postgres_standby import replayed

# Every test here on the pair: reads_from is "standby".
pytestmark = pytest.mark.parametrize("reads_from", ["standby"], indirect=True, scope="session")

PRICE = 25_00


class Replica:
    """One bot replica's database side: its own standby reads and watch."""

    def __init__(self, database: Database, services: Services) -> None:
        self.db = database
        self.services = services
        self.reads = ReadService(services.ctx)
        self.loader = PostgresSnapshotLoader(database.engine, database.standby)

    @property
    def standby(self) -> StandbyReads:
        assert self.db.standby is not None
        return self.db.standby

    def counted(self) -> Counter[tuple[str, str]]:
        """The reads counted so far, and a fresh count from now on."""
        counts, self.standby.reads = self.standby.reads, Counter()
        return counts


@pytest.fixture
def max_lag_ms() -> int:
    # Long enough that a slow machine keeps a paused standby within the bound
    # for the stale-read checks; the lag tests set their own.
    return 3000


@pytest.fixture
async def replicas(
    database: Database,
    pg_settings: DatabaseSettings,
    config: Config,
    escrow_settings: EscrowSettings,
    max_lag_ms: int,
) -> AsyncIterator[tuple[Replica, Replica]]:
    settings = msgspec.structs.replace(pg_settings, read_max_lag_ms=max_lag_ms)
    built = []
    for _ in range(2):
        standby = build_standby(settings)
        assert standby is not None
        standby.start()
        db = Database(database.engine, standby)
        ctx = ServiceContext(
            db=db,
            settings=escrow_settings,
            currencies=config.currency_table(),
            events=RecordedEvents(),
        )
        built.append(Replica(db, Services(ctx)))
    for replica in built:
        await replayed(replica.standby)
    yield built[0], built[1]
    for replica in built:
        await replica.standby.aclose()


@pytest.fixture
def on_standby(replicas: tuple[Replica, Replica]) -> Iterator[StatementLog]:
    """Statements the first replica sends to the standby."""
    log = StatementLog()
    engine = replicas[0].standby.engine.sync_engine
    event.listen(engine, "before_cursor_execute", log)
    yield log
    event.remove(engine, "before_cursor_execute", log)


async def deal_between(services: Services) -> tuple[UserView, UserView, str]:
    buyer = await services.user("sb_buyer", funds={"USDT": 100_00})
    seller = await services.user("sb_seller")
    created = await services.deals.create(
        buyer,
        role="buyer",
        currency="USDT",
        amount=PRICE,
        description="A lamp",
        counterparty=seller.telegram_id,
    )
    return buyer, seller, created.value.deal.code


async def test_cards_lists_queues_and_snapshots_are_read_on_the_standby_in_one_statement(
    replicas, on_standby, sql
):
    a, _ = replicas
    buyer, seller, code = await deal_between(a.services)
    admin = await a.services.admin()
    await replayed(a.standby)  # the writes are on the standby: nobody is marked now
    a.counted()

    on_standby.start()
    sql.start()
    assert (await a.services.deals.get(seller, code)).status == "pending"
    assert [d.code for d in (await a.reads.deals_page(buyer, "active")).items] == [code]
    assert (await a.reads.stats(admin)).deals_by_status == {"pending": 1}
    snapshot = await a.loader(buyer.telegram_id)
    assert snapshot is not None and snapshot.wallet("USDT").available == 100_00
    assert len(on_standby.stop()) == 4
    assert sql.stop() == []  # the session's engine: none on the primary
    assert a.counted() == {("standby", "caught_up"): 4}


async def test_writes_and_money_decisions_never_touch_the_standby(replicas, on_standby):
    a, _ = replicas
    buyer, seller, code = await deal_between(a.services)
    await replayed(a.standby)
    on_standby.start()
    await a.services.deals.accept(seller, code)
    await a.services.deals.fund(buyer, code)
    await a.services.wallets.request_withdrawal(buyer, "USDT", 10_00, "TXaddress")
    assert on_standby.stop() == []


async def test_who_just_wrote_reads_their_write_while_the_standby_replays_nothing(
    replicas, standby_pair
):
    a, b = replicas
    pair = standby_pair
    buyer, seller, code = await deal_between(a.services)
    admin = await a.services.admin()
    await replayed(a.standby)
    await replayed(b.standby)
    await pair.pause_replay()

    await a.services.deals.accept(seller, code)  # through replica a, not replayed
    a.counted()
    # the seller and the buyer (the deal's parties) see it at once, on the primary
    assert (await a.services.deals.get(seller, code)).status == "accepted"
    assert (await a.services.deals.get(buyer, code)).status == "accepted"
    [item] = (await a.reads.deals_page(buyer, "action")).items
    assert (item.code, item.status) == (code, "accepted")
    assert a.counted() == {("primary", "recent_write"): 3}
    # someone the write does not concern reads the standby: stale, within the bound
    assert (await a.reads.stats(admin)).deals_by_status == {"pending": 1}
    assert a.counted() == {("standby", "caught_up"): 1}
    assert a.standby.watch.lag() < a.standby.max_lag

    # replica b hears the commit's events (its listener's hook) and does the same
    b.counted()
    published = a.services.ctx.events.published
    changed = [e for e in published if isinstance(e, DealChanged) and e.code == code][-1]
    assert changed.status == "accepted"
    b.standby.heard(changed)
    assert (await b.services.deals.get(seller, code)).status == "accepted"
    assert b.counted() == {("primary", "recent_write"): 1}

    # once the standby has replayed it, they read there again, and see it
    await pair.resume_replay()
    await replayed(a.standby)
    assert (await a.services.deals.get(seller, code)).status == "accepted"
    assert (await a.reads.stats(admin)).deals_by_status == {"accepted": 1}
    assert a.counted() == {("standby", "caught_up"): 2}
    assert a.standby.marked() == 0  # the marks the standby has passed are gone


@pytest.mark.parametrize("max_lag_ms", [1000])
async def test_past_the_lag_bound_reads_go_to_the_primary(replicas, standby_pair):
    a, _ = replicas
    pair = standby_pair
    buyer, seller, code = await deal_between(a.services)
    admin = await a.services.admin()
    await replayed(a.standby)
    await pair.pause_replay()
    await a.services.deals.accept(seller, code)
    await asyncio.sleep(1.2)  # the standby falls behind the bound
    a.counted()

    assert (await a.reads.stats(admin)).deals_by_status == {"accepted": 1}  # fresh
    assert (await a.reads.deals_page(buyer, "active")).items[0].status == "accepted"
    assert a.counted() == {("primary", "lag"): 2}
    assert a.standby.watch.lag() > 1.0

    await pair.resume_replay()
    await replayed(a.standby)
    assert (await a.reads.stats(admin)).deals_by_status == {"accepted": 1}
    assert a.counted() == {("standby", "caught_up"): 1}


async def test_a_standby_that_stops_costs_one_failed_read_and_no_error(replicas, standby_pair):
    a, _ = replicas
    pair = standby_pair
    buyer, seller, code = await deal_between(a.services)
    admin = await a.services.admin()
    await replayed(a.standby)
    # the watch has not noticed yet: the next read is the first to find it gone
    pair.stop_standby()
    a.counted()

    assert (await a.services.deals.get(buyer, code)).status == "pending"
    assert (await a.reads.stats(admin)).deals_by_status == {"pending": 1}
    assert [d.code for d in (await a.reads.deals_page(seller, "active")).items] == [code]
    snapshot = await a.loader(seller.telegram_id)
    assert snapshot is not None and snapshot.id == seller.id
    # one read tried the standby; the rest skipped it without trying
    assert a.counted() == {("primary", "failed"): 1, ("primary", "down"): 3}
    assert not a.standby.watch.up

    pair.start_standby()
    await replayed(a.standby)
    assert (await a.services.deals.get(buyer, code)).status == "pending"
    assert a.counted() == {("standby", "caught_up"): 1}


async def test_a_standby_that_stops_answering_holds_one_read_then_none(
    database, pg_settings, postgres_pair, config, escrow_settings
):
    """Connections open, nothing comes back (a partition, a hung host): the
    read in flight gives up after its timeout and goes to the primary, and
    the reads after it do not try the standby."""
    proxy = TcpProxy("127.0.0.1", postgres_pair.standby_port)
    await proxy.start()
    settings = msgspec.structs.replace(
        pg_settings,
        read_url=postgres_pair.url(proxy.port),
        statement_timeout_ms=200,
        read_connect_timeout_seconds=0.3,
        read_max_lag_ms=300,
    )
    standby = build_standby(settings)
    assert standby is not None
    standby.start()
    try:
        db = Database(database.engine, standby)
        ctx = ServiceContext(
            db=db,
            settings=escrow_settings,
            currencies=config.currency_table(),
            events=RecordedEvents(),
        )
        a = Replica(db, Services(ctx))
        buyer, _, code = await deal_between(a.services)
        await replayed(standby)
        assert (await a.services.deals.get(buyer, code)).status == "pending"
        assert a.counted() == {("standby", "caught_up"): 1}  # a pooled connection through

        proxy.blackhole()
        for _ in range(3):
            assert (await a.services.deals.get(buyer, code)).status == "pending"
        assert a.counted() == {("primary", "failed"): 1, ("primary", "down"): 2}
    finally:
        await proxy.stop()
        await standby.aclose()


async def test_a_read_url_that_is_no_standby_is_never_read(
    database, pg_settings, postgres_pair, config, escrow_settings
):
    """A primary's address by mistake (or a promoted standby): it replays
    nothing, so how far it has replayed means nothing; every read goes to the
    primary."""
    settings = msgspec.structs.replace(pg_settings, read_url=postgres_pair.primary_url)
    standby = build_standby(settings)
    assert standby is not None
    try:
        with pytest.raises(NotAStandby):
            await standby.watch.check()
        db = Database(database.engine, standby)
        ctx = ServiceContext(db=db, settings=escrow_settings, currencies=config.currency_table())
        someone = await Services(ctx).user()
        assert (await ReadService(ctx).deals_page(someone, "active")).items == ()
        assert standby.reads == {("primary", "down"): 1} and not standby.watch.up
    finally:
        await standby.aclose()


async def test_a_user_the_standby_has_not_got_yet_is_loaded_from_the_primary(
    replicas, standby_pair
):
    """Made by a commit no update of theirs marked (here: straight in SQL), a
    user not replayed yet is looked for on the primary: never read as unknown."""
    a, _ = replicas
    await replayed(a.standby)
    await standby_pair.pause_replay()
    async with a.db.engine.begin() as conn:
        await conn.execute(text("INSERT INTO users (telegram_id) VALUES (777000555)"))
    a.counted()
    snapshot = await a.loader(777_000_555)
    assert snapshot is not None and snapshot.telegram_id == 777_000_555
    assert a.counted() == {("primary", "missing"): 1}


async def test_the_standby_of_an_idle_primary_counts_as_caught_up(pg_settings, standby_pair):
    """With nothing written since a WAL switch, the primary's insert position
    points past a page header where no record ends; the standby has still
    replayed everything, and reads may go there."""
    standby = build_standby(pg_settings)
    assert standby is not None
    try:
        await standby.watch.check()  # the pair's system identifiers compared
        await standby_pair.execute(standby_pair.primary_port, "SELECT pg_switch_wal()")
        standby_pair.wait_replayed()
        idle_since = time.monotonic()
        async with asyncio.timeout(5):
            while standby.watch.caught_up <= idle_since:
                await standby.watch.check()
                await asyncio.sleep(standby.watch.interval)
        assert standby.watch.lag() < pg_settings.read_max_lag_ms / 1000
    finally:
        await standby.aclose()


async def test_the_doctor_checks_the_standby_replays_within_the_bound(
    config, pg_settings, standby_pair
):
    deployment = msgspec.structs.replace(config, database=pg_settings)
    healthy = await check_standby(deployment)
    assert healthy.ok and healthy.detail.startswith("replaying"), healthy.detail
    await standby_pair.pause_replay()
    # a commit that wrote something (a temporary table: gone with its session)
    await standby_pair.execute(standby_pair.primary_port, "CREATE TEMP TABLE probe (x int)")
    paused = await check_standby(deployment)
    assert not paused.ok and paused.detail.startswith("has replayed none"), paused.detail
    standby_pair.stop_standby()
    stopped = await check_standby(deployment)
    assert not stopped.ok and stopped.detail.startswith("not usable"), stopped.detail


async def test_a_deal_card_the_standby_has_not_got_yet_is_looked_for_on_the_primary(
    replicas, standby_pair
):
    a, _ = replicas
    admin = await a.services.admin()
    await replayed(a.standby)
    await standby_pair.pause_replay()
    _, _, code = await deal_between(a.services)  # its parties are marked, the admin is not
    a.counted()
    assert (await a.services.deals.get(admin, code, as_admin=True)).code == code
    assert a.counted() == {("primary", "missing"): 1}


async def test_with_every_standby_connection_in_use_a_read_does_not_wait_for_one(
    database, pg_settings, config, escrow_settings
):
    standby = build_standby(msgspec.structs.replace(pg_settings, read_pool_size=1))
    assert standby is not None
    standby.start()
    try:
        db = Database(database.engine, standby)
        ctx = ServiceContext(db=db, settings=escrow_settings, currencies=config.currency_table())
        someone = await Services(ctx).user()
        await replayed(standby)
        async with standby.reader.connect() as busy:
            await busy.execute(text("SELECT 1"))
            assert (await ReadService(ctx).deals_page(someone, "active")).items == ()
        assert standby.reads == {("primary", "busy"): 1}
    finally:
        await standby.aclose()
