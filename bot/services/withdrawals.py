"""Withdrawals: requested by a user (the amount held at once), approved or
rejected by an admin, rejected when nobody decided in time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec

from bot.services.base import Actor, Outcome, Service, refuse_over_daily_limit
from bot.services.deals import bounded_text
from bot.services.errors import (
    AlreadyDone,
    InsufficientFunds,
    NotAllowed,
    Refusal,
    UserBlocked,
    WrongState,
)
from bot.services.ledger import DuplicateMovement, Leg, post_movement
from bot.services.views import WithdrawalView
from db import UnitOfWork
from db.models import LedgerAccount, LedgerKind, WithdrawalStatus
from db.sql.notifications import decode_notices
from db.sql.users import LOCK_USER
from db.sql.withdrawals import (
    DECIDE_WITHDRAWAL,
    INSERT_WITHDRAWAL,
    LOCK_STALE_WITHDRAWALS,
    LOCK_WITHDRAWAL,
    WITHDRAWAL_BY_REQUEST,
    WITHDRAWN_TODAY,
)

MAX_REFERENCE = 100  # a deposit's or withdrawal's reference, in characters
STALE_WITHDRAWAL_NOTE = "not decided in time"


def request_key(reference: str) -> str:
    """The ledger key of the hold a request with this reference made."""
    return f"withdrawal:request:{reference}"


def withdrawal_view(row: Any) -> WithdrawalView:
    mapping = row._mapping
    return WithdrawalView(
        **{name: mapping[name] for name in WithdrawalView.__struct_fields__ if name in mapping}
    )


class WithdrawalRequests(Service):
    async def request_withdrawal(
        self,
        user: Actor,
        currency: str,
        amount: int,
        destination: str,
        *,
        reference: str | None = None,
    ) -> Outcome[WithdrawalView]:
        """Hold `amount` for a payout to `destination` until an admin decides.

        With a `reference` (e.g. the confirmation message), the same request
        made twice (a double press, even on two replicas at once) is held once:
        the second gets `AlreadyDone` with the withdrawal the first made."""
        money = self._amount(currency, amount)
        destination = bounded_text(
            destination, self.settings.withdrawal_destination_max_length, "destination"
        )
        if reference is not None:
            reference = bounded_text(reference, MAX_REFERENCE, "reference")

        async def work(uow: UnitOfWork) -> WithdrawalView:
            if money.withdrawal_limit_per_day:
                params = {"user_id": user.id, "currency": money.code}
                await uow.execute(LOCK_USER, {"user_id": user.id})
                today = (await uow.execute(WITHDRAWN_TODAY, params)).one().total
                limit = money.withdrawal_limit_per_day
                refuse_over_daily_limit("withdrawal", money, limit, today, amount)
            row = (
                await uow.execute(
                    INSERT_WITHDRAWAL,
                    {
                        "user_id": user.id,
                        "currency": money.code,
                        "amount": amount,
                        "destination": destination,
                        "grace": self.ctx.notify_grace,
                        "admin_chats": list(self.settings.admins),
                    },
                )
            ).first()
            if row is None:
                raise UserBlocked(Refusal.CANT_WITHDRAW)
            uow.outbox(*decode_notices(row.notices))
            await post_movement(
                uow,
                key=request_key(reference) if reference else f"withdrawal:{row.id}:hold",
                currency=money.code,
                legs=[
                    Leg(LedgerKind.HOLD, LedgerAccount.AVAILABLE, -amount, user.id),
                    Leg(LedgerKind.HOLD, LedgerAccount.HELD, amount, user.id),
                ],
                withdrawal_id=row.id,
                shortfall=InsufficientFunds(
                    Refusal.WITHDRAWAL_SHORT, amount=amount, currency=money.code
                ),
            )
            return withdrawal_view(row)

        try:
            return await self.transaction(work)
        except DuplicateMovement:
            made = await self.requested_with(user, reference) if reference else None
            if made is None:
                raise WrongState(Refusal.WITHDRAWAL_REQUESTED) from None
            raise AlreadyDone(Refusal.WITHDRAWAL_REQUESTED, current=made) from None

    async def requested_with(self, user: Actor, reference: str) -> WithdrawalView | None:
        """The withdrawal `user` requested with this reference, if any (one read)."""
        params = {"key": request_key(reference), "user_id": user.id}
        async with self.ctx.db.reader.connect() as conn:
            row = (await conn.execute(WITHDRAWAL_BY_REQUEST, params)).first()
        return withdrawal_view(row) if row is not None else None

    async def approve_withdrawal(self, admin: Actor, withdrawal_id: int) -> Outcome[WithdrawalView]:
        """The payout was sent: the held amount leaves the escrow."""
        return await self._decide(admin, withdrawal_id, WithdrawalStatus.APPROVED, None)

    async def reject_withdrawal(
        self, admin: Actor, withdrawal_id: int, note: str | None = None
    ) -> Outcome[WithdrawalView]:
        """Refuse the payout: the held amount returns to the user's available funds."""
        if note is not None:
            note = bounded_text(note, self.settings.reason_max_length, "note")
        return await self._decide(admin, withdrawal_id, WithdrawalStatus.REJECTED, note)

    async def reject_stale_withdrawals(
        self, older_than_seconds: float, limit: int = 100
    ) -> Outcome[list[WithdrawalView]]:
        """Reject pending withdrawals older than this (no admin decided them):
        each held amount returns to its owner's available funds, exactly as an
        admin's rejection would (the same ledger movement and key)."""

        async def work(uow: UnitOfWork) -> list[WithdrawalView]:
            rows = await uow.execute(
                LOCK_STALE_WITHDRAWALS,
                {"older_than": timedelta(seconds=older_than_seconds), "limit": limit},
            )
            rejected = []
            for locked in rows.all():
                row = (
                    await uow.execute(
                        DECIDE_WITHDRAWAL,
                        {
                            "id": locked.id,
                            "status": WithdrawalStatus.REJECTED.value,
                            "admin_id": None,
                            "note": STALE_WITHDRAWAL_NOTE,
                            "grace": self.ctx.notify_grace,
                        },
                    )
                ).one()
                uow.outbox(*decode_notices(row.notices))
                await post_movement(
                    uow,
                    key=f"withdrawal:{locked.id}:{WithdrawalStatus.REJECTED.value}",
                    currency=locked.currency,
                    legs=[
                        Leg(LedgerKind.REFUND, LedgerAccount.HELD, -locked.amount, locked.user_id),
                        Leg(
                            LedgerKind.REFUND,
                            LedgerAccount.AVAILABLE,
                            locked.amount,
                            locked.user_id,
                        ),
                    ],
                    withdrawal_id=locked.id,
                )
                rejected.append(
                    msgspec.structs.replace(withdrawal_view(row), telegram_id=locked.telegram_id)
                )
            return rejected

        return await self.transaction(work)

    async def _decide(
        self, admin: Actor, withdrawal_id: int, status: WithdrawalStatus, note: str | None
    ) -> Outcome[WithdrawalView]:
        async def work(uow: UnitOfWork) -> WithdrawalView:
            locked = (
                await uow.execute(LOCK_WITHDRAWAL, {"id": withdrawal_id, "admin_id": admin.id})
            ).first()
            if not (locked and locked.admin_ok):
                # Non-admins learn nothing about withdrawals that aren't theirs.
                raise NotAllowed(Refusal.ADMIN_DECIDES_WITHDRAWALS)
            current = withdrawal_view(locked)
            if locked.status != WithdrawalStatus.PENDING:
                raise WrongState(
                    Refusal.WITHDRAWAL_DECIDED,
                    current=current,
                    withdrawal=locked.id,
                    status=WithdrawalStatus(locked.status),
                )
            row = (
                await uow.execute(
                    DECIDE_WITHDRAWAL,
                    {
                        "id": locked.id,
                        "status": status.value,
                        "admin_id": admin.id,
                        "note": note,
                        "grace": self.ctx.notify_grace,
                    },
                )
            ).one()
            uow.outbox(*decode_notices(row.notices))
            user_id, amount = locked.user_id, locked.amount
            if status is WithdrawalStatus.APPROVED:
                legs = [
                    Leg(LedgerKind.WITHDRAWAL, LedgerAccount.HELD, -amount, user_id),
                    Leg(LedgerKind.WITHDRAWAL, LedgerAccount.EXTERNAL, amount),
                ]
            else:
                legs = [
                    Leg(LedgerKind.REFUND, LedgerAccount.HELD, -amount, user_id),
                    Leg(LedgerKind.REFUND, LedgerAccount.AVAILABLE, amount, user_id),
                ]
            await post_movement(
                uow,
                key=f"withdrawal:{locked.id}:{status.value}",
                currency=locked.currency,
                legs=legs,
                withdrawal_id=locked.id,
            )
            return msgspec.structs.replace(withdrawal_view(row), telegram_id=locked.telegram_id)

        return await self.transaction(work)
