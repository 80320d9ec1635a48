"""Admins blocking and unblocking users: finding the user, the change with its
audit row and the user told, in one statement."""

from __future__ import annotations

from sqlalchemy import text

from db.sql.notifications import NOTICES, notified

_STANDING = "u.id, u.telegram_id, u.username, u.first_name, u.status, u.is_admin"
# One user, by Telegram id or by @username (lower-cased; a name has one holder).
_WHO = """(u.telegram_id = CAST(:telegram_id AS bigint)
       OR lower(u.username) = CAST(:username AS varchar))"""
_UNFINISHED = "('pending', 'accepted', 'funded', 'delivered', 'disputed')"

# A user as an admin sees them: standing, unfinished deals, and the latest
# block or unblock (by whom, why); only for the user :admin_id if their row is
# an active admin (as `reads.admin_only`).
USER_FOR_ADMIN = text(f"""
SELECT gate.admin_ok, seen.*
FROM (SELECT bool_or(is_admin AND status = 'active') AS admin_ok
      FROM users WHERE id = :admin_id) gate
LEFT JOIN LATERAL (
    SELECT {_STANDING}, u.created_at,
           (SELECT count(*) FROM escrows WHERE buyer_id = u.id AND status IN {_UNFINISHED})
         + (SELECT count(*) FROM escrows WHERE seller_id = u.id AND status IN {_UNFINISHED})
               AS open_deals,
           c.reason, c.created_at AS changed_at,
           coalesce('@' || ca.username, ca.first_name) AS changed_by
    FROM users u
    LEFT JOIN LATERAL (SELECT reason, created_at, admin_id FROM user_status_changes
                       WHERE user_id = u.id ORDER BY id DESC LIMIT 1) c ON true
    LEFT JOIN users ca ON ca.id = c.admin_id
    WHERE {_WHO} AND gate.admin_ok
    LIMIT 1
) seen ON true
""")

# The user an admin blocks or unblocks, locked, with whether :admin_id is an
# active admin (their row, not their cached snapshot).
LOCK_USER_FOR_ADMIN = text(f"""
SELECT {_STANDING},
       (SELECT is_admin AND status = 'active' FROM users WHERE id = :admin_id) AS admin_ok
FROM users u
WHERE {_WHO}
FOR UPDATE OF u
""")

_USER_TOLD = notified(
    "chat_id, user_id, kind, actor_id, note, due_at",
    """
    SELECT c.telegram_id, c.id,
           CASE c.status WHEN 'blocked' THEN 'account_blocked' ELSE 'account_unblocked' END,
           CAST(:admin_id AS bigint), CAST(:reason AS text), now() + CAST(:grace AS interval)
    FROM changed c""",
)
# The user's new status (their snapshot's version bumped, so every replica
# reads it again), the audit row, and the user told, in one statement.
SET_USER_STATUS = text(f"""
WITH changed AS (
    UPDATE users SET status = :status, version = version + 1, updated_at = now()
    WHERE id = :user_id AND status <> :status
    RETURNING id, telegram_id, username, first_name, status, is_admin, version
), audit AS (
    INSERT INTO user_status_changes (user_id, admin_id, status, reason)
    SELECT id, :admin_id, status, :reason FROM changed
), {_USER_TOLD}
SELECT c.*{NOTICES} FROM changed c
""")
