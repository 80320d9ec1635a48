"""Snapshots, their encoding, the breaker and the settings: no Redis needed."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from bot.config import DEFAULT_PATH, ConfigError, load_config
from cache.breaker import CircuitBreaker
from cache.settings import CacheSettings
from cache.snapshots import (
    CODEC,
    SCHEMA_VERSION,
    ReputationSnapshot,
    SnapshotCodec,
    UserSnapshot,
    WalletSnapshot,
    parse_header,
    snapshot_from_rows,
)
from tests.cache.conftest import ManualClock


def row(**values: Any) -> SimpleNamespace:
    user = {
        "id": 1,
        "telegram_id": 42,
        "username": "alice",
        "first_name": "Alice",
        "last_name": None,
        "language_code": "en",
        "status": "active",
        "is_admin": False,
        "version": 3,
        "created_at": datetime(2026, 3, 1, tzinfo=UTC),
        "locale": None,
        "currency": None,
        "available": None,
        "held": None,
        # the record's counters in the row's currency: none yet
        **dict.fromkeys(
            ("deals", "volume", "disputes_opened", "disputes_lost", "ratings", "stars"), None
        ),
    }
    return SimpleNamespace(**(user | values))


def test_a_snapshot_is_built_from_the_loader_rows() -> None:
    snapshot = snapshot_from_rows(
        [row(currency="BTC", available=5, held=1), row(currency="USDT", available=700, held=0)]
    )
    assert snapshot is not None
    assert (snapshot.id, snapshot.telegram_id, snapshot.version) == (1, 42, 3)
    assert snapshot.wallets == (WalletSnapshot("BTC", 5, 1), WalletSnapshot("USDT", 700, 0))
    assert snapshot.wallet("USDT") == WalletSnapshot("USDT", 700, 0)
    assert snapshot.wallet("TON") is None
    assert snapshot.is_active
    assert snapshot.locale is None  # not chosen: Telegram's language_code decides
    chosen = snapshot_from_rows([row(locale="ru")])
    assert chosen is not None and chosen.locale == "ru"


def test_the_record_sums_the_counters_of_every_currency() -> None:
    snapshot = snapshot_from_rows(
        [
            row(currency="BTC", available=0, held=0),  # no record in BTC yet
            row(currency="TON", available=0, held=0, deals=1, volume=0, disputes_opened=1,
                disputes_lost=1, ratings=1, stars=2),
            row(currency="USDT", available=700, held=0, deals=4, volume=250_00,
                disputes_opened=0, disputes_lost=0, ratings=3, stars=14),
        ]
    )  # fmt: skip
    assert snapshot is not None
    assert snapshot.reputation == ReputationSnapshot(
        since=int(datetime(2026, 3, 1, tzinfo=UTC).timestamp()),
        deals=5,
        ratings=4,
        stars=16,
        disputes_opened=1,
        disputes_lost=1,
        volumes=(("USDT", 250_00),),
    )
    assert snapshot.reputation.average == 4.0
    assert snapshot.reputation.volume("USDT") == 250_00
    assert snapshot.reputation.volume("BTC") == 0
    newcomer = snapshot_from_rows([row(currency="USDT", available=1, held=0)])
    assert newcomer is not None and newcomer.reputation.average is None
    assert newcomer.reputation.deals == 0 and newcomer.reputation.since > 0


def test_a_user_without_wallets_and_an_unknown_user() -> None:
    snapshot = snapshot_from_rows([row()])  # the LEFT JOIN's NULL wallet columns
    assert snapshot is not None and snapshot.wallets == ()
    assert snapshot_from_rows([]) is None


def test_a_snapshot_is_frozen_and_round_trips_through_msgpack() -> None:
    snapshot = snapshot_from_rows([row(currency="USDT", available=1, held=2)])
    assert snapshot is not None
    with pytest.raises(AttributeError):
        snapshot.version = 4  # type: ignore[misc]
    raw = f"0:3:{SCHEMA_VERSION}:".encode() + CODEC.encode(snapshot)
    header = parse_header(raw)
    assert header is not None
    assert (header.generation, header.version, header.schema) == (0, 3, SCHEMA_VERSION)
    assert CODEC.decode(raw, header) == snapshot
    assert len(raw) < 60  # array-like: no field names on the wire, a newcomer's record small
    trader = msgspec.structs.replace(
        snapshot,
        reputation=ReputationSnapshot(
            since=2_000_000_000,
            deals=1_000,
            ratings=900,
            stars=4_321,
            disputes_opened=12,
            disputes_lost=3,
            volumes=(("USDT", 10**13), ("BTC", 10**10), ("TON", 10**14)),
        ),
    )
    assert len(CODEC.encode(trader)) - len(CODEC.encode(snapshot)) < 60  # the whole record


def test_a_tombstone_and_another_schema_decode_to_nothing() -> None:
    tombstone = b"0:3:0:"
    header = parse_header(tombstone)
    assert header is not None and CODEC.decode(tombstone, header) is None
    newer = SnapshotCodec(schema=SCHEMA_VERSION + 1)
    snapshot = snapshot_from_rows([row()])
    assert snapshot is not None
    raw = f"0:3:{SCHEMA_VERSION}:".encode() + CODEC.encode(snapshot)
    assert newer.decode(raw, parse_header(raw)) is None  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SnapshotCodec(schema=0)


def test_the_breaker_opens_probes_once_and_closes() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(2.0, clock)
    assert breaker.allow() and breaker.closed
    assert breaker.record_failure() is True
    assert not breaker.allow()
    clock.advance(2.0)
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else waits for it
    assert breaker.record_failure() is False  # it failed: open again, not "newly"
    assert not breaker.allow()
    clock.advance(2.0)
    assert breaker.allow()
    assert breaker.record_success() is True and breaker.closed
    assert breaker.record_success() is False


def test_a_probe_that_never_reports_does_not_wedge_the_breaker() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(1.0, clock)
    breaker.record_failure()
    clock.advance(1.0)
    assert breaker.allow()  # this probe's task is cancelled and never reports
    clock.advance(1.0)
    assert breaker.allow()


def test_config_toml_sets_every_cache_setting() -> None:
    load_config()  # valid as written
    text = DEFAULT_PATH.read_text(encoding="utf-8")
    section = text.split("[cache]", 1)[1].split("\n[", 1)[0]
    for name in CacheSettings.__struct_fields__:
        assert f"\n{name} = " in section, f"config.toml [cache] lacks {name}"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"ESCROW__CACHE__KEY_PREFIX": "two words"}, "cache.key_prefix"),
        ({"ESCROW__CACHE__REDIS_TIMEOUT_MS": "0"}, "cache.redis_timeout_ms"),
        ({"ESCROW__CACHE__TOMBSTONE_TTL_SECONDS": "0.5"}, "cache.tombstone_ttl_seconds"),
    ],
)
def test_bad_cache_settings_name_their_key(override: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(environ=override)


def test_the_snapshot_serves_as_the_services_actor() -> None:
    from bot.services.base import Actor

    def acting(actor: Actor) -> tuple[int, int]:
        return actor.id, actor.telegram_id

    snapshot = UserSnapshot(1, 42, None, "A", None, None, "active", False, 1)
    assert acting(snapshot) == (1, 42)
