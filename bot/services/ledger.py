"""Money movements: guarded wallet updates and their double-entry ledger legs.

A movement is posted by one SQL statement (`db.sql.ledger.POST_MOVEMENT`). If
a guard refuses a debit, fewer wallets come back than were moved and the
caller's transaction is rolled back: nothing of the movement stays.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from bot.services.base import violated_constraint
from bot.services.errors import InsufficientFunds, Refusal
from db import UnitOfWork
from db.events import UserChanged
from db.models import LedgerAccount, LedgerKind
from db.sql.ledger import POST_MOVEMENT

IDEMPOTENCY_CONSTRAINT = "uq_ledger_entries_idempotency_key_leg"


@dataclass(frozen=True, slots=True)
class Leg:
    kind: LedgerKind
    account: LedgerAccount
    amount: int  # signed minor units
    user_id: int | None = None


class DuplicateMovement(Exception):
    """A movement with this idempotency key was already posted."""


async def post_movement(
    uow: UnitOfWork,
    *,
    key: str,
    currency: str,
    legs: list[Leg],
    escrow_id: int | None = None,
    withdrawal_id: int | None = None,
    shortfall: InsufficientFunds | None = None,
) -> None:
    """Post one balanced movement; raise `shortfall` (or a plain InsufficientFunds)
    if a debit is refused."""
    legs = [leg for leg in legs if leg.amount]
    if sum(leg.amount for leg in legs) != 0:
        raise ValueError(f"unbalanced movement {key}: {legs}")
    deltas: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    fee = 0
    for leg in legs:
        if leg.account is LedgerAccount.AVAILABLE:
            deltas[leg.user_id][0] += leg.amount  # type: ignore[index]
        elif leg.account is LedgerAccount.HELD:
            deltas[leg.user_id][1] += leg.amount  # type: ignore[index]
        elif leg.account is LedgerAccount.FEES:
            fee += leg.amount
    # The statement locks the moved wallets in user order before changing any,
    # so two movements over the same pair of users cannot deadlock.
    moved = sorted((user, d) for user, d in deltas.items() if d != [0, 0])
    params = {
        "key": key,
        "currency": currency,
        "escrow_id": escrow_id,
        "withdrawal_id": withdrawal_id,
        "fee": fee,
        "move_users": [user for user, _ in moved],
        "move_available": [d[0] for _, d in moved],
        "move_held": [d[1] for _, d in moved],
        "leg_numbers": list(range(len(legs))),
        "leg_kinds": [leg.kind.value for leg in legs],
        "leg_accounts": [leg.account.value for leg in legs],
        "leg_users": [leg.user_id for leg in legs],
        "leg_amounts": [leg.amount for leg in legs],
    }
    try:
        rows = (await uow.execute(POST_MOVEMENT, params)).all()
    except IntegrityError as exc:
        if violated_constraint(exc) == IDEMPOTENCY_CONSTRAINT:
            raise DuplicateMovement(key) from exc
        raise
    if sum(row.wallets for row in rows) != len(moved):
        raise shortfall or InsufficientFunds(Refusal.NOT_ENOUGH_FUNDS)
    uow.record(*(UserChanged(row.id, row.telegram_id, row.version) for row in rows))
