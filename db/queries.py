"""Hot-path reads as Core statements, compiled once and cached by SQLAlchemy.

`HOT_QUERIES` lists the reads a busy bot runs all the time, each with the
index its plan must use. `tests/integration/test_explain.py` checks every plan
with EXPLAIN on a realistic data set; `python -m bot doctor` is meant to run the
same check on a live database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Executable,
    Row,
    Select,
    String,
    Table,
    and_,
    bindparam,
    func,
    literal_column,
    select,
    text,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import (
    FINAL_DEAL_STATUSES,
    FUNDED_DEAL_STATUSES,
    OPEN_DEAL_STATUSES,
    DealStatus,
    InvitationStatus,
    UserStatus,
    deal_events,
    escrows,
    invitations,
    users,
    wallets,
    withdrawals,
)
from db.notifications import DUE_NOTIFICATIONS

PAGE_SIZE = 10
# `before_id` of the first page of a keyset listing (ids are below it).
FIRST_PAGE = 2**63 - 1


def admin_only(statement: Select[Any]) -> Select[Any]:
    """`statement` for the user :admin_id, only if that user's row is an active
    admin, checked in the same statement. The first column, `admin_ok`, is
    true for an active admin; a single row with NULLs in every other column
    means there is nothing to see (or nothing may be seen: `admin_ok` says
    which). An admin's cached snapshot may still say admin after their rights
    were taken away, so the row decides, as it does for admin writes."""
    gate = (
        select(
            # bool_or: one row even for an unknown user (NULL, refused)
            func.bool_or(and_(users.c.is_admin, users.c.status == UserStatus.ACTIVE.value)).label(
                "admin_ok"
            )
        )
        .where(users.c.id == bindparam("admin_id"))
        .subquery("gate")
    )
    seen = statement.where(gate.c.admin_ok).lateral("seen")
    return select(gate.c.admin_ok, seen).select_from(gate.outerjoin(seen, true()))


def _partial_index_predicate(table: Table, name: str) -> Any:
    """The WHERE clause of partial index `name`, verbatim. Only a query that
    repeats it with literals (not bound parameters) can use the index in a
    generic plan, which asyncpg's cached prepared statements may switch to
    after five executions; `status IN ($1, $2)` gets a sequential scan there."""
    index = next(index for index in table.indexes if index.name == name)
    return index.dialect_options["postgresql"]["where"]


# -- users and wallets -------------------------------------------------------------

# User and wallets in one round trip: one row per wallet (or one row with NULL
# wallet columns for a user without wallets).
SNAPSHOT_BY_TELEGRAM_ID = (
    select(
        users.c.id,
        users.c.telegram_id,
        users.c.username,
        users.c.first_name,
        users.c.last_name,
        users.c.language_code,
        users.c.status,
        users.c.is_admin,
        users.c.version,
        wallets.c.currency,
        wallets.c.available,
        wallets.c.held,
    )
    .select_from(users.outerjoin(wallets, wallets.c.user_id == users.c.id))
    .where(users.c.telegram_id == bindparam("telegram_id"))
    .order_by(wallets.c.currency)
)

# A counterparty named by @username (stored as typed; matched lower-cased), with
# what Telegram last reported about them and when, for the creator to check.
# At most one row: registration takes a name from whoever held it before.
USER_BY_USERNAME = select(
    users.c.id,
    users.c.telegram_id,
    users.c.first_name,
    users.c.username,
    users.c.status,
    users.c.profile_at,
).where(func.lower(users.c.username) == bindparam("username"))

WALLET_BY_USER_CURRENCY = select(wallets).where(
    wallets.c.user_id == bindparam("user_id"), wallets.c.currency == bindparam("currency")
)

# -- deals ---------------------------------------------------------------------------

_buyer, _seller = users.alias("b"), users.alias("s")
_AT = literal_column("'@'", String)

# A deal with its parties' names, as `DealView` reads it.
DEAL_BY_CODE = (
    select(
        escrows,
        _buyer.c.telegram_id.label("buyer_telegram_id"),
        _seller.c.telegram_id.label("seller_telegram_id"),
        func.coalesce(_AT + _buyer.c.username, _buyer.c.first_name).label("buyer_name"),
        func.coalesce(_AT + _seller.c.username, _seller.c.first_name).label("seller_name"),
    )
    .select_from(
        escrows.outerjoin(_buyer, _buyer.c.id == escrows.c.buyer_id).outerjoin(
            _seller, _seller.c.id == escrows.c.seller_id
        )
    )
    .where(escrows.c.code == bindparam("code"))
)

# Any deal, as an admin sees it.
ADMIN_DEAL_BY_CODE = admin_only(DEAL_BY_CODE)

# The seed's two lookups of a party's deals in one status.
DEALS_BY_BUYER_STATUS = select(escrows).where(
    escrows.c.buyer_id == bindparam("user_id"), escrows.c.status == bindparam("status")
)
DEALS_BY_SELLER_STATUS = select(escrows).where(
    escrows.c.seller_id == bindparam("user_id"), escrows.c.status == bindparam("status")
)

_LIST_COLUMNS = (
    "id, code, status, amount, currency, creator_id, buyer_id, seller_id, created_at, description"
)
# One side's deals in the wanted statuses, newest first, at most `limit` per
# status; with `awaiting_me`, pending deals the user created are left out (the
# other party has to accept those).
_SIDE_PAGE = f"""
    SELECT page.* FROM unnest(CAST(:{{side}}_statuses AS varchar[])) AS wanted(status)
    CROSS JOIN LATERAL (
        SELECT {_LIST_COLUMNS} FROM escrows
        WHERE {{side}}_id = :user_id AND status = wanted.status AND id < :before_id
          AND NOT (CAST(:awaiting_me AS boolean) AND status = 'pending'
                   AND creator_id = :user_id)
        ORDER BY id DESC LIMIT :limit
    ) page"""

# "My deals": one page of a party's deals, newest first, below the keyset
# cursor `before_id` (FIRST_PAGE for the first page), with the other party's
# name. The statuses are chosen per side (the deals that wait for the buyer
# are not those that wait for the seller). Each side reads at most `limit`
# rows per status from its (party, status, id) index, walked backwards, so a
# page costs the same for a user with ten deals and one with ten thousand; a
# single `status = ANY(...)` scan would have to sort all of the party's deals
# in those statuses instead.
MY_DEALS_PAGE = text(
    f"""
