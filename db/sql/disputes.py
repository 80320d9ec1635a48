"""Disputes: the evidence the parties send, and a dispute as an admin sees it
(the deal, who opened the dispute and why, and every piece of evidence)."""

from __future__ import annotations

from sqlalchemy import text

from db.sql.deals import deal_view_sql
from db.sql.notifications import NOTICES, notified

# A piece of evidence as `EvidenceView` reads it.
EVIDENCE_COLUMNS = "id, escrow_id, sender_id, kind, file_id, file_name, file_size, text, created_at"

# The admins are told of each piece (the outbox), to see it at once.
_ADMINS_TOLD_OF_EVIDENCE = notified(
    "chat_id, kind, escrow_id, actor_id, evidence_id, due_at",
    """
    SELECT a.chat_id, 'dispute_evidence', x.escrow_id, x.sender_id, x.id,
           now() + CAST(:grace AS interval)
    FROM added x CROSS JOIN unnest(CAST(:admin_chats AS bigint[])) AS a(chat_id)""",
)
# A party's evidence for an open dispute, within what one party may send about
# it, and the admins told, in one statement. Run with the deal locked
# (LOCK_DEAL): two pieces sent at once are counted one after the other, and a
# settlement (which locks the deal too) closes the dispute before or after it,
# never during. No row: the party has sent all they may.
INSERT_EVIDENCE = text(f"""
WITH added AS (
    INSERT INTO dispute_evidence (escrow_id, sender_id, kind, file_id, file_name, file_size, text)
    SELECT e.id, :sender_id, :kind, :file_id, :file_name, :file_size, :text
    FROM escrows e
    WHERE e.id = :deal_id AND e.status = 'disputed'
      AND CAST(:sender_id AS bigint) IN (e.buyer_id, e.seller_id)
      AND (SELECT count(*) FROM dispute_evidence
           WHERE escrow_id = :deal_id AND sender_id = :sender_id) < :per_party
    RETURNING {EVIDENCE_COLUMNS}
), {_ADMINS_TOLD_OF_EVIDENCE}
SELECT x.*,
       (SELECT count(*) FROM dispute_evidence
        WHERE escrow_id = :deal_id AND sender_id = :sender_id) + 1 AS sent{NOTICES}
FROM added x
""")

# The pieces a batch of notifications is about (the outbox worker).
EVIDENCE_BY_ID = text(
    f"SELECT {EVIDENCE_COLUMNS} FROM dispute_evidence WHERE id = ANY(CAST(:ids AS bigint[]))"
)

_EVIDENCE_JSON = ", ".join(f"'{c}', x.{c}" for c in EVIDENCE_COLUMNS.split(", "))

_DISPUTED_DEAL = deal_view_sql(
    "escrows",
    """,
       o.actor_id AS opened_by, coalesce('@' || ou.username, ou.first_name) AS opened_by_name,
       o.reason, o.created_at AS opened_at, ev.evidence""",
)

# A deal as an admin sees its dispute: who opened it (the newest move into
# dispute, with its reason) and every piece of evidence, oldest first; only for
# the user :admin_id if their row is an active admin (as `reads.admin_only`).
ADMIN_DISPUTE = text(f"""
SELECT gate.admin_ok, seen.*
FROM (SELECT bool_or(is_admin AND status = 'active') AS admin_ok
      FROM users WHERE id = :admin_id) gate
LEFT JOIN LATERAL (
{_DISPUTED_DEAL}
    LEFT JOIN LATERAL (SELECT actor_id, reason, created_at FROM deal_events
                       WHERE escrow_id = d.id AND to_status = 'disputed'
                       ORDER BY id DESC LIMIT 1) o ON true
    LEFT JOIN users ou ON ou.id = o.actor_id
    LEFT JOIN LATERAL (SELECT json_agg(json_build_object({_EVIDENCE_JSON}) ORDER BY x.id)
                              AS evidence
                       FROM dispute_evidence x WHERE x.escrow_id = d.id) ev ON true
    WHERE d.code = :code AND gate.admin_ok
) seen ON true
""")
