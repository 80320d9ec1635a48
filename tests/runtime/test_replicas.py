"""Two replicas in webhook mode sharing Postgres and Redis: a redelivered
update is handled once, per-user ordering and FSM state are shared, a write
on one is seen by the next update on the other; on one Redis and on a Redis
Cluster."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterable

import msgspec
import pytest

from bot.runtime.app import App, build_app
from bot.runtime.coordination import RedisUserLock
from bot.sim import FakeTelegram, SimulatedUser
from tests.e2e.conftest import ON_ONE_REDIS_AND_A_CLUSTER

_ids = itertools.count(60_000)

# on one Redis and on a Redis Cluster (the session's own)
pytestmark = ON_ONE_REDIS_AND_A_CLUSTER


@pytest.fixture
async def replicas(replica_config) -> AsyncIterator[tuple[App, App]]:
    telegram = FakeTelegram()  # one Telegram in front of both
    # replicas share the button-signing secret (as they share a real token)
    config = msgspec.structs.replace(
        replica_config,
        telegram=msgspec.structs.replace(replica_config.telegram, callback_secret="s" * 32),
    )
    first = await build_app(config, session=telegram, replicas=True)
    second = await build_app(config, session=telegram, replicas=True)
    yield first, second
    await first.aclose()
    await second.aclose()


async def settled(apps: Iterable[App]) -> None:
    """Until every replica has given back the leases of the updates it handled."""
    for app in apps:
        assert app.update_dedup is not None
        await app.update_dedup.settled()


def person(app: App, name: str, username: str | None = None) -> SimulatedUser:
    telegram = app.bot.session
    assert isinstance(telegram, FakeTelegram)
    return SimulatedUser(
        telegram, app.bot, app.dispatcher, user_id=next(_ids), first_name=name, username=username
    )


def via(user: SimulatedUser, app: App) -> SimulatedUser:
    """The load balancer sends this user's next updates to `app`."""
    user.bot, user.dispatcher = app.bot, app.dispatcher
    return user


async def test_replicas_order_a_users_updates_with_a_redis_lock(replicas):
    first, _ = replicas
    assert isinstance(first.dispatcher.fsm.events_isolation, RedisUserLock)


async def test_a_redelivered_update_is_handled_once_by_either_replica(replicas):
    first, second = replicas
    alice = person(first, "Alice", "alice_r")
    result = await alice.send("/start")
    assert result.methods == ["sendMessage"]
    again = await via(alice, second).feed(result.update)
    assert again.requests == []
    assert second.update_dedup is not None and second.update_dedup.dropped == 1

    # the same update posted to both at once: one of them answers
    update = alice._message_update("/help")
    results = await asyncio.gather(via(alice, first).feed(update), via(alice, second).feed(update))
    assert sorted(len(r.requests) for r in results) == [0, 1]


async def test_a_wizard_started_on_one_replica_continues_on_the_other(replicas):
    first, second = replicas
    alice, bob = person(first, "Alice", "alice_w"), person(second, "Bob", "bob_w")
    await bob.send("/start")
    await alice.send("/wallet")
    await alice.press("➕ Deposit")
    await alice.press("USDT")
    await via(alice, second).send("500")  # a write on the second replica...
    await via(alice, first).send("/wallet")  # ...seen by the next update on the first
    assert "USDT: 500.00 USDT available" in alice.last.text

    await alice.send("/new")
    await alice.press("I'm buying")
    await via(alice, second).send("@bob_w")
    await via(alice, first).press("USDT")
    await via(alice, second).send("120")
    await via(alice, first).send("Desk lamp")
    await via(alice, second).press("✅ Create deal")
    assert alice.last.text.startswith("✅ Deal created.")
    await via(bob, first).press("✅ Accept")
    await via(alice, second).press("💰 Fund 120.00 USDT")
    await via(alice, first).send("/wallet")
    assert "USDT: 380.00 USDT available · 120.00 USDT held" in alice.last.text


async def test_with_replicas_a_press_is_still_answered_before_any_io(replicas, monkeypatch):
    """The duplicate check and the user's Redis lock come after the answer."""
    from redis.asyncio.connection import Connection

    first, second = replicas
    alice = person(first, "Alice", "alice_io")
    await alice.send("/start")
    events: list[str] = []
    original = Connection.send_packed_command

    async def sent(self, command, check_health=True):
        packed = command if isinstance(command, (bytes, bytearray)) else b"".join(command)
        name = packed.split(b"\r\n")[2].decode().upper() if packed.startswith(b"*") else "?"
        # the listeners' own traffic, and a new connection's handshake
        if name not in ("PING", "SUBSCRIBE", "HELLO", "CLIENT", "SELECT"):
            events.append(f"redis {name}")
        return await original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", sent)
    telegram = first.bot.session
    assert isinstance(telegram, FakeTelegram)
    telegram.add_listener(lambda request: events.append(f"telegram {request.method}"))
    for app, label in ((first, "❓ Help"), (second, "« Menu")):
        via(alice, app)
        await settled(replicas)  # the last update's lease given back, after its reply
        events.clear()
        result = await alice.press(label)
        assert result.methods[0] == "answerCallbackQuery"
        assert events[0] == "telegram answerCallbackQuery", events
        # ...then the duplicate check and the lock, both in one round trip, and
        # the reply (the snapshot read on a replica that has none); their
        # release only after the update, in one more
        assert events[1] == "redis EVALSHA" and events[-1] == "telegram editMessageText", events
        assert events.count("redis EVALSHA") == 1, events
        await settled(replicas)
        assert events[-1] == "redis EVALSHA" and events.count("redis EVALSHA") == 2, events
    redelivered = await via(alice, second).feed(result.update)
    assert redelivered.methods == ["answerCallbackQuery"]  # answered, not handled again


async def test_with_replicas_the_dedup_and_the_lock_overlap_the_answers_round_trip(
    replicas, monkeypatch
):
    """With each Bot API call taking 50 ms, the press's answer still leaves
    first, and its duplicate check and lock run while Telegram answers it."""
    from redis.asyncio.connection import Connection

    first, second = replicas
    alice = person(first, "Alice", "alice_rtt")
    await alice.send("/start")
    events: list[str] = []
    original = Connection.send_packed_command

    async def sent(self, command, check_health=True):
        packed = command if isinstance(command, (bytes, bytearray)) else b"".join(command)
        name = packed.split(b"\r\n")[2].decode().upper() if packed.startswith(b"*") else "?"
        if name not in ("PING", "SUBSCRIBE"):  # the listeners' own traffic
            events.append(f"redis {name}")
        return await original(self, command, check_health)

    async def issued(make_request, bot, method):
        events.append(f"issued {method.__api_method__}")
        return await make_request(bot, method)

    monkeypatch.setattr(Connection, "send_packed_command", sent)
    telegram = first.bot.session
    assert isinstance(telegram, FakeTelegram)
    telegram.add_listener(lambda request: events.append(f"replied {request.method}"))
    telegram.middleware(issued)  # the session both replicas send through
    telegram.latency = 0.05
    for app, label in ((first, "❓ Help"), (second, "« Menu")):
        via(alice, app)
        await settled(replicas)  # the last update's lease given back, after its reply
        events.clear()
        await alice.press(label)
        assert events[0] == "issued answerCallbackQuery", events
        replied = events.index("replied answerCallbackQuery")
        # the update's lease and the user's lock, in one script
        assert "redis EVALSHA" in events[1:replied], events
        assert "issued editMessageText" in events[1:replied], events
