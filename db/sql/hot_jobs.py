"""The hot-statement registry's part for the jobs (see `db.sql.hot`): the
deals' clocks, run by one replica per tick, and the outbox worker, run by
every replica every tick."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from db.explain import HotQuery
from db.sql import clocks, deals, deposits, notifications, users, withdrawals

GRACE = timedelta(seconds=30)


def _notify(kind: str | None, actor_id: int | None) -> dict[str, Any]:
    """The params of a `notified` CTE (`notifications.notify_parties`)."""
    return {"notify": kind, "actor_id": actor_id, "note": None, "grace": GRACE, "admin_chats": []}


_H = HotQuery
# fmt: off
JOB_QUERIES: tuple[HotQuery, ...] = (
    # -- the deals' clock (a job on every replica) --------------------------------------
    # Planned for a full batch (500 deals, up to 1,000 parties), the custom plan
    # hashes the users table to name and tell the parties; the generic plan looks
    # each one up by primary key.
    _H("expire_due", clocks.EXPIRE_DUE, lambda s: {"limit": 500, **_notify("expire", None)},
       ("ix_escrows_open_deadline",), True, ("users",)),
    _H("nearing_deadline", clocks.NEARING_DEADLINE,
       lambda s: {"within": timedelta(hours=24), "limit": 500}, ("ix_escrows_open_deadline",)),
    # The automatic release takes one due deal at a time (SKIP LOCKED).
    _H("lock_due_release", clocks.LOCK_DUE_RELEASE, lambda s: {"actor_id": None},
       ("ix_escrows_release_due", "ix_deal_events_escrow_id"), True),
    _H("clocks_nearing", clocks.CLOCKS_NEARING,
       lambda s: {"release_within": timedelta(hours=24), "deliver_within": timedelta(hours=24),
                  "overdue_for": timedelta(days=1), "limit": 500},
       ("ix_escrows_release_due", "ix_escrows_deliver_due")),
    # -- the outbox worker (every tick on every replica) ----------------------------------
    _H("claim_due_notifications", notifications.CLAIM_DUE,
       lambda s: {"limit": 100, "lease": GRACE}, ("ix_notifications_due", "pk_notifications"),
       True),
    # By primary key or through the (few) pending rows' partial index, whichever
    # the planner finds smaller: either is right, reading the table is not.
    _H("mark_notifications", notifications.MARK,
       lambda s: {"ids": [s.notification_id], "statuses": ["sent"], "errors": [None],
                  "base": GRACE, "most": GRACE, "deferred": notifications.DEFERRED},
       (), True),
    # The oldest rows first: planned for a full batch (5,000) the custom plan
    # reads the table from its start (where the oldest rows are) up to the
    # limit; the generic plan goes by the BRIN index. Deleted by primary key.
    _H("prune_notifications", notifications.PRUNE,
       lambda s: {"keep": timedelta(days=1), "limit": 5000},
       ("pk_notifications",), True, ("notifications",),
       generic_indexes=("ix_notifications_created_at",)),
    _H("deals_by_id", deals.DEALS_BY_ID, lambda s: {"ids": [s.deal_id]}, ("pk_escrows",)),
    _H("withdrawals_by_id", withdrawals.WITHDRAWALS_BY_ID,
       lambda s: {"ids": [s.withdrawal_id]}, ("pk_withdrawals", "pk_users")),
    _H("deposits_by_id", deposits.DEPOSITS_BY_ID, lambda s: {"ids": [s.deposit_id]},
       ("pk_deposits",)),
    _H("actors_by_id", users.ACTORS_BY_ID, lambda s: {"ids": [s.user_id]}, ("pk_users",)),
)
# fmt: on
