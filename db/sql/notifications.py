"""The notification outbox: rows written by the statement that makes a change,
claimed and marked by the worker that sends them.

A use case's statement inserts its notifications in a `notified` CTE (built by
`notified` or `notify_parties` below) and lists the inserted rows as JSON with
`NOTICES`; no statement is added to the transaction. New rows are due only
after a grace period, the time the handler gets to send them itself; the
worker sends whatever is still pending after that.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from db.models import Notification


class Notice(msgspec.Struct, frozen=True):
    """One notification row, as the use case that wrote it hands it back."""

    id: int
    chat_id: int
    kind: str
    user_id: int | None = None
    escrow_id: int | None = None
    withdrawal_id: int | None = None
    deposit_id: int | None = None
    actor_id: int | None = None
    note: str | None = None
    attempts: int = 0
    evidence_id: int | None = None
    # The recipient's language when it was written: their chosen locale, else
    # Telegram's language_code; None for a chat not on the bot.
    language: str | None = None


def decode_notices(value: list[dict[str, Any]] | None) -> tuple[Notice, ...]:
    """The `notices` column of a statement that wrote notifications (JSON, which
    the driver has already parsed)."""
    return msgspec.convert(value, tuple[Notice, ...]) if value else ()


NOTICE_COLUMNS = (
    "id, chat_id, kind, user_id, escrow_id, withdrawal_id, deposit_id, actor_id, note, attempts"
    ", evidence_id, language"
)
# The recipient's language, from `lu`, the users row of the notification's chat.
RECIPIENT_LANGUAGE = "coalesce(lu.locale, lu.language_code)"

# A column listing what a `notified` CTE inserted (spliced into a SELECT list).
NOTICES = (
    ", (SELECT json_agg(json_build_object("
    + ", ".join(f"'{c}', n.{c}" for c in NOTICE_COLUMNS.split(", "))
    + ") ORDER BY n.id) FROM notified n) AS notices"
)


@cache
def _column_type(name: str) -> str:
    return Notification.__table__.c[name].type.compile(dialect=postgresql.dialect())


def notified(columns: str, rows: str) -> str:
    """A `notified` CTE for a statement's WITH list: the notifications `rows`
    (a SELECT of `columns` of the notifications table, ending on its last
    line) are inserted into the outbox, each in its recipient's language (the
    user whose chat it goes to), and returned for `NOTICES` to list."""
    names = [name.strip() for name in columns.split(",")]
    # typed as the table's columns: a NULL or a literal of the rows is not text
    typed = ", ".join(f"CAST(r.{name} AS {_column_type(name)})" for name in names)
    return f"""notified AS (
    INSERT INTO notifications ({columns}, language)
    SELECT {typed}, {RECIPIENT_LANGUAGE}
    FROM ({rows.strip()}) AS r({columns})
    LEFT JOIN users lu ON lu.telegram_id = r.chat_id
    RETURNING {NOTICE_COLUMNS}
)"""


def notify_parties(source: str) -> str:
    """A `notified` CTE: the parties of the deals in `source` (a CTE of escrow
    rows) other than :actor_id (NULL: both) are told :notify (NULL: nobody),
    the admins in :admin_chats that a dispute was opened."""
    return notified(
        "chat_id, user_id, kind, escrow_id, actor_id, note, due_at",
        f"""
    SELECT u.telegram_id, u.id, CAST(:notify AS varchar), c.id, CAST(:actor_id AS bigint),
           CAST(:note AS text), now() + CAST(:grace AS interval)
    FROM {source} c JOIN users u ON u.id IN (c.buyer_id, c.seller_id)
    WHERE CAST(:notify AS varchar) IS NOT NULL
      AND u.id IS DISTINCT FROM CAST(:actor_id AS bigint)
    UNION ALL
    SELECT a.chat_id, NULL, 'dispute_opened', c.id, CAST(:actor_id AS bigint),
           CAST(:note AS text), now() + CAST(:grace AS interval)
    FROM {source} c CROSS JOIN unnest(CAST(:admin_chats AS bigint[])) AS a(chat_id)""",
    )


# Deadline reminders, one per deal, party and status of the deal however often
# the job runs (the unique index): only the new ones come back.
REMIND = text(f"""
INSERT INTO notifications (chat_id, user_id, kind, escrow_id, note, due_at, language)
SELECT r.chat_id, r.user_id, 'remind', r.escrow_id, r.status, now() + CAST(:grace AS interval),
       {RECIPIENT_LANGUAGE}
FROM unnest(CAST(:chat_ids AS bigint[]), CAST(:user_ids AS bigint[]),
            CAST(:escrow_ids AS bigint[]), CAST(:statuses AS varchar[]))
     AS r(chat_id, user_id, escrow_id, status)
LEFT JOIN users lu ON lu.id = r.user_id
ON CONFLICT (escrow_id, user_id, note) WHERE kind = 'remind' DO NOTHING
RETURNING {NOTICE_COLUMNS}
""")

# Claim a batch of due notifications: each is leased (moved :lease into the
# future) before it is sent, so two workers never send the same row at once
# and a worker that dies mid-send leaves it to be tried again after the lease.
# The worker's poll, every tick on every replica.
CLAIM_DUE = text(f"""
WITH due AS (
SELECT id FROM notifications
WHERE status = 'pending' AND due_at <= now()
ORDER BY due_at
LIMIT :limit
FOR UPDATE SKIP LOCKED)
UPDATE notifications n
SET attempts = n.attempts + 1, due_at = now() + CAST(:lease AS interval)
FROM due WHERE n.id = due.id
RETURNING {", ".join("n." + c for c in NOTICE_COLUMNS.split(", "))}
""")

# Record what became of a batch: sent, undeliverable or failed. A transient
# failure keeps the row pending with its error; after a worker's attempt it is
# due again :base after it, doubling with each attempt up to :most (after the
# first, direct attempt it stays due at the end of its grace). One deferred
# (its send would have waited too long for the send budget: DEFERRED) is due
# at once: the worker waits its turn for it.
DEFERRED = "deferred: the send budget was spent for longer than an update waits"
MARK = text("""
UPDATE notifications n
SET status = m.status,
    sent_at = CASE WHEN m.status = 'sent' THEN now() END,
    last_error = m.error,
    due_at = CASE WHEN m.status = 'pending' AND m.error = CAST(:deferred AS text) THEN now()
                  WHEN m.status = 'pending' AND n.attempts > 0
                  THEN now() + least(CAST(:base AS interval) * power(2, n.attempts - 1),
                                     CAST(:most AS interval))
                  ELSE n.due_at END
FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS varchar[]), CAST(:errors AS text[]))
     AS m(id, status, error)
WHERE n.id = m.id AND n.status = 'pending'
""")

# Notifications done with (sent or given up) and older than :keep, a batch at a
# time (found by the BRIN index on created_at, deleted by primary key); pending
# ones are never pruned.
PRUNE = text("""
DELETE FROM notifications WHERE id = ANY(ARRAY(
    SELECT id FROM notifications
    WHERE created_at < now() - CAST(:keep AS interval) AND status <> 'pending'
    LIMIT :limit
))
""")
