"""Reads beyond a caller's snapshot: deal lists and pages, a user's
withdrawals, the admin queues and stats. Each is one statement; the admin
reads check, in that statement, that the reader's own row is an active admin
(`admin_only`): a cached snapshot is not enough.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, Table, and_, bindparam, func, select, text, true

from db.models import UserStatus, escrows, users, withdrawals
from db.sql.deals import DEAL_BY_CODE
from db.sql.withdrawals import WITHDRAWAL

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


# A deal in a list, as `DealListItem` reads it.
_LIST_NAMES = (
    "id",
    "code",
    "status",
    "amount",
    "currency",
    "creator_id",
    "buyer_id",
    "seller_id",
    "created_at",
    "description",
)
_LIST = tuple(escrows.c[name] for name in _LIST_NAMES)
_LIST_COLUMNS = ", ".join(_LIST_NAMES)

# One side's deals in the wanted statuses, newest first, at most `limit` per
# status; with `awaiting_me`, pending deals the user created are left out (the
# other party has to accept those).
_SIDE_PAGE = f"""
    SELECT page.*, CAST(NULL AS varchar) AS invitation
    FROM unnest(CAST(:{{side}}_statuses AS varchar[])) AS wanted(status)
    CROSS JOIN LATERAL (
        SELECT {_LIST_COLUMNS} FROM escrows
        WHERE {{side}}_id = :user_id AND status = wanted.status AND id < :before_id
          AND NOT (CAST(:awaiting_me AS boolean) AND status = 'pending'
                   AND creator_id = :user_id)
        ORDER BY id DESC LIMIT :limit
    ) page"""

# With `invited`, pending deals the user is not a party to yet, through an
# active invitation addressed to them: to their Telegram id (by the creator, or
# claimed for them: db.sql.deals.CLAIM_INVITATIONS), or to the @username they
# hold now if nobody has claimed it. A handful per user at most, each found by
# its index.
_INVITED_PAGE = f"""
    SELECT {", ".join("e." + name for name in _LIST_NAMES)}, i.code AS invitation
    FROM (
        SELECT escrow_id, code FROM invitations
        WHERE telegram_id = :telegram_id AND status = 'active' AND expires_at > now()
        UNION ALL
        SELECT escrow_id, code FROM invitations
        WHERE username = CAST(:username AS varchar) AND telegram_id IS NULL
          AND status = 'active' AND expires_at > now()
    ) i
    JOIN escrows e ON e.id = i.escrow_id
    WHERE CAST(:invited AS boolean) AND e.status = 'pending' AND e.id < :before_id
      AND e.creator_id <> :user_id
    ORDER BY e.id DESC LIMIT :limit"""

# "My deals": one page of a party's deals, newest first, below the keyset
# cursor `before_id` (FIRST_PAGE for the first page), with the other party's
# name. The statuses are chosen per side (the deals that wait for the buyer
# are not those that wait for the seller). Each side reads at most `limit`
# rows per status from its (party, status, id) index, walked backwards, so a
# page costs the same for a user with ten deals and one with ten thousand; a
# single `status = ANY(...)` scan would have to sort all of the party's deals
# in those statuses instead. With `invited`, the deals waiting for the user
# through an invitation come in too (`invitation`: its code, NULL otherwise).
MY_DEALS_PAGE = text(
    f"""
SELECT deals.*, other.name AS counterparty
FROM (
    SELECT * FROM ({_SIDE_PAGE.format(side="buyer")}
        UNION ALL{_SIDE_PAGE.format(side="seller")}
        UNION ALL ({_INVITED_PAGE})
    ) both_sides
    ORDER BY id DESC LIMIT :limit
) deals
-- the page first, then one primary-key lookup per row for the other party
-- (the creator, for a deal the user is invited to)
LEFT JOIN LATERAL (
    SELECT coalesce('@' || username, first_name) AS name FROM users
    WHERE id = CASE WHEN deals.buyer_id = :user_id THEN deals.seller_id
                    WHEN deals.seller_id = :user_id THEN deals.buyer_id
                    ELSE deals.creator_id END
) other ON true
ORDER BY deals.id DESC"""
)


# Any deal, as an admin sees it.
ADMIN_DEAL_BY_CODE = admin_only(DEAL_BY_CODE)

# The admin panel's queue, oldest first.
OPEN_DISPUTES = admin_only(
    select(*_LIST, escrows.c.updated_at)
    .where(_partial_index_predicate(escrows, "ix_escrows_disputed"))
    .order_by(escrows.c.updated_at)
    .limit(bindparam("limit"))
)


# A user's own withdrawals, newest first.
USER_WITHDRAWALS = (
    select(*WITHDRAWAL)
    .where(withdrawals.c.user_id == bindparam("user_id"))
    .order_by(withdrawals.c.id.desc())
    .limit(bindparam("limit"))
)

# The admin panel's queue, with every user's destination: admins only.
PENDING_WITHDRAWALS = admin_only(
    select(
        *WITHDRAWAL,
        select(users.c.telegram_id)
        .where(users.c.id == withdrawals.c.user_id)
        .scalar_subquery()
        .label("telegram_id"),
    )
    .where(_partial_index_predicate(withdrawals, "ix_withdrawals_pending"))
    .order_by(withdrawals.c.id)
    .limit(bindparam("limit"))
)

# One withdrawal with its destination, as an admin decides it: admins only.
ADMIN_WITHDRAWAL = admin_only(
    select(
        *WITHDRAWAL,
        select(users.c.telegram_id)
        .where(users.c.id == withdrawals.c.user_id)
        .scalar_subquery()
        .label("telegram_id"),
    ).where(withdrawals.c.id == bindparam("id"))
)

# The admin's stats in one statement, counted only for an active admin (the
# gate of `admin_only`, written out for a statement in text).
STATS = text("""
SELECT gate.admin_ok, seen.*
FROM (SELECT bool_or(is_admin AND status = 'active') AS admin_ok
      FROM users WHERE id = :admin_id) gate
LEFT JOIN LATERAL (
    SELECT (SELECT count(*) FROM users) AS users,
           (SELECT count(*) FROM withdrawals WHERE status = 'pending') AS pending_withdrawals,
           (SELECT coalesce(json_object_agg(status, deals), '{}')
            FROM (SELECT status, count(*) AS deals FROM escrows GROUP BY status) d)
               AS deals_by_status,
           (SELECT coalesce(json_agg(v ORDER BY v.currency), '[]') FROM (
                SELECT e.currency, count(*) AS deals, CAST(sum(e.amount) AS bigint) AS volume,
                       coalesce((SELECT fees FROM platform_accounts p
                                 WHERE p.currency = e.currency), 0) AS fees
                FROM escrows e WHERE e.status = 'released' GROUP BY e.currency
            ) v) AS released
    WHERE gate.admin_ok
) seen ON true
""")