SELECT deals.*, other.name AS counterparty
FROM (
    SELECT * FROM ({_SIDE_PAGE.format(side="buyer")}
        UNION ALL{_SIDE_PAGE.format(side="seller")}
    ) both_sides
    ORDER BY id DESC LIMIT :limit
) deals
-- the page first, then one primary-key lookup per row for the other party
LEFT JOIN LATERAL (
    SELECT coalesce('@' || username, first_name) AS name FROM users
    WHERE id = CASE WHEN deals.buyer_id = :user_id THEN deals.seller_id
                    ELSE deals.buyer_id END
) other ON true
ORDER BY deals.id DESC"""
)

_LIST = (
    escrows.c.id,
    escrows.c.code,
    escrows.c.status,
    escrows.c.amount,
    escrows.c.currency,
    escrows.c.creator_id,
    escrows.c.description,
    escrows.c.buyer_id,
    escrows.c.seller_id,
    escrows.c.created_at,
)

RECENT_DEALS = select(*_LIST).order_by(escrows.c.created_at.desc()).limit(bindparam("limit"))

# What the expiry job picks (it locks them FOR UPDATE SKIP LOCKED; this is the
# read-only form, safe to EXPLAIN ANALYZE on a live database).
DEALS_DUE_TO_EXPIRE = (
    select(escrows.c.id, escrows.c.status, escrows.c.deadline_at)
    .where(
        _partial_index_predicate(escrows, "ix_escrows_open_deadline"),
        escrows.c.deadline_at <= func.now(),
    )
    .order_by(escrows.c.deadline_at)
    .limit(bindparam("limit"))
)

# The admin panel's queue, oldest first.
OPEN_DISPUTES = admin_only(
    select(*_LIST, escrows.c.updated_at)
    .where(_partial_index_predicate(escrows, "ix_escrows_disputed"))
    .order_by(escrows.c.updated_at)
    .limit(bindparam("limit"))
)

DEAL_HISTORY = (
    select(
        deal_events.c.id,
        deal_events.c.actor_id,
        deal_events.c.from_status,
        deal_events.c.to_status,
        deal_events.c.reason,
        deal_events.c.created_at,
    )
    .where(deal_events.c.escrow_id == bindparam("deal_id"))
    .order_by(deal_events.c.id)
)

# A user's own withdrawals, newest first.
USER_WITHDRAWALS = (
    select(
        withdrawals.c.id,
        withdrawals.c.user_id,
        withdrawals.c.currency,
        withdrawals.c.amount,
        withdrawals.c.destination,
        withdrawals.c.status,
        withdrawals.c.created_at,
        withdrawals.c.decided_at,
        withdrawals.c.note,
    )
    .where(withdrawals.c.user_id == bindparam("user_id"))
    .order_by(withdrawals.c.id.desc())
    .limit(bindparam("limit"))
)

# -- invitations and withdrawals ----------------------------------------------------

INVITATIONS_BY_TELEGRAM_STATUS = select(invitations).where(
    invitations.c.telegram_id == bindparam("telegram_id"),
    invitations.c.status == bindparam("status"),
)

# The admin panel's queue, with every user's destination: admins only.
PENDING_WITHDRAWALS = admin_only(
    select(
        withdrawals.c.id,
        withdrawals.c.user_id,
        withdrawals.c.currency,
        withdrawals.c.amount,
        withdrawals.c.destination,
        withdrawals.c.status,
        withdrawals.c.created_at,
        withdrawals.c.decided_at,
        withdrawals.c.note,
        select(users.c.telegram_id)
        .where(users.c.id == withdrawals.c.user_id)
        .scalar_subquery()
        .label("telegram_id"),
    )
    .where(_partial_index_predicate(withdrawals, "ix_withdrawals_pending"))
    .order_by(withdrawals.c.id)
    .limit(bindparam("limit"))
)


async def load_snapshot_rows(connection: AsyncConnection, telegram_id: int) -> Sequence[Row[Any]]:
    """The rows of one user's snapshot; empty when the user is unknown."""
    result = await connection.execute(SNAPSHOT_BY_TELEGRAM_ID, {"telegram_id": telegram_id})
    return result.all()


