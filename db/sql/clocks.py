"""The deals' clocks and pace: deals expired past their deadline, the
reminders before a deadline runs out, the automatic release of a delivered
deal, and how fast a creator opens deals (anti-spam). The statements a step
of a deal runs are in `db.sql.deals`."""

from __future__ import annotations

from sqlalchemy import text

from db.sql.deals import WITH_ACTOR, deal_view_sql
from db.sql.notifications import NOTICES, notify_parties

EXPIRE_DUE = text(
    """
WITH due AS (
    SELECT id, status FROM escrows
    WHERE status IN ('pending', 'accepted') AND deadline_at <= now()
    ORDER BY deadline_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), expired AS (
    UPDATE escrows e
    SET status = 'expired', version = e.version + 1, updated_at = now(), closed_at = now()
    FROM due WHERE e.id = due.id
    RETURNING e.*, due.status AS from_status
), history AS (
    INSERT INTO deal_events (escrow_id, actor_id, from_status, to_status, reason)
    SELECT id, NULL, from_status, 'expired', 'not accepted and funded by the deadline'
    FROM expired
), closed_invitations AS (
    UPDATE invitations SET status = 'expired', updated_at = now()
    WHERE escrow_id IN (SELECT id FROM expired) AND status = 'active'
), """
    + notify_parties("expired")
    + deal_view_sql("expired", NOTICES)
)

NEARING_DEADLINE = text(
    deal_view_sql("escrows")
    + """
WHERE d.status IN ('pending', 'accepted')
  AND d.deadline_at > now() AND d.deadline_at <= now() + CAST(:within AS interval)
ORDER BY d.deadline_at
LIMIT :limit"""
)

# The next delivered deal whose release clock ran out, locked as LOCK_DEAL
# locks a deal (with :actor_id NULL: the system); one another transaction
# holds (the buyer pressing release or dispute, another replica's job) is
# skipped, not waited for, and its status is checked again under the lock.
LOCK_DUE_RELEASE = text(
    WITH_ACTOR
    + """
WHERE d.status = 'delivered' AND d.release_due_at <= now()
ORDER BY d.release_due_at
LIMIT 1
FOR UPDATE OF d SKIP LOCKED"""
)

# Deals whose clock runs out within the reminders' reach: delivered ones due
# for release within :release_within, funded ones due for delivery within
# :deliver_within or overdue for less than :overdue_for (the buyer is told
# they may cancel for a refund).
CLOCKS_NEARING = text(
    deal_view_sql(
        """(
    (SELECT * FROM escrows
     WHERE status = 'delivered' AND release_due_at > now()
       AND release_due_at <= now() + CAST(:release_within AS interval)
     ORDER BY release_due_at LIMIT :limit)
    UNION ALL
    (SELECT * FROM escrows
     WHERE status = 'funded' AND deliver_due_at > now() - CAST(:overdue_for AS interval)
       AND deliver_due_at <= now() + CAST(:deliver_within AS interval)
     ORDER BY deliver_due_at LIMIT :limit)
)"""
    )
)

# How fast a creator (their row locked before, by LOCK_USER_BY_TELEGRAM_ID, so
# two creates at once are counted one after the other) opens deals: when the
# :deal_limit-th newest of their deals in the last :deal_window leaves it
# (NULL: under the limit), the same for their deals to strangers, and whether
# this deal, if :addressed to someone, is to a stranger: anyone but a user
# (:other_id) they had a funded deal with.
CREATION_PACE = text("""
SELECT now() AS now,
       (SELECT created_at + CAST(:deal_window AS interval) FROM escrows
        WHERE creator_id = :creator_id AND created_at > now() - CAST(:deal_window AS interval)
        ORDER BY created_at DESC OFFSET :deal_limit - 1 LIMIT 1) AS deals_until,
       (SELECT created_at + CAST(:stranger_window AS interval) FROM escrows
        WHERE creator_id = :creator_id AND to_stranger
          AND created_at > now() - CAST(:stranger_window AS interval)
        ORDER BY created_at DESC OFFSET :stranger_limit - 1 LIMIT 1) AS strangers_until,
       CAST(:addressed AS boolean) AND NOT EXISTS (
           SELECT FROM escrows WHERE buyer_id = :creator_id AND seller_id = :other_id
                                 AND funded_at IS NOT NULL
           UNION ALL
           SELECT FROM escrows WHERE seller_id = :creator_id AND buyer_id = :other_id
                                 AND funded_at IS NOT NULL
       ) AS to_stranger
""")
