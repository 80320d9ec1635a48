"""Payouts through a payment provider (Crypto Pay's transfer).

An admin's approval of a withdrawal moves it to `sending`: its amount stays
held. The provider's transfer (idempotent by the withdrawal's spend id) then
settles it once, under a row lock:

- the transfer went through: `paid`, the held amount leaves (the same ledger
  key as a payout made by hand, `withdrawal:<id>:approved`), the owner told;
- the provider refused it: `failed`, the held amount is available again, the
  owner and the admins told;
- the outcome is unknown (a timeout, a 5xx): it stays `sending` and the
  reconciler asks the provider about the spend id before anything is sent again.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec

from bot.services.base import Actor, Outcome, Service
from bot.services.errors import NotAllowed, Refusal, WrongState
from bot.services.ledger import Leg, post_movement
from bot.services.views import WithdrawalView
from bot.services.withdrawals import withdrawal_view
from db import UnitOfWork
from db.models import LedgerAccount, LedgerKind, WithdrawalStatus
from db.sql.notifications import decode_notices
from db.sql.withdrawals import (
    APPROVE_FOR_PAYOUT,
    LOCK_WITH_OWNER,
    LOCK_WITHDRAWAL,
    SENDING,
    SETTLE_PAYOUT,
)


class PayoutService(Service):
    async def approve(
        self, admin: Actor, withdrawal_id: int, provider: str
    ) -> Outcome[WithdrawalView]:
        """An admin approves a pending withdrawal for the provider to pay: it is
        `sending`, its amount still held (nobody is told yet: nothing was sent)."""

        async def work(uow: UnitOfWork) -> WithdrawalView:
            locked = (
                await uow.execute(LOCK_WITHDRAWAL, {"id": withdrawal_id, "admin_id": admin.id})
            ).first()
            if not (locked and locked.admin_ok):
                raise NotAllowed(Refusal.ADMIN_DECIDES_WITHDRAWALS)
            if locked.status != WithdrawalStatus.PENDING:
                current = withdrawal_view(locked)
                raise WrongState(
                    Refusal.WITHDRAWAL_DECIDED,
                    current=current,
                    withdrawal=locked.id,
                    status=WithdrawalStatus(locked.status),
                )
            params = {"id": locked.id, "admin_id": admin.id, "provider": provider}
            row = (await uow.execute(APPROVE_FOR_PAYOUT, params)).one()
            return msgspec.structs.replace(withdrawal_view(row), telegram_id=locked.telegram_id)

        return await self.transaction(work)

    async def approve_unattended(
        self, withdrawal_id: int, provider: str
    ) -> Outcome[WithdrawalView | None]:
        """Approve a pending withdrawal for the provider's payout without an
        admin, if its currency allows that for its amount; None otherwise."""

        async def work(uow: UnitOfWork) -> WithdrawalView | None:
            locked = (await uow.execute(LOCK_WITH_OWNER, {"id": withdrawal_id})).first()
            if locked is None or locked.status != WithdrawalStatus.PENDING:
                return None
            if not 0 < locked.amount <= self.currencies[locked.currency].auto_payout_up_to:
                return None
            params = {"id": locked.id, "admin_id": None, "provider": provider}
            row = (await uow.execute(APPROVE_FOR_PAYOUT, params)).one()
            return msgspec.structs.replace(withdrawal_view(row), telegram_id=locked.telegram_id)

        return await self.transaction(work)

    async def settle(
        self, withdrawal_id: int, *, transfer_id: int | None, failure: str | None
    ) -> Outcome[WithdrawalView | None]:
        """Paid (`transfer_id`) or refused (`failure`), once; None if it was not
        `sending` any more (settled already)."""

        async def work(uow: UnitOfWork) -> WithdrawalView | None:
            locked = (await uow.execute(LOCK_WITH_OWNER, {"id": withdrawal_id})).first()
            if locked is None or locked.status != WithdrawalStatus.SENDING:
                return None
            paid = failure is None
            status = WithdrawalStatus.PAID if paid else WithdrawalStatus.FAILED
            row = (
                await uow.execute(
                    SETTLE_PAYOUT,
                    {
                        "id": locked.id,
                        "status": status.value,
                        "transfer_id": transfer_id,
                        "failure": failure,
                        "grace": self.ctx.notify_grace,
                        "admin_chats": list(self.settings.admins),
                    },
                )
            ).one()
            uow.outbox(*decode_notices(row.notices))
            user_id, amount = locked.user_id, locked.amount
            if paid:
                key = f"withdrawal:{locked.id}:{WithdrawalStatus.APPROVED.value}"
                legs = [
                    Leg(LedgerKind.WITHDRAWAL, LedgerAccount.HELD, -amount, user_id),
                    Leg(LedgerKind.WITHDRAWAL, LedgerAccount.EXTERNAL, amount),
                ]
            else:
                key = f"withdrawal:{locked.id}:{WithdrawalStatus.FAILED.value}"
                legs = [
                    Leg(LedgerKind.REFUND, LedgerAccount.HELD, -amount, user_id),
                    Leg(LedgerKind.REFUND, LedgerAccount.AVAILABLE, amount, user_id),
                ]
            await post_movement(
                uow, key=key, currency=locked.currency, legs=legs, withdrawal_id=locked.id
            )
            return msgspec.structs.replace(withdrawal_view(row), telegram_id=locked.telegram_id)

        return await self.transaction(work)

    async def sending(
        self,
        provider: str,
        after: int = 0,
        limit: int = 100,
        min_age: timedelta = timedelta(seconds=30),
    ) -> list[WithdrawalView]:
        """Payouts not settled yet (for the reconciler), by id: approved at least
        `min_age` ago (a younger one is most likely being sent right now)."""
        params = {"provider": provider, "after": after, "limit": limit, "min_age": min_age}
        async with self.ctx.db.reader.connect() as conn:
            rows = await conn.execute(SENDING, params)
            return [
                msgspec.structs.replace(withdrawal_view(row), telegram_id=row.telegram_id)
                for row in rows
            ]
