"""Deposits through a provider's invoice: the row written before the invoice,
its activation, and its settlement (with who is told, in a `notified` CTE of
the same statement: `notifications.notified`)."""

from __future__ import annotations

from sqlalchemy import text

from db.sql.notifications import NOTICES, notified

DEPOSIT_COLUMNS = (
    "id, user_id, currency, amount, provider, invoice_id, pay_url, status, paid_asset,"
    " paid_amount, fee, created_at, expires_at, settled_at"
)

OPEN_DEPOSIT = text(f"""
INSERT INTO deposits (user_id, currency, amount, provider)
SELECT id, :currency, :amount, :provider FROM users WHERE id = :user_id AND status = 'active'
RETURNING {DEPOSIT_COLUMNS}
""")

# What the user has asked to deposit in this currency in the last 24 hours. The
# user's row is locked by an earlier statement (users.LOCK_USER): a statement
# that waits for a row lock still sums what it saw when it began, so a lock
# taken here would let two forms at once both pass the limit.
DEPOSITED_TODAY = text("""
SELECT coalesce(sum(d.amount), 0) AS total
FROM deposits d
WHERE d.user_id = :user_id AND d.currency = :currency
  AND d.created_at > now() - interval '1 day' AND d.status IN ('creating', 'active', 'paid')
""")

ACTIVATE = text(f"""
UPDATE deposits SET status = 'active', invoice_id = :invoice_id, pay_url = :pay_url,
                    expires_at = :expires_at
WHERE id = :id AND status = 'creating'
RETURNING {DEPOSIT_COLUMNS}
""")

ABANDON = text(
    "UPDATE deposits SET status = 'failed', settled_at = now() WHERE id = :id"
    " AND status = 'creating'"
)

LOCK_BY_INVOICE = text(f"""
SELECT {DEPOSIT_COLUMNS} FROM deposits
WHERE provider = :provider AND invoice_id = :invoice_id
FOR UPDATE
""")

# The settlement, and who is told about it (the outbox), in one statement.
_TOLD_OF_SETTLEMENT = notified(
    "chat_id, user_id, kind, deposit_id, actor_id, due_at",
    """
    SELECT u.telegram_id, u.id, 'deposit_credited', s.id, NULL, now() + CAST(:grace AS interval)
    FROM settled s JOIN users u ON u.id = s.user_id
    WHERE CAST(:status AS varchar) = 'paid'
    UNION ALL
    SELECT a.chat_id, NULL, 'deposit_mismatch', s.id, s.user_id, now() + CAST(:grace AS interval)
    FROM settled s CROSS JOIN unnest(CAST(:admin_chats AS bigint[])) AS a(chat_id)
    WHERE CAST(:status AS varchar) = 'mismatched'""",
)
SETTLE = text(f"""
WITH settled AS (
    UPDATE deposits
    SET status = :status, paid_asset = :paid_asset, paid_amount = :paid_amount,
        fee = :fee, settled_at = now()
    WHERE id = :id AND status IN ('creating', 'active')
    RETURNING id, user_id
), {_TOLD_OF_SETTLEMENT}
SELECT s.id{NOTICES} FROM settled s
""")

# Deposits still waiting for the provider (the reconciler's poll), by id.
UNSETTLED = text(f"""
SELECT {DEPOSIT_COLUMNS} FROM deposits
WHERE status IN ('creating', 'active') AND provider = :provider AND id > :after
ORDER BY id LIMIT :limit
""")

# The deposits a batch of notifications is about, as they are now.
DEPOSITS_BY_ID = text(f"SELECT {DEPOSIT_COLUMNS} FROM deposits WHERE id = ANY(:ids)")
