"""The metrics endpoint moves with traffic; health and slow updates are reported."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from bot.runtime.web import start_side_server


@pytest.fixture
async def side_server(app):
    runner = await start_side_server(app, "127.0.0.1", 0)
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


def value(scrape: str, sample: str) -> float:
    for line in scrape.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not in the scrape")


async def test_metrics_move_with_traffic(app, people, side_server):
    alice = people("Alice", "alice_metrics")
    async with aiohttp.ClientSession() as http:
        before = await (await http.get(f"{side_server}/metrics")).text()
        await alice.send("/start")
        for _ in range(3):
            await alice.press("❓ Help")
            await alice.press("« Menu")
        scrape = await (await http.get(f"{side_server}/metrics")).text()
    assert "escrow_update_seconds_count" not in before or 'route="help_button"' not in before
    assert value(scrape, 'escrow_update_seconds_count{route="help_button"}') == 3
    assert value(scrape, 'escrow_time_to_answer_seconds_count{route="help_button"}') == 3
    assert value(scrape, 'escrow_update_seconds_count{route="start"}') == 1
    # a warm press costs no SQL: all three help presses in the zero bucket
    assert (
        value(scrape, 'escrow_sql_statements_per_update_bucket{le="0.0",route="help_button"}') == 3
    )
    assert (
        value(scrape, 'escrow_redis_round_trips_per_update_bucket{le="0.0",route="help_button"}')
        == 3
    )
    # the first contact registered Alice: SQL and Redis moved then
    assert value(scrape, 'escrow_sql_statements_per_update_sum{route="start"}') >= 3
    assert value(scrape, 'escrow_cache_reads{level="l1",outcome="hit"}') >= 6
    assert value(scrape, 'escrow_invalidations{direction="sent"}') >= 1
    assert value(scrape, "escrow_invalidation_listener_up") == 1
    assert 'escrow_db_pool_connections{state="idle"}' in scrape


async def test_health_is_ready_with_every_service_up(side_server):
    async with aiohttp.ClientSession() as http:
        response = await http.get(f"{side_server}/healthz")
        assert response.status == 200
        assert await response.json() == {"postgres": True, "redis": True, "listener": True}


async def test_a_slow_update_is_logged_with_its_route_and_counts(app, people, caplog):
    app.metrics.slow_update_ns = 0  # every update is "slow"
    alice = people("Alice", "alice_slow")
    with caplog.at_level(logging.WARNING, logger="bot.updates"):
        await alice.send("/start")
        await alice.press("❓ Help")
    slow = [r for r in caplog.records if r.getMessage() == "slow update"]
    assert [r.route for r in slow] == ["start", "help_button"]
    assert slow[0].sql >= 3 and slow[1].sql == 0 and slow[1].redis == 0
    assert slow[1].answer_ms is not None and slow[1].answer_ms <= slow[1].ms


async def test_telegram_round_trips_do_not_make_an_update_slow(
    app, people, telegram, side_server, caplog
):
    # the threshold is the bot's own time: with every Bot API request taking
    # 60 ms, a 50 ms threshold flags nothing, and the round trip is reported
    alice = people("Alice", "alice_far")
    await alice.send("/start")
    telegram.latency = 0.06
    with caplog.at_level(logging.WARNING, logger="bot.updates"):
        await alice.press("❓ Help")  # its edit awaited: 60 ms; its answer not
        assert not [r for r in caplog.records if r.getMessage() == "slow update"]
        app.metrics.slow_update_ns = 0
        await alice.press("« Menu")
    (slow,) = [r for r in caplog.records if r.getMessage() == "slow update"]
    assert slow.route == "menu"
    assert 60 <= slow.telegram_ms <= slow.ms
    assert slow.ms - slow.telegram_ms < 50  # what the bot itself spent
    async with aiohttp.ClientSession() as http:
        scrape = await (await http.get(f"{side_server}/metrics")).text()
    server = value(scrape, 'escrow_update_server_seconds_sum{route="help_button"}')
    whole = value(scrape, 'escrow_update_seconds_sum{route="help_button"}')
    assert whole >= 0.06 and server < 0.05
