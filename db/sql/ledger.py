"""Wallets and the ledger: the statements that change balances.

A movement is posted by one statement (`POST_MOVEMENT`) that, in one snapshot:
- debits wallets with an UPDATE guarded by `available/held + delta >= 0`;
- credits wallets with an upsert (a wallet for a newly configured currency
  appears on its first credit);
- writes every leg to the ledger under the movement's idempotency key;
- adds the fee leg to the platform's fee account;
- bumps the version of every user whose wallets changed and returns it.
If a guard refuses a debit, fewer wallets come back than were moved.
"""

from __future__ import annotations

from sqlalchemy import text

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

# Only wallets that are missing: an INSERT that meets an existing wallet while a
# money movement is changing it waits for that movement, which in turn waits for
# the user row this transaction has just locked (a deadlock).
ADD_WALLETS = text("""
INSERT INTO wallets (user_id, currency)
SELECT :user_id, code FROM unnest(CAST(:currencies AS varchar[])) AS code
WHERE NOT EXISTS (SELECT FROM wallets w WHERE w.user_id = :user_id AND w.currency = code)
ON CONFLICT (user_id, currency) DO NOTHING
RETURNING currency
""")
