"""Redis round trips per update, one process and webhook replicas: what a
read-only press, a typed message and a wizard step cost (the figures the
benchmark's replica rows stand on). Counted as the product's metrics count
them (`cache.client.round_trips`, per update), on warm connections."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable

import pytest

from bot.ops.metrics import UpdateRecord, current
from bot.runtime.app import App, build_app
from bot.sim import FakeTelegram, SimulatedUser, UpdateResult
from bot.sim.telegram import BotRequest
from tests.e2e.conftest import ON_ONE_REDIS_AND_A_CLUSTER

_ids = itertools.count(90_000)

# the same counts on one Redis and on a Redis Cluster: what one update touches
# together is in one slot group, so on one master
pytestmark = ON_ONE_REDIS_AND_A_CLUSTER

# (one process, replicas): per update, after the user's snapshot is in L1
# (their release, after the update and off its path, is counted by none)
READ_ONLY_PRESS = (0, 1)  # replicas: the update's lease and user's lock
# a typed message's step: kept by the one process; replicas read it with the lease
TYPED_COMMAND = (0, 1)
WIZARD_STEP = (1, 2)  # + the form's step and data written together (if unchanged)


@pytest.fixture(params=[False, True], ids=["one-process", "replicas"])
async def app(request, replica_config) -> AsyncIterator[App]:
    app = await build_app(replica_config, session=FakeTelegram(), replicas=request.param)
    yield app
    await app.aclose()


def person(app: App, name: str, username: str) -> SimulatedUser:
    telegram = app.bot.session
    assert isinstance(telegram, FakeTelegram)
    return SimulatedUser(
        telegram, app.bot, app.dispatcher, user_id=next(_ids), first_name=name, username=username
    )


class Counted:
    """The round trips of each update the app finishes, as its metrics see them."""

    def __init__(self, app: App, monkeypatch: pytest.MonkeyPatch) -> None:
        self.per_update: list[int] = []
        finish = app.metrics.finish

        def finished(record: UpdateRecord) -> None:
            self.per_update.append(record.redis[0])
            finish(record)

        monkeypatch.setattr(app.metrics, "finish", finished)

    async def __call__(self, update: Awaitable[UpdateResult]) -> int:
        self.per_update.clear()
        await update
        [round_trips] = self.per_update
        return round_trips


async def wizard(counted: Counted, user: SimulatedUser, counterparty: str) -> list[int]:
    """Round trips of each step of a new deal, up to its summary."""
    return [
        await counted(user.send("/new")),
        await counted(user.press("I'm buying")),
        await counted(user.send(counterparty)),
        await counted(user.press("USDT")),
        await counted(user.send("100")),
        await counted(user.send("A used road bike")),
    ]


async def test_round_trips_per_update(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    which = 1 if app.update_dedup is not None else 0
    counted = Counted(app, monkeypatch)
    alice, bob = person(app, "Alice", "alice_rt"), person(app, "Bob", "bob_rt")
    await bob.send("/start")
    await alice.send("/start")
    await wizard(counted, alice, "@bob_rt")  # every connection opened, scripts loaded
    await alice.send("/cancel")

    telegram = app.bot.session
    assert isinstance(telegram, FakeTelegram)
    before_reply: list[int] = []

    def replied(request: BotRequest) -> None:
        record = current.get()
        if request.method == "editMessageText" and record is not None:
            before_reply.append(record.redis[0])

    telegram.add_listener(replied)
    for label in ("❓ Help", "« Menu", "👛 Wallet"):
        assert await counted(alice.press(label)) == READ_ONLY_PRESS[which], label
    # with replicas, the lease and lock before the press's reply
    assert before_reply == [READ_ONLY_PRESS[which]] * 3
    telegram.remove_listener(replied)
    assert await counted(alice.send("/start")) == TYPED_COMMAND[which]
    steps = await wizard(counted, alice, "@bob_rt")
    # /new reads the step and opens the form; each step after reads the form
    # (step and data at once: kept by the one process) and moves it on in one write
    assert steps == [WIZARD_STEP[which]] * 6
    assert "A used road bike" in alice.last.text


async def test_the_other_partys_record_on_a_card_costs_nothing_on_a_warm_cache(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A card showing the other party's record (the viewer is to accept it)
    costs what a card without one costs: the deal's own read, and the Redis
    round trips of any read-only press; the record is a cache hit."""
    which = 1 if app.update_dedup is not None else 0
    records: list[UpdateRecord] = []
    finish = app.metrics.finish

    def finished(record: UpdateRecord) -> None:
        records.append(record)
        finish(record)

    monkeypatch.setattr(app.metrics, "finish", finished)
    alice, bob = person(app, "Alice", "alice_rec"), person(app, "Bob", "bob_rec")
    await bob.send("/start")
    await alice.send("/start")
    me = await app.cache.cache.get(alice.id)
    assert me is not None
    bob_found = await app.services.users.find_by_username("bob_rec")
    created = await app.services.deals.create(
        me, role="buyer", currency="USDT", amount=100, description="Lamp", counterparty=bob_found
    )
    code = created.value.deal.code
    for user in (alice, bob):
        await user.send(f"/deal {code}")  # each card read once: connections warm, L1 too
        await user.press("⟳ Refresh")
    costs = {}
    for user in (alice, bob):
        records.clear()
        await user.press("⟳ Refresh")
        [record] = records
        costs[user.user.first_name] = (record.sql, record.redis[0])
    assert "@alice_rec's record" in bob.last.text
    assert "'s record" not in alice.last.text
    # one statement each (the deal), and a read-only press's round trips
    assert costs == {"Alice": (1, READ_ONLY_PRESS[which]), "Bob": (1, READ_ONLY_PRESS[which])}
