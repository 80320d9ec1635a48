"""Background jobs: deal expiry, the automatic release of delivered deals,
deadline reminders, timed-out withdrawals and pruning the notification
outbox, once per tick across all replicas.

Every replica runs the loop; each tick, the one that wins a job's Redis lock
(`coordination.JobLock`) runs it. Expiry is safe to run twice anyway (`FOR UPDATE
SKIP LOCKED`, guarded by status); the lock keeps the replicas from doing the
same work N times. What they tell people goes through the outbox: expiry and
timed-out withdrawals like any change, and a deadline reminder once per deal,
party and status (a unique index on the outbox rows).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from bot.payments.cryptopay.errors import CryptoPayUnavailable
from bot.payments.deposits import CryptoPayDeposits
from bot.payments.payouts import CryptoPayPayouts, Payouts
from bot.runtime.coordination import JobLock
from bot.runtime.notifier import Outbox
from bot.runtime.ticks import every
from bot.services import Services
from bot.services.wallets import DepositProvider
from bot.telegram.notices import reminded_actions

log = logging.getLogger(__name__)

BATCH = 500
PRUNE_BATCH = 5000


class BackgroundJobs:
    def __init__(
        self,
        services: Services,
        outbox: Outbox,
        lock: JobLock,
        interval_seconds: float,
        reminder_before_seconds: float = 0.0,
        withdrawal_timeout_seconds: float = 0.0,
        outbox_keep_seconds: float = 0.0,
        deposits: DepositProvider | None = None,
        payouts: Payouts | None = None,
    ) -> None:
        self.services = services
        self.deposits = deposits
        self.payouts = payouts
        self.payouts_settled = 0
        self.deposits_settled = 0
        self.reminder_before = reminder_before_seconds
        self.withdrawal_timeout = withdrawal_timeout_seconds
        self.outbox_keep = timedelta(seconds=outbox_keep_seconds)
        self.pruned = 0
        self.reminded = 0
        self.withdrawals_rejected = 0
        self.outbox = outbox
        self.lock = lock
        self.interval = interval_seconds
        self.ticks = 0
        self.expired = 0
        self.auto_released = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def tick(self) -> int:
        """Run the jobs this replica wins this tick; the number of deals expired."""
        expired = await self.expire()
        await self.release_due()
        if self.reminder_before:
            await self.remind()
        await self.remind_clocks()
        if self.withdrawal_timeout:
            await self.reject_stale_withdrawals()
        if self.outbox_keep:
            await self.prune_outbox()
        if isinstance(self.deposits, CryptoPayDeposits):
            await self.reconcile_deposits(self.deposits)
        if isinstance(self.payouts, CryptoPayPayouts):
            await self.reconcile_payouts(self.payouts)
        return expired

    async def reconcile_payouts(self, payouts: CryptoPayPayouts) -> int:
        """Settle payouts whose transfer's outcome was unknown (asking Crypto Pay
        by spend id first, sending only if it has none); the number settled."""
        if not await self.lock.acquire("reconcile_payouts", self._tick_ms()):
            return 0
        try:
            settled = await payouts.reconcile()
        except CryptoPayUnavailable as exc:
            log.warning("payouts not reconciled: Crypto Pay unavailable (%s)", exc)
            return 0
        if settled:
            log.info("reconciled %d payouts", settled)
        self.payouts_settled += settled
        return settled

    async def reconcile_deposits(self, deposits: CryptoPayDeposits) -> int:
        """Settle the open invoices Crypto Pay reports paid or expired (a webhook
        lost, disabled, or never reachable); the number settled now."""
        if not await self.lock.acquire("reconcile_deposits", self._tick_ms()):
            return 0
        try:
            settled = await deposits.reconcile()
        except CryptoPayUnavailable as exc:
            log.warning("deposits not reconciled: Crypto Pay unavailable (%s)", exc)
            return 0
        changed = [s for s in settled if s.value.outcome not in ("unchanged", "unknown")]
        if changed:
            log.info("reconciled %d deposits", len(changed))
        self.deposits_settled += len(changed)
        return len(changed)

    async def prune_outbox(self) -> int:
        """Delete notifications done with and older than the configured keep."""
        if not await self.lock.acquire("prune_outbox", self._tick_ms()):
            return 0
        pruned = 0
        while True:
            deleted = await self.services.outbox.prune(self.outbox_keep, PRUNE_BATCH)
            pruned += deleted
            if deleted < PRUNE_BATCH:
                break
        if pruned:
            log.info("deleted %d notifications older than %s", pruned, self.outbox_keep)
        self.pruned += pruned
        return pruned

    async def reject_stale_withdrawals(self) -> int:
        """Give back withdrawals no admin decided in time, and tell their owners."""
        if not await self.lock.acquire("reject_stale_withdrawals", self._tick_ms()):
            return 0
        outcome = await self.services.wallets.reject_stale_withdrawals(self.withdrawal_timeout)
        rejected = outcome.value
        await self.outbox.send(outcome.notices, *rejected)
        if rejected:
            log.info("rejected %d withdrawals no admin decided in time", len(rejected))
        self.withdrawals_rejected += len(rejected)
        return len(rejected)

    def _tick_ms(self) -> int:
        # A lock lives a little less than a tick, so the next tick is free again.
        return max(int(self.interval * 900), 1)

    async def remind(self) -> int:
        """Remind whoever must accept or fund a deal nearing its deadline, once
        per deal, party and status (through the outbox); the number sent now."""
        if not await self.lock.acquire("remind_deadlines", self._tick_ms()):
            return 0
        deals = await self.services.deals.nearing_deadline(self.reminder_before)
        due = [
            (telegram_id, user_id, deal)
            for deal in deals
            for user_id, telegram_id in (
                (deal.buyer_id, deal.buyer_telegram_id),
                (deal.seller_id, deal.seller_telegram_id),
            )
            if user_id is not None and telegram_id is not None and reminded_actions(deal, user_id)
        ]
        notices = await self.services.outbox.remind(due)
        sent = await self.outbox.send(notices, *deals)
        self.reminded += sent
        return sent

    async def release_due(self) -> int:
        """Release delivered deals whose buyer neither released nor disputed in
        time, and tell both parties; the number released. Safe on every replica
        at once (each deal is taken under a row lock, SKIP LOCKED); the lock
        keeps the others from looking for the same deals every tick."""
        if not await self.lock.acquire("release_due", self._tick_ms()):
            return 0
        released = 0
        while True:
            outcome = await self.services.deals.release_due(limit=BATCH)
            deals = outcome.value
            await self.outbox.send(outcome.notices, *deals)
            released += len(deals)
            if len(deals) < BATCH:
                break
        if released:
            log.info("released %d delivered deals automatically", released)
        self.auto_released += released
        return released

    async def remind_clocks(self) -> int:
        """Remind the seller before a delivery deadline, tell the buyer when it
        has passed, remind the buyer before an automatic release; each once
        per deal, party and reminder (through the outbox); the number sent now."""
        if not await self.lock.acquire("remind_clocks", self._tick_ms()):
            return 0
        due = await self.services.deals.clock_reminders()
        notices = await self.services.outbox.remind_of(due)
        sent = await self.outbox.send(notices, *{deal.id: deal for _, _, deal, _ in due}.values())
        self.reminded += sent
        return sent

    async def expire(self) -> int:
        """Expire overdue deals and tell both parties; the number expired."""
        if not await self.lock.acquire("expire_deals", self._tick_ms()):
            return 0
        self.ticks += 1
        expired = 0
        while True:
            outcome = await self.services.deals.expire_due(limit=BATCH)
            deals = outcome.value
            await self.outbox.send(outcome.notices, *deals)  # both parties of each
            expired += len(deals)
            if len(deals) < BATCH:
                break
        if expired:
            log.info("expired %d overdue deals", expired)
        self.expired += expired
        return expired

    def start(self) -> None:
        self._task = asyncio.create_task(
            every(self.interval, self._stop, self.tick, "background jobs"), name="background-jobs"
        )

    async def stop(self) -> None:
        """Let a running tick finish, then stop."""
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
