"""Deposits through a payment provider's invoice (Crypto Pay).

A deposit row is written before the provider is asked for an invoice (so
every invoice we create has a row to settle against: its payload is the row's
id), then activated with the provider's invoice id and payment link. What the
provider later reports about the invoice — by its webhook or by the
reconciler's poll, in any order and as often as it likes — settles the row
once, under a row lock:

- paid in the invoiced asset and amount: credited through the ledger (key
  `deposit:<provider>:<invoice id>`, so never twice), the owner told;
- paid otherwise (another asset, another amount): not credited, recorded as
  `mismatched`, the admins told;
- expired: marked so.

An invoice nobody here created changes nothing (the caller logs and counts it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from bot.services.base import Actor, Outcome, Service, refuse_over_daily_limit
from bot.services.errors import Refusal, UserBlocked
from bot.services.ledger import Leg, post_movement
from db import UnitOfWork
from db.models import DepositStatus, LedgerAccount, LedgerKind
from db.sql.deposits import (
    ABANDON,
    ACTIVATE,
    DEPOSITED_TODAY,
    LOCK_BY_INVOICE,
    OPEN_DEPOSIT,
    SETTLE,
    UNSETTLED,
)
from db.sql.notifications import decode_notices
from db.sql.users import LOCK_USER


class DepositView(msgspec.Struct, frozen=True):
    id: int
    user_id: int
    currency: str
    amount: int  # minor units
    provider: str
    status: str
    invoice_id: int | None = None
    pay_url: str | None = None
    paid_asset: str | None = None
    paid_amount: str | None = None
    fee: int = 0  # the provider's, on the payment: credited is amount - fee
    created_at: datetime | None = None
    expires_at: datetime | None = None
    settled_at: datetime | None = None


def deposit_view(row: Any) -> DepositView:
    return msgspec.convert(dict(row._mapping), DepositView)


class Payment(msgspec.Struct, frozen=True):
    """What the provider reports about one of its invoices. `amount` is in the
    paid asset's minor units when the asset is one of ours and the amount is
    exact in them; None otherwise (it can't match, then)."""

    invoice_id: int
    status: str  # "active", "paid" or "expired"
    asset: str | None = None
    amount: int | None = None
    amount_text: str | None = None  # as reported, for the record
    # The provider's fee on it, in the same minor units (None: in another asset,
    # or not exact: it can't be booked, so the payment is not credited).
    fee: int | None = 0


class Settlement(msgspec.Struct, frozen=True):
    deposit: DepositView | None  # None: an invoice nobody here created
    outcome: str  # "credited", "mismatched", "expired", "unchanged", "unknown"


class DepositService(Service):
    async def open(self, user: Actor, currency: str, amount: int, provider: str) -> DepositView:
        """A deposit row for an invoice about to be created (its payload: the id)."""
        money = self._amount(currency, amount)

        async def work(uow: UnitOfWork) -> DepositView:
            params = {
                "user_id": user.id,
                "currency": money.code,
                "amount": amount,
                "provider": provider,
            }
            if money.deposit_limit_per_day:
                await uow.execute(LOCK_USER, {"user_id": user.id})
                today = (await uow.execute(DEPOSITED_TODAY, params)).one().total
                limit = money.deposit_limit_per_day
                refuse_over_daily_limit("deposit", money, limit, today, amount)
            row = (await uow.execute(OPEN_DEPOSIT, params)).first()
            if row is None:
                raise UserBlocked(Refusal.CANT_DEPOSIT)
            return deposit_view(row)

        return (await self.transaction(work)).value

    async def activate(
        self, deposit_id: int, invoice_id: int, pay_url: str, expires_at: datetime | None
    ) -> DepositView | None:
        """The provider created the invoice: it may be paid now."""
        params = {
            "id": deposit_id,
            "invoice_id": invoice_id,
            "pay_url": pay_url,
            "expires_at": expires_at,
        }

        async def work(uow: UnitOfWork) -> DepositView | None:
            row = (await uow.execute(ACTIVATE, params)).first()
            return deposit_view(row) if row is not None else None

        return (await self.transaction(work)).value

    async def abandon(self, deposit_id: int) -> None:
        """The provider refused to create the invoice: nothing can be paid."""

        async def work(uow: UnitOfWork) -> None:
            await uow.execute(ABANDON, {"id": deposit_id})

        await self.transaction(work)

    async def settle(self, provider: str, payment: Payment) -> Outcome[Settlement]:
        """Settle the deposit behind `payment` once (see the module docstring)."""

        async def work(uow: UnitOfWork) -> Settlement:
            params = {"provider": provider, "invoice_id": payment.invoice_id}
            row = (await uow.execute(LOCK_BY_INVOICE, params)).first()
            if row is None:
                return Settlement(None, "unknown")
            deposit = deposit_view(row)
            if deposit.status not in (DepositStatus.CREATING, DepositStatus.ACTIVE):
                return Settlement(deposit, "unchanged")
            if payment.status == "expired":
                status, outcome = DepositStatus.EXPIRED, "expired"
            elif payment.status != "paid":
                return Settlement(deposit, "unchanged")
            elif (
                payment.asset == deposit.currency
                and payment.amount == deposit.amount
                and payment.fee is not None
                and 0 <= payment.fee < deposit.amount
            ):
                # The wallet gets what the provider holds for it: paid less its fee.
                status, outcome = DepositStatus.PAID, "credited"
                credited = deposit.amount - payment.fee
                await post_movement(
                    uow,
                    key=f"deposit:{provider}:{payment.invoice_id}",
                    currency=deposit.currency,
                    legs=[
                        Leg(LedgerKind.DEPOSIT, LedgerAccount.EXTERNAL, -credited),
                        Leg(LedgerKind.DEPOSIT, LedgerAccount.AVAILABLE, credited, deposit.user_id),
                    ],
                )
            else:
                status, outcome = DepositStatus.MISMATCHED, "mismatched"
            settled = (
                await uow.execute(
                    SETTLE,
                    {
                        "id": deposit.id,
                        "status": status.value,
                        "paid_asset": payment.asset,
                        "paid_amount": payment.amount_text,
                        "fee": payment.fee if status is DepositStatus.PAID else 0,
                        "grace": self.ctx.notify_grace,
                        "admin_chats": list(self.settings.admins),
                    },
                )
            ).first()
            assert settled is not None  # the row is locked and was open
            uow.outbox(*decode_notices(settled.notices))
            fee = payment.fee if status is DepositStatus.PAID and payment.fee else 0
            return Settlement(
                msgspec.structs.replace(deposit, status=status.value, fee=fee), outcome
            )

        return await self.transaction(work)

    async def unsettled(self, provider: str, after: int = 0, limit: int = 100) -> list[DepositView]:
        """Deposits still waiting for the provider (for the reconciler), by id."""
        async with self.ctx.db.reader.connect() as conn:
            rows = await conn.execute(
                UNSETTLED, {"provider": provider, "after": after, "limit": limit}
            )
            return [deposit_view(row) for row in rows]