# -- the registry ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """Real values from the database the hot queries are explained against.

    The params of a query are only meaningful if they hit rows: the test reads
    these from the data set it builds, and `doctor` should pick them from the
    live database (a busy user with deals on both sides, one of their finished
    deals, someone holding an active invitation)."""

    user_id: int  # a party to many deals, as buyer and as seller, open and finished
    telegram_id: int  # that user's
    username: str  # that user's @username, lower-cased
    currency: str  # a configured currency (every user has a wallet in it)
    deal_id: int  # one of that user's finished deals, with history; also a keyset cursor
    deal_code: str  # that deal's code
    invitee_telegram_id: int  # someone an active invitation is addressed to
    admin_id: int = 0  # an active admin (the admin reads check the reader's row)


@dataclass(frozen=True, slots=True)
class HotQuery:
    name: str
    statement: Executable
    # The statement's parameters, built from sample values (see `Sample`).
    params: Callable[[Sample], dict[str, Any]]
    # Every index the plan must use (Index Scan, Index Only Scan or Bitmap Index Scan).
    indexes: tuple[str, ...]


def _statuses(statuses: Sequence[DealStatus]) -> list[str]:
    return [status.value for status in statuses]


HOT_QUERIES: tuple[HotQuery, ...] = (
    HotQuery(
        "snapshot_by_telegram_id",
        SNAPSHOT_BY_TELEGRAM_ID,
        lambda s: {"telegram_id": s.telegram_id},
        ("uq_users_telegram_id", "idx_wallet_user_currency"),
    ),
    HotQuery(
        "user_by_username",
        USER_BY_USERNAME,
        lambda s: {"username": s.username},
        ("uq_users_username_lower",),
    ),
    HotQuery(
        "wallet_by_user_currency",
        WALLET_BY_USER_CURRENCY,
        lambda s: {"user_id": s.user_id, "currency": s.currency},
        ("idx_wallet_user_currency",),
    ),
    HotQuery(
        "deal_by_code",
        DEAL_BY_CODE,
        lambda s: {"code": s.deal_code},
        ("uq_escrows_code",),
    ),
    HotQuery(
        "admin_deal_by_code",
        ADMIN_DEAL_BY_CODE,
        lambda s: {"code": s.deal_code, "admin_id": s.admin_id},
        ("pk_users", "uq_escrows_code"),
    ),
    HotQuery(
        "deals_by_buyer_status",
        DEALS_BY_BUYER_STATUS,
        lambda s: {"user_id": s.user_id, "status": DealStatus.PENDING.value},
        ("idx_escrow_buyer_status",),
    ),
    HotQuery(
        "deals_by_seller_status",
        DEALS_BY_SELLER_STATUS,
        lambda s: {"user_id": s.user_id, "status": DealStatus.PENDING.value},
        ("idx_escrow_seller_status",),
    ),
    HotQuery(
        "my_deals_active_first_page",
        MY_DEALS_PAGE,
        lambda s: {
            "user_id": s.user_id,
            "buyer_statuses": _statuses(OPEN_DEAL_STATUSES + FUNDED_DEAL_STATUSES),
            "seller_statuses": _statuses(OPEN_DEAL_STATUSES + FUNDED_DEAL_STATUSES),
            "awaiting_me": False,
            "before_id": FIRST_PAGE,
            "limit": PAGE_SIZE,
        },
        ("idx_escrow_buyer_status", "idx_escrow_seller_status"),
    ),
    HotQuery(
        "my_deals_finished_next_page",
        MY_DEALS_PAGE,
        lambda s: {
            "user_id": s.user_id,
            "buyer_statuses": _statuses(FINAL_DEAL_STATUSES),
            "seller_statuses": _statuses(FINAL_DEAL_STATUSES),
            "awaiting_me": False,
            "before_id": s.deal_id,
            "limit": PAGE_SIZE,
        },
        ("idx_escrow_buyer_status", "idx_escrow_seller_status"),
    ),
    HotQuery(
        "recent_deals",
        RECENT_DEALS,
        lambda s: {"limit": PAGE_SIZE},
        ("idx_escrow_created_at",),
    ),
    HotQuery(
        "deals_due_to_expire",
        DEALS_DUE_TO_EXPIRE,
        lambda s: {"limit": 500},  # the expiry job's batch
        ("ix_escrows_open_deadline",),
    ),
    HotQuery(
        "open_disputes",
        OPEN_DISPUTES,
        lambda s: {"limit": PAGE_SIZE, "admin_id": s.admin_id},
        ("pk_users", "ix_escrows_disputed"),
    ),
    HotQuery(
        "deal_history",
        DEAL_HISTORY,
        lambda s: {"deal_id": s.deal_id},
        ("ix_deal_events_escrow_id",),
    ),
    HotQuery(
        "invitations_by_telegram_status",
        INVITATIONS_BY_TELEGRAM_STATUS,
        lambda s: {"telegram_id": s.invitee_telegram_id, "status": InvitationStatus.ACTIVE.value},
        ("idx_invitation_telegram_status",),
    ),
    HotQuery(
        "pending_withdrawals",
        PENDING_WITHDRAWALS,
        lambda s: {"limit": PAGE_SIZE, "admin_id": s.admin_id},
        ("pk_users", "ix_withdrawals_pending"),
    ),
    HotQuery(
        "due_notifications",
        DUE_NOTIFICATIONS,
        lambda s: {"limit": 100},  # the outbox worker's batch
        ("ix_notifications_due",),
    ),
)
