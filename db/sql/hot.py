"""The hot-statement registry: what the product runs on its hot paths (every
update, every write, every job tick), each with the indexes its plan must use.

`tests/integration/test_explain.py` checks every plan on a realistic data set
and `python -m bot doctor` on a live database. A statement that locks or
writes (`writes=True`) is EXPLAINed without ANALYZE: planned, never run.
`tests/unit/test_hot_registry.py` keeps the list honest: every statement of
db.sql that a product module runs is here or in `EXEMPT`, with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Executable

from db.explain import HotQuery, Sample
from db.models import FINAL_DEAL_STATUSES, FUNDED_DEAL_STATUSES, OPEN_DEAL_STATUSES, DealStatus
from db.sql import (
    clocks,
    deals,
    ledger,
    notifications,
    ratings,
    reads,
    users,
    withdrawals,
)
from db.sql.hot_admin import ADMIN_QUERIES
from db.sql.hot_jobs import JOB_QUERIES
from db.sql.hot_money import MONEY_QUERIES

__all__ = ["EXEMPT", "HOT_QUERIES", "OFF_THE_HOT_PATH", "UNUSED_INDEXES", "HotQuery", "Sample"]


def _statuses(statuses: Sequence[DealStatus]) -> list[str]:
    return [status.value for status in statuses]


GRACE = timedelta(seconds=30)
_UNFINISHED = _statuses(OPEN_DEAL_STATUSES + FUNDED_DEAL_STATUSES)
_FINISHED = _statuses(FINAL_DEAL_STATUSES)


def _notify(kind: str | None, actor_id: int | None) -> dict[str, Any]:
    """The params of a `notified` CTE (`notifications.notify_parties`)."""
    return {"notify": kind, "actor_id": actor_id, "note": None, "grace": GRACE, "admin_chats": []}


def _standing(opener: int | None = None) -> dict[str, Any]:
    """The params of TRANSITION's reputation CTEs (`db.sql.reputation`)."""
    bump = [opener] if opener else []
    return dict(completes=False, volume=0, opener_id=opener, loser_id=None, bump_ids=bump)


def _transition(s: Sample, to_status: str, final: bool, kind: str, **more: Any) -> dict[str, Any]:
    """TRANSITION's params: the sample's funded deal, moved to `to_status` (`more`:
    `overdue_only` for a buyer's refund past the delivery deadline, a reason...)."""
    return {"deal_id": s.funded_deal_id, "from_status": "funded",
            "from_version": s.funded_deal_version, "to_status": to_status, "final": final,
            "reason": None, "joiner_id": None, "split_seller": None, "split_fee": None,
            "overdue_only": False, "deliver_within": timedelta(days=7), "release_after": GRACE,
            **_notify(kind, s.user_id), **_standing(), **more}  # fmt: skip


def _page(s: Sample, statuses: list[str], before_id: int, invited: bool = True) -> dict[str, Any]:
    return {
        "user_id": s.user_id,
        "telegram_id": s.telegram_id,
        "username": s.username,
        "invited": invited,
        "buyer_statuses": statuses,
        "seller_statuses": statuses,
        "awaiting_me": False,
        "before_id": before_id,
        "limit": reads.PAGE_SIZE,
    }


def _invited_page(s: Sample) -> dict[str, Any]:
    """The waiting list of someone invited by Telegram id and by @username."""
    waiting = _statuses((DealStatus.PENDING, DealStatus.ACCEPTED, DealStatus.DELIVERED))
    return {
        **_page(s, waiting, reads.FIRST_PAGE),
        "telegram_id": s.invitee_telegram_id,
        "username": s.invitee_username,
        "awaiting_me": True,
    }


def _profile(s: Sample) -> dict[str, Any]:
    return {
        "telegram_id": s.telegram_id,
        "username": s.username,
        "first_name": "Hot",
        "last_name": None,
        "language_code": "en",
        "is_admin": False,
    }


