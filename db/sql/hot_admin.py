"""The hot-statement registry's part for the admins' tools (see `db.sql.hot`):
a dispute's evidence and file, one withdrawal, blocking and unblocking users.
Each is an admin's press or a party's message, on the indexes named here."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from db.explain import HotQuery, Sample
from db.sql import disputes, moderation, reads

GRACE = timedelta(seconds=30)


def _evidence(s: Sample) -> dict[str, Any]:
    return {"deal_id": s.disputed_deal_id, "sender_id": s.disputer_id, "kind": "text",
            "file_id": None, "file_name": None, "file_size": None, "text": "hot",
            "per_party": 10, "grace": GRACE, "admin_chats": [1]}  # fmt: skip


_H = HotQuery
# fmt: off
ADMIN_QUERIES: tuple[HotQuery, ...] = (
    # -- disputes: evidence, and a dispute's file -----------------------------------------
    # The deal by its primary key, or (few rows) by the open disputes' partial index.
    _H("insert_evidence", disputes.INSERT_EVIDENCE, _evidence,
       ("ix_dispute_evidence_escrow_id",), True),
    _H("evidence_by_id", disputes.EVIDENCE_BY_ID, lambda s: {"ids": [s.evidence_id]},
       ("pk_dispute_evidence",)),
    _H("admin_dispute", disputes.ADMIN_DISPUTE,
       lambda s: {"code": s.disputed_deal_code, "admin_id": s.admin_id},
       ("pk_users", "uq_escrows_code", "ix_deal_events_escrow_id",
        "ix_dispute_evidence_escrow_id")),
    # -- users blocked and unblocked by an admin -------------------------------------------
    _H("user_for_admin", moderation.USER_FOR_ADMIN,
       lambda s: {"telegram_id": None, "username": s.username, "admin_id": s.admin_id},
       ("pk_users", "uq_users_username_lower", "idx_escrow_buyer_status",
        "idx_escrow_seller_status", "ix_user_status_changes_user_id")),
    _H("lock_user_for_admin", moderation.LOCK_USER_FOR_ADMIN,
       lambda s: {"telegram_id": s.telegram_id, "username": None, "admin_id": s.admin_id},
       ("uq_users_telegram_id", "pk_users"), True),
    _H("set_user_status", moderation.SET_USER_STATUS,
       lambda s: {"user_id": s.user_id, "status": "blocked", "admin_id": s.admin_id,
                  "reason": "hot", "grace": GRACE},
       ("pk_users",), True),
    _H("admin_withdrawal", reads.ADMIN_WITHDRAWAL,
       lambda s: {"id": s.withdrawal_id, "admin_id": s.admin_id},
       ("pk_users", "pk_withdrawals")),
)
# fmt: on
