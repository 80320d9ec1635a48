"""python -m bot doctor tells a healthy deployment from a broken one."""

from __future__ import annotations

import secrets

import msgspec
from sqlalchemy import text

from bot.config import PaymentsSettings
from bot.ops.doctor import report, run_doctor
from cache.settings import RedisSettings
from db.sql.hot import HOT_QUERIES
from tests.payments.fake_cryptopay import TOKEN, FakeCryptoPay


def deployment(config, pg_settings, redis_url, **database):
    return msgspec.structs.replace(
        config,
        database=msgspec.structs.replace(pg_settings, **database),
        redis=RedisSettings(url=redis_url),
        cache=msgspec.structs.replace(config.cache, key_prefix=f"doc{secrets.token_hex(3)}"),
    )


async def test_a_healthy_deployment(config, pg_settings, redis_url, engine, request):
    if pg_settings.read_url:  # steady: what the tests before wrote is replayed
        request.getfixturevalue("postgres_pair").wait_replayed()
    checks = await run_doctor(deployment(config, pg_settings, redis_url))
    by_name = {check.name: check for check in checks}
    assert all(check.ok for check in checks), report(checks)
    assert {query.name for query in HOT_QUERIES} <= set(by_name)
    assert by_name["invalidation listener"].detail.startswith("subscribed")
    assert report(checks).endswith("verdict: healthy")


async def test_an_unmigrated_database_and_a_dead_redis(config, pg_settings):
    broken = msgspec.structs.replace(
        deployment(config, pg_settings, "redis://127.0.0.1:1/0"),
        database=pg_settings.with_database("postgres"),
    )
    checks = await run_doctor(broken)
    by_name = {check.name: check for check in checks}
    assert not by_name["migrations"].ok
    assert not by_name["redis"].ok
    assert "NOT healthy: migrations, redis" in report(checks)


async def test_notifications_nobody_sends_make_it_unhealthy(
    config, pg_settings, redis_url, database
):
    async with database.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO notifications (chat_id, kind, due_at) VALUES"
                " (1, 'fund', now() - interval '2 minutes'), (2, 'fund', now() + interval '1 s')"
            )
        )
    checks = await run_doctor(deployment(config, pg_settings, redis_url))
    outbox = {check.name: check for check in checks}["notification outbox"]
    assert not outbox.ok
    assert outbox.detail.startswith("2 pending, 1 due for over 1 min")
    assert "NOT healthy: notification outbox" in report(checks)
    async with database.engine.begin() as conn:  # a worker took them: healthy again
        await conn.execute(text("UPDATE notifications SET status = 'sent'"))
    checks = await run_doctor(deployment(config, pg_settings, redis_url))
    assert {check.name: check for check in checks}["notification outbox"].ok


async def test_crypto_pays_balance_is_checked_against_what_users_are_owed(
    config, pg_settings, redis_url, services
):
    alice = await services.user("alice_doc", funds={"USDT": 25_00})
    async with FakeCryptoPay(TOKEN) as cryptopay:
        cryptopay.set_balance("USDT", "20")
        checked = msgspec.structs.replace(
            deployment(config, pg_settings, redis_url),
            payments=PaymentsSettings(
                provider="cryptopay",
                cryptopay_api_base=cryptopay.base_url,
                cryptopay_token=TOKEN,
            ),
        )
        short = {c.name: c for c in await run_doctor(checked)}["crypto pay USDT"]
        assert not short.ok
        assert short.detail == (
            "Crypto Pay 20.00 USDT · owed to users 25.00 USDT · fees 0.00 USDT · SHORT 5.00 USDT"
        )
        cryptopay.set_balance("USDT", "30")
        checks = await run_doctor(checked)
        assert {c.name: c for c in checks}["crypto pay USDT"].detail.endswith("margin 5.00 USDT")
        assert {c.name: c for c in checks}["crypto pay BTC"].ok
        assert alice.telegram_id  # owed through the ledger, as any user
