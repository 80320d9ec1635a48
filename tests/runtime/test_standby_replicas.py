"""Two webhook replicas reading from a hot standby whose replay is paused:
whoever just wrote (on either replica) sees their write in their next update,
on either replica, through the invalidation channel every replica hears; an
admin's own decision is seen in the reply that follows it; a replica that
cannot hear the others reads from the primary; the figures on /metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import msgspec
import pytest
from prometheus_client import generate_latest

from bot.runtime.app import App, build_app
from bot.sim import FakeTelegram, SimulatedUser
from db.standby import StandbyReads
from tests.conftest import ADMIN_TELEGRAM_ID
from tests.postgres_standby import PostgresPair, replayed
from tests.runtime.test_replicas import person, via

pytestmark = pytest.mark.parametrize("reads_from", ["standby"], indirect=True, scope="session")


@pytest.fixture
async def replicas(replica_config) -> AsyncIterator[tuple[App, App]]:
    telegram = FakeTelegram()
    config = msgspec.structs.replace(
        replica_config,
        telegram=msgspec.structs.replace(replica_config.telegram, callback_secret="s" * 32),
        escrow=msgspec.structs.replace(replica_config.escrow, admins=(ADMIN_TELEGRAM_ID,)),
        # a paused standby stays within the bound for as long as a test runs
        database=msgspec.structs.replace(replica_config.database, read_max_lag_ms=10_000),
    )
    first = await build_app(config, session=telegram, replicas=True)
    second = await build_app(config, session=telegram, replicas=True)
    for app in (first, second):
        await replayed(standby(app))
    yield first, second
    await first.aclose()
    await second.aclose()


def standby(app: App) -> StandbyReads:
    assert app.database.standby is not None
    return app.database.standby


_seen: dict[int, Counter[tuple[str, str]]] = {}


def counted(app: App) -> Counter[tuple[str, str]]:
    """The app's reads counted since the last call (its counter keeps going)."""
    now = Counter(standby(app).reads)
    before = _seen.get(id(app), Counter())
    _seen[id(app)] = now
    return now - before


async def started(app: App, *people: tuple[str, str | None]) -> list[SimulatedUser]:
    users = [person(app, name, username) for name, username in people]
    for user in users:
        await user.send("/start")
    return users


async def test_who_wrote_on_one_replica_reads_it_on_the_other_while_nothing_is_replayed(
    replicas, standby_pair: PostgresPair
):
    first, second = replicas
    alice, bob, carol = await started(
        first, ("Alice", "alice_sb"), ("Bob", "bob_sb"), ("Carol", None)
    )
    await replayed(standby(second))
    await standby_pair.pause_replay()

    await alice.send("/wallet")
    await alice.press("➕ Deposit")
    await alice.press("USDT")
    await alice.send("500")  # committed through the first replica, not replayed
    snapshot = await first.cache.cache.get(alice.id)
    assert snapshot is not None
    created = await first.services.deals.create(
        snapshot,
        role="buyer",
        currency="USDT",
        amount=100_00,
        description="A lamp",
        counterparty=bob.id,
    )
    code = created.value.deal.code

    counted(second)
    await via(alice, second).send("/wallet")
    assert "USDT: 500.00 USDT available" in alice.last.text
    await via(bob, second).send("/deals")
    assert f"#{code}" in bob.last.text
    await via(alice, second).send("/deals")
    assert f"#{code}" in alice.last.text
    reads = counted(second)
    # (her wallet may come from Redis, filled by the first replica)
    assert reads["primary", "recent_write"] >= 2 and reads["standby", "caught_up"] == 0

    # Carol's screens have nothing of theirs to wait for: the standby serves them
    await via(carol, second).send("/deals")
    assert f"#{code}" not in carol.last.text
    assert set(counted(second)) == {("standby", "caught_up")}

    scraped = generate_latest(second.metrics.registry).decode()
    assert 'escrow_db_reads_total{reason="caught_up",target="standby"}' in scraped
    assert 'escrow_db_reads_total{reason="recent_write",target="primary"}' in scraped
    assert "escrow_db_standby_up 1.0" in scraped
    assert "escrow_db_standby_lag_seconds" in scraped


async def test_an_admins_decision_is_gone_from_the_queue_they_are_shown_next(
    replicas, standby_pair: PostgresPair
):
    first, _ = replicas
    [alice] = await started(first, ("Alice", "alice_sq"))
    telegram = first.bot.session
    assert isinstance(telegram, FakeTelegram)
    admin = SimulatedUser(
        telegram, first.bot, first.dispatcher, user_id=ADMIN_TELEGRAM_ID, first_name="Ada"
    )
    await admin.send("/start")
    snapshot = await first.cache.cache.get(alice.id)
    assert snapshot is not None
    await first.services.wallets.credit_deposit(snapshot, "USDT", 100_00, reference="sq")
    snapshot = await first.cache.cache.get(alice.id)
    assert snapshot is not None
    await first.services.wallets.request_withdrawal(snapshot, "USDT", 40_00, "TXsq")
    await replayed(standby(first))
    await standby_pair.pause_replay()

    await admin.send("/admin")
    await admin.press("🏦 Pending withdrawals")
    assert f"#1 · 40.00 USDT · user {alice.id}" in admin.last.text  # from the standby
    await admin.press("✅ Approve #1")
    await admin.press("✅ Yes, it was sent")
    # no event names the admin (only Alice's wallet changed): their own update
    # marked them, so the queue under the result is read on the primary
    assert admin.last.text.startswith("✅ Withdrawal #1 approved: 40.00 USDT.")
    assert "Nothing to decide." in admin.last.text
    assert counted(first)["primary", "recent_write"] >= 1


async def test_a_replica_that_cannot_hear_the_others_reads_from_the_primary(replicas):
    first, second = replicas
    [carol] = await started(first, ("Carol", None))
    await replayed(standby(second))
    await second.cache.listener.stop()  # as while Redis is unreachable
    counted(second)
    await via(carol, second).send("/deals")
    assert carol.last.text  # answered, from the primary
    reads = counted(second)
    assert reads["primary", "unheard"] >= 1 and reads["standby", "caught_up"] == 0