_H = HotQuery
# fmt: off
HOT_QUERIES: tuple[HotQuery, ...] = (
    # -- every update's cache miss and the user's own registration ------------------
    _H("snapshot_by_telegram_id", users.SNAPSHOT_BY_TELEGRAM_ID,
       lambda s: {"telegram_id": s.telegram_id},
       ("uq_users_telegram_id", "idx_wallet_user_currency", "pk_reputations")),
    # someone else now reports the user's @username
    _H("release_username", users.RELEASE_USERNAME,
       lambda s: {"username": s.username, "telegram_id": s.invitee_telegram_id},
       ("uq_users_username_lower",), True),
    _H("upsert_user", users.UPSERT_USER, _profile, ("uq_users_telegram_id",), True),
    _H("add_wallets", ledger.ADD_WALLETS,
       lambda s: {"user_id": s.user_id, "currencies": [s.currency, "NEW"]},
       ("idx_wallet_user_currency",), True),
    _H("bump_version", users.BUMP_VERSION, lambda s: {"user_id": s.user_id}, ("pk_users",), True),
    # the language chosen in the menu
    _H("set_locale", users.SET_LOCALE, lambda s: {"user_id": s.user_id, "locale": "ru"},
       ("pk_users",), True),
    _H("claim_invitations", deals.CLAIM_INVITATIONS,
       lambda s: {"telegram_id": s.invitee_telegram_id, "username": s.invitee_username,
                  "user_id": s.user_id},
       ("ix_invitations_username_status", "idx_invitation_telegram_status"), True),
    _H("user_by_username", users.USER_BY_USERNAME, lambda s: {"username": s.username},
       ("uq_users_username_lower",)),
    _H("person_by_telegram_id", users.PERSON_BY_TELEGRAM_ID,
       lambda s: {"telegram_id": s.telegram_id}, ("uq_users_telegram_id",)),
    _H("user_by_telegram_id", users.USER_BY_TELEGRAM_ID,
       lambda s: {"telegram_id": s.telegram_id}, ("uq_users_telegram_id",)),
    # a user locked while their day's deposits or withdrawals are counted
    _H("lock_user", users.LOCK_USER, lambda s: {"user_id": s.user_id}, ("pk_users",), True),
    # a deal's creator, locked while the pace of their deals is counted
    _H("lock_user_by_telegram_id", users.LOCK_USER_BY_TELEGRAM_ID,
       lambda s: {"telegram_id": s.telegram_id}, ("uq_users_telegram_id",), True),
    _H("user_standing", users.USER_STANDING, lambda s: {"user_id": s.admin_id}, ("pk_users",)),
    # -- deals ------------------------------------------------------------------------
    _H("deal_by_code", deals.DEAL_BY_CODE, lambda s: {"code": s.deal_code}, ("uq_escrows_code",)),
    _H("admin_deal_by_code", reads.ADMIN_DEAL_BY_CODE,
       lambda s: {"code": s.deal_code, "admin_id": s.admin_id}, ("pk_users", "uq_escrows_code")),
    _H("deal_by_create_key", deals.DEAL_BY_CREATE_KEY,
       lambda s: {"creator_id": s.user_id, "create_key": s.create_key},
       ("uq_escrows_creator_create_key", "ix_invitations_escrow_id")),
    _H("insert_deal", deals.INSERT_DEAL,
       lambda s: {"code": "HOTDEAL1", "creator_id": s.user_id, "buyer_id": s.user_id,
                  "seller_id": s.admin_id, "amount": 1000, "fee": 15, "fee_bps": 150,
                  "currency": s.currency, "description": "hot", "deadline": GRACE,
                  "create_key": None, "to_stranger": True, **_notify("invited", s.user_id)},
       ("pk_users",), True),
    # the busy user opening a deal with a stranger
    _H("creation_pace", clocks.CREATION_PACE,
       lambda s: {"creator_id": s.user_id, "other_id": s.admin_id, "addressed": True,
                  "deal_window": timedelta(hours=1), "deal_limit": 20,
                  "stranger_window": timedelta(days=1), "stranger_limit": 20},
       # the past deals with the counterparty by either party's index, whichever is smaller
       ("ix_escrows_creator_created", "ix_escrows_creator_stranger")),
    _H("lock_deal", deals.LOCK_DEAL,
       lambda s: {"code": s.deal_code, "actor_id": s.user_id},
       ("uq_escrows_code", "pk_users", "ix_deal_events_escrow_id"), True),
    _H("transition", deals.TRANSITION, lambda s: _transition(s, "delivered", False, "deliver"),
       ("pk_escrows", "pk_users"), True),
    # a dispute counts for its opener, whose snapshot is bumped in the statement
    _H("dispute_transition", deals.TRANSITION,
       lambda s: _transition(s, "disputed", False, "dispute", reason="hot",
                             **_standing(opener=s.user_id)),
       ("pk_escrows", "pk_users"), True),
    # a final one also revokes the deal's invitations (here the buyer's refund, past
    # the delivery deadline)
    _H("final_transition", deals.TRANSITION,
       lambda s: _transition(s, "refunded", True, "cancel", overdue_only=True),
       ("pk_escrows", "ix_invitations_escrow_id", "pk_users"), True),
    _H("read_invitation", deals.READ_INVITATION, lambda s: {"code": s.invitation_code},
       ("uq_invitations_code", "pk_escrows")),
    _H("lock_invited_deal", deals.LOCK_INVITED_DEAL,
       lambda s: {"invitation_code": s.invitation_code, "actor_id": s.user_id},
       ("uq_invitations_code", "pk_escrows", "ix_deal_events_escrow_id"), True),
    _H("lock_invitation", deals.LOCK_INVITATION, lambda s: {"code": s.invitation_code},
       ("uq_invitations_code", "pk_escrows"), True),
    _H("close_invitation", deals.CLOSE_INVITATION,
       lambda s: {"id": 1, "status": "accepted", "telegram_id": s.telegram_id},
       ("pk_invitations",), True),
    _H("my_deals_active_first_page", reads.MY_DEALS_PAGE,
       lambda s: _page(s, _UNFINISHED, reads.FIRST_PAGE),
       ("idx_escrow_buyer_status", "idx_escrow_seller_status")),
    _H("my_deals_finished_next_page", reads.MY_DEALS_PAGE,
       lambda s: _page(s, _FINISHED, s.deal_id, invited=False),
       ("idx_escrow_buyer_status", "idx_escrow_seller_status")),
    # with the deals invitations wait for the user in (addressed to their id, or
    # to their @username while unclaimed); their few deals joined by key
    _H("my_deals_waiting_with_invitations", reads.MY_DEALS_PAGE, _invited_page,
       ("idx_escrow_buyer_status", "idx_escrow_seller_status",
        "idx_invitation_telegram_status", "ix_invitations_username_status")),
    # -- ratings (the counters of the rated user move in the same statement) -----------
    _H("rate_deal", ratings.RATE_DEAL,
       lambda s: {"code": s.deal_code, "rater_id": s.user_id, "stars": 5},
       ("uq_escrows_code", "pk_users", "uq_ratings_deal_rater"), True),
    _H("add_review", ratings.ADD_REVIEW,
       lambda s: {"code": s.deal_code, "rater_id": s.user_id, "review": "hot"},
       ("uq_escrows_code", "pk_users", "uq_ratings_deal_rater"), True),
    _H("reviews_of", ratings.REVIEWS_OF, lambda s: {"user_id": s.user_id, "limit": 3},
       ("ix_ratings_reviews", "pk_users")),
    _H("open_disputes", reads.OPEN_DISPUTES,
       lambda s: {"limit": reads.PAGE_SIZE, "admin_id": s.admin_id},
       ("pk_users", "ix_escrows_disputed")),
    # money: holds, withdrawals and payouts, deposits
    *MONEY_QUERIES,
    # the jobs: the deals' clocks and the outbox worker
    *JOB_QUERIES,
    # the admins' tools: disputes' evidence and files, withdrawals, blocking users
    *ADMIN_QUERIES,
)
# fmt: on

