"""Background jobs run once per tick across replicas, and deal expiry tells
both parties."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiogram.exceptions import TelegramServerError
from sqlalchemy import text

from bot.runtime.coordination import JobLock
from bot.runtime.jobs import BackgroundJobs
from bot.telegram.notice_texts import TOLD
from cache.keys import CacheKeys
from db.models import NotificationKind
from tests.e2e.conftest import ON_ONE_REDIS_AND_A_CLUSTER
from tests.e2e.test_outbox import make_due, server_down


def jobs_of(app, interval: float = 1.0) -> BackgroundJobs:
    keys = CacheKeys(app.config.cache.key_prefix)
    return BackgroundJobs(
        app.services,
        app.outbox,
        JobLock(app.cache.cache.redis, keys),
        interval,
    )


async def overdue_deal(app, people) -> tuple[str, object, object]:
    alice, bob = people("Alice", "alice_x"), people("Bob", "bob_x")
    await alice.send("/start")
    await bob.send("/start")
    actor = await app.cache.cache.get(alice.id)
    created = await app.services.deals.create(
        actor,
        role="buyer",
        currency="USDT",
        amount=10_00,
        description="lamp",
        counterparty=await app.services.users.find_by_username("bob_x"),
    )
    code = created.value.deal.code
    async with app.database.engine.begin() as conn:
        await conn.execute(
            text("UPDATE escrows SET deadline_at = now() - interval '1 minute' WHERE code = :c"),
            {"c": code},
        )
    return code, alice, bob


@ON_ONE_REDIS_AND_A_CLUSTER
async def test_the_job_lock_lets_one_replica_run_per_tick(app):
    keys = CacheKeys(app.config.cache.key_prefix)
    redis = app.cache.cache.redis
    replicas = [JobLock(redis, keys) for _ in range(5)]
    won = await asyncio.gather(*(lock.acquire("expire_deals", 200) for lock in replicas))
    assert sorted(won) == [False] * 4 + [True]
    assert not await replicas[0].acquire("expire_deals", 200)
    await asyncio.sleep(0.25)  # the next tick
    assert await replicas[0].acquire("expire_deals", 200)
    assert await replicas[1].acquire("another_job", 200)  # each job has its own lock


async def test_overdue_deals_expire_once_across_replicas_and_both_parties_are_told(
    app, people, telegram
):
    code, alice, bob = await overdue_deal(app, people)
    replicas = [jobs_of(app) for _ in range(3)]
    expired = await asyncio.gather(*(jobs.tick() for jobs in replicas))
    assert sorted(expired) == [0, 0, 1]
    assert sum(jobs.ticks for jobs in replicas) == 1
    deal = await app.services.deals.get(await app.cache.cache.get(alice.id), code)
    assert deal.status == "expired"
    for user in (alice, bob):
        assert user.last.text.startswith(TOLD[NotificationKind.EXPIRE]), user
        assert f"#{code}" in user.last.text
    # nothing more to do on the next tick
    await asyncio.sleep(1.0)
    assert await replicas[0].tick() == 0


async def test_the_jobs_loop_ticks_until_stopped(app, people):
    _, alice, _ = await overdue_deal(app, people)
    jobs = jobs_of(app, interval=0.05)
    jobs.start()
    for _ in range(100):
        if jobs.expired:
            break
        await asyncio.sleep(0.02)
    await jobs.stop()
    assert jobs.expired == 1
    assert alice.last.text.startswith(TOLD[NotificationKind.EXPIRE])


async def set_deadline(app, code: str, interval: str) -> None:
    async with app.database.engine.begin() as conn:
        await conn.execute(
            text(f"UPDATE escrows SET deadline_at = now() + interval '{interval}' WHERE code = :c"),
            {"c": code},
        )


async def test_whoever_must_act_is_reminded_once_before_the_deadline(app, people):
    code, alice, bob = await overdue_deal(app, people)
    await set_deadline(app, code, "3 hours")
    replicas = [jobs_of(app) for _ in range(2)]
    for jobs in replicas:
        jobs.reminder_before = 12 * 3600
    alice_before = len(alice.messages)

    sent = await asyncio.gather(*(jobs.remind() for jobs in replicas))
    assert sorted(sent) == [0, 1]  # one replica, one reminder: Bob must accept
    assert bob.last.text.startswith("⏰ Reminder: this deal expires in 3 h unless you accept it.")
    assert "✅ Accept" in bob.buttons()
    assert len(alice.messages) == alice_before  # Alice can only cancel: nothing to remind

    await asyncio.sleep(1.0)  # the next tick: not reminded twice
    assert await replicas[0].remind() == 0

    await bob.press("✅ Accept")  # now Alice must fund: a new reminder for the new status
    await asyncio.sleep(1.0)
    assert await replicas[1].remind() == 1
    assert alice.last.text.startswith("⏰ Reminder: this deal expires in 3 h unless you fund it.")


async def test_deals_far_from_their_deadline_are_not_reminded(app, people):
    code, _, bob = await overdue_deal(app, people)
    await set_deadline(app, code, "2 days")
    jobs = jobs_of(app)
    jobs.reminder_before = 12 * 3600
    assert await jobs.remind() == 0
    assert not bob.last.text.startswith("⏰")


async def test_a_withdrawal_no_admin_decided_in_time_is_given_back_once(app, people):
    alice = people("Alice", "alice_wd")
    await alice.send("/start")
    actor = await app.cache.cache.get(alice.id)
    await app.services.wallets.credit_deposit(actor, "USDT", 100_00, reference="seed:wd")
    old = (await app.services.wallets.request_withdrawal(actor, "USDT", 40_00, "addr 1")).value
    fresh = (await app.services.wallets.request_withdrawal(actor, "USDT", 10_00, "addr 2")).value
    async with app.database.engine.begin() as conn:
        await conn.execute(
            text("UPDATE withdrawals SET created_at = now() - interval '4 days' WHERE id = :id"),
            {"id": old.id},
        )
    replicas = [jobs_of(app) for _ in range(2)]
    for jobs in replicas:
        jobs.withdrawal_timeout = 72 * 3600

    rejected = await asyncio.gather(*(jobs.reject_stale_withdrawals() for jobs in replicas))
    assert sorted(rejected) == [0, 1]
    assert alice.last.text.startswith(
        f"✖️ Your withdrawal #{old.id} of 40.00 USDT was not decided in time"
    )
    await alice.send("/wallet")
    assert "USDT: 90.00 USDT available · 10.00 USDT held" in alice.last.text  # fresh still held
    async with app.database.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT id, status, note FROM withdrawals ORDER BY id"),
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (old.id, "rejected", "not decided in time"),
        (fresh.id, "pending", None),
    ]
    await asyncio.sleep(1.0)  # the next tick: nothing left to give back
    assert await replicas[0].reject_stale_withdrawals() == 0


async def test_old_notifications_are_pruned_but_never_pending_ones(app):
    async with app.database.engine.begin() as conn:
        await conn.execute(
            text("""
