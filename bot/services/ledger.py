"""Money movements: guarded wallet updates and their double-entry ledger legs.

A movement is posted by one SQL statement that, in one snapshot:
- debits wallets with an UPDATE guarded by `available/held + delta >= 0`;
- credits wallets with an upsert (a wallet for a newly configured currency
  appears on its first credit);
- writes every leg to the ledger under the movement's idempotency key;
- adds the fee leg to the platform's fee account;
- bumps the version of every user whose wallets changed and returns it.
If a guard refuses a debit, fewer wallets come back than were moved and the
caller's transaction is rolled back: nothing of the movement stays.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from bot.services.base import violated_constraint
from bot.services.errors import InsufficientFunds, Refusal
from db import UnitOfWork
from db.events import UserChanged
from db.models import LedgerAccount, LedgerKind

POST_MOVEMENT = text("""
WITH locked AS (
    -- Lock the moved wallets in user order before any of them is changed (the
    -- debits below run before the credits, whatever the user order), so two
    -- movements over the same pair of wallets queue instead of deadlocking.
    -- `moves` reads this CTE, so it runs first.
    SELECT count(*) AS wallets FROM (
        SELECT id FROM wallets
        WHERE user_id = ANY(CAST(:move_users AS bigint[])) AND currency = :currency
        ORDER BY user_id FOR NO KEY UPDATE
    ) l
),
moves AS (
    SELECT m.* FROM unnest(
        CAST(:move_users AS bigint[]), CAST(:move_available AS bigint[]),
        CAST(:move_held AS bigint[])
    ) AS m(user_id, d_available, d_held), locked
),
debited AS (
    UPDATE wallets w
    SET available = w.available + m.d_available, held = w.held + m.d_held
    FROM moves m
    WHERE w.user_id = m.user_id AND w.currency = :currency
      AND (m.d_available < 0 OR m.d_held < 0)
      AND w.available + m.d_available >= 0 AND w.held + m.d_held >= 0
    RETURNING w.user_id
),
credited AS (
    INSERT INTO wallets (user_id, currency, available, held)
    SELECT m.user_id, :currency, m.d_available, m.d_held FROM moves m
    WHERE m.d_available >= 0 AND m.d_held >= 0
    ON CONFLICT (user_id, currency) DO UPDATE
    SET available = wallets.available + excluded.available,
        held = wallets.held + excluded.held
    RETURNING user_id
),
legs AS (
    INSERT INTO ledger_entries
        (idempotency_key, leg, kind, account, currency, user_id, escrow_id, withdrawal_id, amount)
    SELECT :key, l.leg, l.kind, l.account, :currency, l.user_id,
           CAST(:escrow_id AS bigint), CAST(:withdrawal_id AS bigint), l.amount
    FROM unnest(
        CAST(:leg_numbers AS smallint[]), CAST(:leg_kinds AS text[]),
        CAST(:leg_accounts AS text[]), CAST(:leg_users AS bigint[]),
        CAST(:leg_amounts AS bigint[])
    ) AS l(leg, kind, account, user_id, amount)
),
fees AS (
    INSERT INTO platform_accounts (currency, fees)
    SELECT :currency, CAST(:fee AS bigint) WHERE CAST(:fee AS bigint) > 0
    ON CONFLICT (currency) DO UPDATE
    SET fees = platform_accounts.fees + excluded.fees, updated_at = now()
)
UPDATE users u SET version = u.version + 1, updated_at = now()
FROM (
    SELECT user_id, count(*) AS wallets
    FROM (SELECT user_id FROM debited UNION ALL SELECT user_id FROM credited) changed
    GROUP BY user_id
) c
WHERE u.id = c.user_id
RETURNING u.id, u.telegram_id, u.version, c.wallets
""")

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
