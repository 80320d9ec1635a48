"""A record changed through one replica is the record the other shows: a
settlement against a party, a rating and a release each invalidate the
parties' snapshots after commit, so another replica's card drops what its L1
held as soon as it hears the event, never after its TTL."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import msgspec
import pytest
from sqlalchemy import text

from bot.runtime.app import App, build_app
from bot.sim import FakeTelegram, SimulatedUser
from db.events import UserChanged
from tests.conftest import ADMIN_TELEGRAM_ID

_ids = itertools.count(70_000)


@pytest.fixture
async def replicas(replica_config) -> AsyncIterator[tuple[App, App]]:
    telegram = FakeTelegram()
    config = msgspec.structs.replace(
        replica_config,
        telegram=msgspec.structs.replace(replica_config.telegram, callback_secret="s" * 32),
        escrow=msgspec.structs.replace(replica_config.escrow, admins=(ADMIN_TELEGRAM_ID,)),
    )
    first = await build_app(config, session=telegram, replicas=True)
    second = await build_app(config, session=telegram, replicas=True)
    yield first, second
    await first.aclose()
    await second.aclose()


def person(app: App, name: str, username: str, user_id: int | None = None) -> SimulatedUser:
    telegram = app.bot.session
    assert isinstance(telegram, FakeTelegram)
    return SimulatedUser(
        telegram,
        app.bot,
        app.dispatcher,
        user_id=user_id or next(_ids),
        first_name=name,
        username=username,
    )


class Heard:
    """The newest version of each user the listener of a replica has heard of."""

    def __init__(self, app: App) -> None:
        self.versions: dict[int, int] = {}
        self.changed = asyncio.Condition()
        app.cache.listener.on_event.append(self.heard)

    def heard(self, message: object) -> None:
        if isinstance(message, UserChanged):
            self.versions[message.telegram_id] = max(
                message.version, self.versions.get(message.telegram_id, 0)
            )
            asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def of(self, app: App, user: SimulatedUser) -> None:
        """Until the version the database has for `user` has been heard."""
        async with app.database.engine.connect() as conn:
            version = await conn.scalar(
                text("SELECT version FROM users WHERE telegram_id = :t"), {"t": user.id}
            )
        async with asyncio.timeout(5), self.changed:
            await self.changed.wait_for(lambda: self.versions.get(user.id, 0) >= version)


async def test_a_record_changed_on_one_replica_is_what_the_other_shows(replicas):
    first, second = replicas
    alice, bob = person(first, "Alice", "alice_rr"), person(first, "Bob", "bob_rr")
    admin = person(first, "Ada", "ada_rr", ADMIN_TELEGRAM_ID)
    dave = person(second, "Dave", "dave_rr")
    for user in (alice, bob, admin, dave):
        await user.send("/start")
    services = first.services
    snapshot = first.cache.cache.get
    await services.wallets.credit_deposit(await snapshot(alice.id), "USDT", 500_00, reference="a")
    me, seller, ada = await snapshot(alice.id), await snapshot(bob.id), await snapshot(admin.id)

    # Bob offers Dave a deal; the second replica shows Dave Bob's record, and keeps it in L1
    offer = await services.deals.create(
        seller,
        role="seller",
        currency="USDT",
        amount=100_00,
        description="Bike",
        counterparty=await services.users.find_by_username("dave_rr"),
    )
    await dave.send(f"/deal {offer.value.deal.code}")
    assert "🆕 No completed deals yet" in dave.last.text
    assert second.cache.cache.cached_locally(bob.id) is not None
    heard = Heard(second)

    async def sold_to_alice() -> str:
        created = await services.deals.create(
            me,
            role="buyer",
            currency="USDT",
            amount=100_00,
            description="Lamp",
            counterparty=await services.users.find_by_username("bob_rr"),
        )
        code = created.value.deal.code
        await services.deals.accept(seller, code)
        await services.deals.fund(me, code)
        return code

    # 1. a dispute settled against Bob on the first replica: his money doesn't move
    disputed = await sold_to_alice()
    await services.deals.dispute(me, disputed, "Scratched")
    await services.deals.resolve(ada, disputed, "refund")
    await heard.of(first, bob)
    await dave.press("⟳ Refresh")
    assert "✅ 1 completed deal" in dave.last.text
    assert "⚖️ Disputes: 0 opened, 1 lost" in dave.last.text

    # 2. Alice rates him on the first replica
    await services.ratings.rate(me, disputed, 2)
    await heard.of(first, bob)
    await dave.press("⟳ Refresh")
    assert "⭐ 2.0 from 1 rating" in dave.last.text

    # 3. a deal released to him on the first replica
    released = await sold_to_alice()
    await services.deals.release(me, released)
    await heard.of(first, bob)
    await dave.press("⟳ Refresh")
    assert "✅ 2 completed deals · 100–1,000 USDT traded" in dave.last.text
