"""Forms kept by the one process that gets every update (polling, local mode;
bot/telegram/owned_forms.py): read from memory, written only over what the
process last saw, so a form another process changed meanwhile (two
instances overlapping during a deploy, Redis restored) is never overwritten."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.redis import RedisStorage

from bot.runtime.app import App, build_app
from bot.sim import FakeTelegram, SimulatedUser
from bot.telegram import texts
from bot.telegram.fsm import FormKeyBuilder, GuardedStorage
from bot.telegram.owned_forms import Form, OwnedForms
from cache.keys import CacheKeys
from tests.e2e.conftest import ON_ONE_REDIS_AND_A_CLUSTER

pytestmark = ON_ONE_REDIS_AND_A_CLUSTER

_ids = itertools.count(95_000)


@pytest.fixture
async def two(replica_config) -> AsyncIterator[tuple[App, App]]:
    """Two single-process apps on one Redis: an old instance still polling
    while the new one starts."""
    old = await build_app(replica_config, session=FakeTelegram(), replicas=False)
    new = await build_app(replica_config, session=FakeTelegram(), replicas=False)
    yield old, new
    await new.aclose()
    await old.aclose()


def on(app: App, user_id: int, username: str = "ann_of", name: str = "Ann") -> SimulatedUser:
    telegram = app.bot.session
    assert isinstance(telegram, FakeTelegram)
    return SimulatedUser(
        telegram, app.bot, app.dispatcher, user_id=user_id, first_name=name, username=username
    )


async def redis_form(app: App, user_id: int) -> Form:
    storage = app.dispatcher.fsm.storage
    assert isinstance(storage, GuardedStorage)
    keys = storage.form_keys(StorageKey(app.bot.id, user_id, user_id))
    assert keys is not None
    return storage.decode(*await app.cache.cache.redis.mget(keys))


async def test_a_form_another_process_changed_is_never_overwritten(two) -> None:
    old, new = two
    user_id = next(_ids)
    bob = on(new, next(_ids), "bob_of", "Bob")
    await bob.send("/start")
    ann_old, ann_new = on(old, user_id), on(new, user_id)
    await ann_old.send("/start")
    await ann_old.send("/new")
    await ann_old.press("I'm buying")  # the old instance keeps the form at this step
    # the new instance gets her next updates: it reads the form from Redis
    await ann_new.send("/start")
    await ann_new.send("/new")
    await ann_new.press("I'm selling")
    await ann_new.send("@bob_of")
    moved_on = await redis_form(new, user_id)
    assert moved_on.data.get("role") == "seller"

    # one more reaches the old instance: its copy is out of date, so its write
    # is refused, nothing is written and Ann is asked to send it again
    refused = await ann_old.send("@bob_of")
    assert refused.texts == [texts.MESSAGE_NOT_READ]
    assert await redis_form(old, user_id) == moved_on
    storage = old.dispatcher.fsm.storage
    assert isinstance(storage, GuardedStorage) and storage.owned is not None
    assert storage.owned.moved == 1

    # sent again, it is read from Redis: the step the new instance left it at
    again = await ann_old.send("@bob_of")
    assert texts.MESSAGE_NOT_READ not in again.texts and again.texts
    assert await redis_form(old, user_id) == moved_on
    # (a form read from Redis is kept once this process writes it: until then,
    # how long its keys have left is not known here)
    assert storage.owned.get(StorageKey(old.bot.id, user_id, user_id)) is None


async def test_a_copy_lasts_as_long_as_its_keys_and_the_least_used_go_first(
    replica_config,
) -> None:
    app = await build_app(replica_config, session=FakeTelegram(), replicas=False)
    try:
        now = [0.0]
        builder = FormKeyBuilder(prefix=CacheKeys(replica_config.cache.key_prefix).forms)
        redis_storage = RedisStorage(app.cache.cache.redis, builder, 60, 60)
        owned = OwnedForms(redis_storage, capacity=2, clock=lambda: now[0])
        keys = [StorageKey(1, user, user) for user in (1, 2, 3)]
        for key in keys[:2]:
            owned.keep(key, Form("Wizard:amount", {"n": key.user_id}), (b"Wizard:amount", None))
        now[0] = 59.0
        assert owned.get(keys[0]) is not None  # used: the other one is the least used
        owned.keep(keys[2], Form(None, {}), (None, None))
        assert owned.get(keys[1]) is None and owned.get(keys[2]) is not None
        now[0] = 60.0  # as long as the keys' TTL from the last write
        assert owned.get(keys[0]) is None
        assert owned.get(keys[2]) is not None
        now[0] = 119.0
        assert owned.get(keys[2]) is None
    finally:
        await app.aclose()