INSERT INTO notifications (chat_id, kind, status, created_at)
SELECT g, 'fund', (ARRAY['sent', 'undeliverable', 'failed', 'pending'])[g % 4 + 1],
       now() - CASE WHEN g <= 12000 THEN interval '40 days' ELSE interval '2 days' END
FROM generate_series(1, 12100) g
""")
        )
    replicas = [jobs_of(app) for _ in range(2)]
    for jobs in replicas:
        jobs.outbox_keep = timedelta(days=30)

    pruned = await asyncio.gather(*(jobs.prune_outbox() for jobs in replicas))
    assert sorted(pruned) == [0, 9000]  # one replica ran it, in batches of 5000
    async with app.database.engine.connect() as conn:
        left = dict(
            (
                await conn.execute(
                    text(
                        "SELECT created_at < now() - interval '30 days' AND status <> 'pending',"
                        " count(*) FROM notifications GROUP BY 1"
                    )
                )
            ).all()
        )
    assert left == {False: 3000 + 100}  # the old pending ones and every recent one


async def test_a_reminder_telegram_failed_to_take_is_sent_later_unless_it_is_moot(
    app, people, telegram
):
    code, alice, bob = await overdue_deal(app, people)
    await set_deadline(app, code, "3 hours")
    async with app.database.engine.begin() as conn:  # the invitation: not this test's
        await conn.execute(text("UPDATE notifications SET status = 'sent'"))
    jobs = jobs_of(app)
    jobs.reminder_before = 12 * 3600
    telegram.fail_next("sendMessage", error=server_down(TelegramServerError))
    assert await jobs.remind() == 0  # Telegram was down: not sent, not forgotten
    await asyncio.sleep(1.0)
    assert await jobs.remind() == 0  # and not written twice
    await make_due(app)
    assert await app.outbox.run_once() == 1
    assert bob.last.text.startswith("⏰ Reminder: this deal expires in 3 h unless you accept it.")

    await bob.press("✅ Accept")  # Alice must fund now; her reminder fails to go out ...
    await asyncio.sleep(1.0)
    telegram.fail_next("sendMessage", error=server_down(TelegramServerError))
    assert await jobs.remind() == 0
    buyer = await app.cache.cache.get(alice.id)
    await app.services.wallets.credit_deposit(buyer, "USDT", 10_00, reference="seed:moot")
    await alice.press("💰 Fund 10.00 USDT")  # ... and she funds before it is retried
    await app.outbox.flush()  # the tick that records what the handlers sent
    await make_due(app)
    assert await app.outbox.run_once() == 0  # a reminder to fund a funded deal is not sent
    await app.outbox.flush()
    async with app.database.engine.connect() as conn:
        reminders = (
            await conn.execute(
                text(
                    "SELECT chat_id, note, status FROM notifications"
                    " WHERE kind = 'remind' ORDER BY id"
                )
            )
        ).all()
    assert reminders == [(bob.id, "pending", "sent"), (alice.id, "accepted", "obsolete")]
