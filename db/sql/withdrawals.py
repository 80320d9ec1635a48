"""Withdrawals: a user's request, an admin's decision, the provider's payout.

Every statement that decides a withdrawal also tells whom it concerns, in a
`notified` CTE of the same statement (`notifications.notified`).
"""

from __future__ import annotations

from sqlalchemy import text

from db.models import withdrawals
from db.sql.notifications import NOTICES, notified

# A withdrawal as `WithdrawalView` reads it.
COLUMNS = (
    "id",
    "user_id",
    "currency",
    "amount",
    "destination",
    "status",
    "created_at",
    "decided_at",
    "note",
)
WITHDRAWAL = tuple(withdrawals.c[name] for name in COLUMNS)  # the same, in Core
_COLUMNS = ", ".join(COLUMNS)
# ... with its owner's Telegram id, from `_OWNED`.
_WITH_OWNER = f"SELECT {', '.join('w.' + name for name in COLUMNS)}, u.telegram_id"
_OWNED = "FROM withdrawals w JOIN users u ON u.id = w.user_id"

# The request, and the admins told about it (the outbox), in one statement.
_ADMINS_TOLD_OF_REQUEST = notified(
    "chat_id, kind, withdrawal_id, actor_id, due_at",
    """
    SELECT a.chat_id, 'withdrawal_requested', r.id, r.user_id, now() + CAST(:grace AS interval)
    FROM requested r CROSS JOIN unnest(CAST(:admin_chats AS bigint[])) AS a(chat_id)""",
)
INSERT_WITHDRAWAL = text(f"""
WITH requested AS (
    INSERT INTO withdrawals (user_id, currency, amount, destination)
    SELECT id, :currency, :amount, :destination FROM users
    WHERE id = :user_id AND status = 'active'
    RETURNING {_COLUMNS}
), {_ADMINS_TOLD_OF_REQUEST}
SELECT r.*{NOTICES} FROM requested r
""")

# The withdrawal a request made, by its hold's ledger key (the request's
# idempotency key, e.g. its confirmation message), if it is this user's: a
# confirmation pressed again is shown the request it made.
WITHDRAWAL_BY_REQUEST = text(f"""
SELECT {", ".join("w." + name for name in COLUMNS)}
FROM ledger_entries l JOIN withdrawals w ON w.id = l.withdrawal_id
WHERE l.idempotency_key = :key AND l.leg = 0 AND w.user_id = :user_id
""")

# What the user has asked to withdraw in this currency in the last 24 hours,
# refused ones aside. The user's row is locked by an earlier statement
# (users.LOCK_USER), so two requests at once are counted one after the other:
# a statement that waits for a row lock still sums what it saw when it began.
WITHDRAWN_TODAY = text("""
SELECT coalesce(sum(w.amount), 0) AS total
FROM withdrawals w
WHERE w.user_id = :user_id AND w.currency = :currency
  AND w.created_at > now() - interval '1 day' AND w.status NOT IN ('rejected', 'failed')
""")

# A withdrawal locked for an admin's decision, with whether :admin_id is an
# active admin (their row, not their cached snapshot).
LOCK_WITHDRAWAL = text(f"""
{_WITH_OWNER},
       (SELECT is_admin AND status = 'active' FROM users WHERE id = :admin_id) AS admin_ok
{_OWNED}
WHERE w.id = :id
FOR UPDATE OF w
""")

# A withdrawal locked for a decision nobody makes by hand (an unattended
# approval, the payout's settlement).
LOCK_WITH_OWNER = text(f"""
{_WITH_OWNER}
{_OWNED}
WHERE w.id = :id
FOR UPDATE OF w
""")

# The decision, and its owner told about it (the outbox), in one statement.
_OWNER_TOLD_OF_DECISION = notified(
    "chat_id, user_id, kind, withdrawal_id, actor_id, due_at",
    """
    SELECT u.telegram_id, u.id, 'withdrawal_decided', d.id, CAST(:admin_id AS bigint),
           now() + CAST(:grace AS interval)
    FROM decided d JOIN users u ON u.id = d.user_id""",
)
DECIDE_WITHDRAWAL = text(f"""
WITH decided AS (
    UPDATE withdrawals
    SET status = :status, decided_at = now(), decided_by = :admin_id, note = :note
    WHERE id = :id AND status = 'pending'
    RETURNING {_COLUMNS}
), {_OWNER_TOLD_OF_DECISION}
SELECT d.*{NOTICES} FROM decided d
""")

# Pending withdrawals no admin decided in time, oldest first, skipping those
# an admin (or another replica) is deciding right now.
LOCK_STALE_WITHDRAWALS = text(f"""
{_WITH_OWNER}
{_OWNED}
WHERE w.status = 'pending' AND w.created_at <= now() - CAST(:older_than AS interval)
ORDER BY w.id
LIMIT :limit
FOR UPDATE OF w SKIP LOCKED
""")

# The withdrawals a batch of notifications is about, as they are now.
WITHDRAWALS_BY_ID = text(f"""
{_WITH_OWNER}
{_OWNED}
WHERE w.id = ANY(CAST(:ids AS bigint[]))
""")

# -- payouts through the provider -------------------------------------------------

APPROVE_FOR_PAYOUT = text(f"""
UPDATE withdrawals
SET status = 'sending', decided_at = now(), decided_by = :admin_id, payout = :provider
WHERE id = :id AND status = 'pending'
RETURNING {_COLUMNS}
""")

# The settlement, and who is told (the outbox), in one statement.
_TOLD_OF_PAYOUT = notified(
    "chat_id, user_id, kind, withdrawal_id, note, due_at",
    """
    SELECT u.telegram_id, u.id,
           CASE WHEN CAST(:status AS varchar) = 'paid' THEN 'withdrawal_paid'
                ELSE 'withdrawal_failed' END,
           s.id, CAST(:failure AS text), now() + CAST(:grace AS interval)
    FROM settled s JOIN users u ON u.id = s.user_id
    UNION ALL
    SELECT a.chat_id, NULL, 'payout_failed', s.id, CAST(:failure AS text),
           now() + CAST(:grace AS interval)
    FROM settled s CROSS JOIN unnest(CAST(:admin_chats AS bigint[])) AS a(chat_id)
    WHERE CAST(:status AS varchar) = 'failed'""",
)
SETTLE_PAYOUT = text(f"""
WITH settled AS (
    UPDATE withdrawals
    SET status = :status, transfer_id = :transfer_id, failure = :failure,
        paid_at = CASE WHEN CAST(:status AS varchar) = 'paid' THEN now() END
    WHERE id = :id AND status = 'sending'
    RETURNING {_COLUMNS}
), {_TOLD_OF_PAYOUT}
SELECT s.*{NOTICES} FROM settled s
""")

# Payouts not settled yet (the reconciler's poll), approved :min_age ago or more.
SENDING = text(f"""
{_WITH_OWNER}
{_OWNED}
WHERE w.status = 'sending' AND w.payout = :provider AND w.id > :after
  AND w.decided_at <= now() - CAST(:min_age AS interval)
ORDER BY w.id LIMIT :limit
""")