# Modules of db.sql whose statements are off every update's path: the
# operator's (health checks, migration locks, doctor) and the benchmark's data set.
OFF_THE_HOT_PATH: dict[str, str] = {
    "ops": "health checks, migration locks and the doctor's reads, not an update's",
    "dataset": "the benchmark's data set and the seed's pattern it measures",
}

# Statements of db.sql the product runs that are not on the list, and why.
EXEMPT: tuple[tuple[Executable, str], ...] = (
    (deals.INSERT_INVITATION, "a single-row INSERT ... VALUES: no read to plan"),
    (notifications.REMIND, "inserts the rows it is given; the unique index only arbitrates"),
    (reads.STATS, "an admin's on-demand totals: counts whole tables by design"),
    (users.DATABASE_IDENTITY, "a catalog read, once per cache start"),
    (
        withdrawals.WITHDRAWAL_BY_REQUEST,
        (
            "only when a withdrawal's confirmation is pressed again: one row by the ledger's"
            " unique (idempotency_key, leg)"
        ),
    ),
)

# Indexes no statement on the list uses. The seed plan asked for the first;
# it stays, but nothing the product runs reads by it.
UNUSED_INDEXES: dict[str, str] = {
    "idx_escrow_created_at": "seed plan; no statement orders or filters deals by created_at",
    "ix_ledger_entries_user_id": "nothing reads the ledger by user",
    "ix_ledger_entries_escrow_id": "nothing reads the ledger by deal",
}
