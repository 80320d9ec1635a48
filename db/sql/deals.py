"""Deals and their invitations: one statement per step of a deal, each
returning the deal as a `DealView` reads it (`deal_view_sql`), with the
history, invitations and outbox rows its change implies written by CTEs of
the same statement (the outbox's through `notifications.notify_parties`)."""

from __future__ import annotations

from sqlalchemy import String, bindparam, func, literal_column, select, text

from db.models import escrows, users
from db.sql import reputation
from db.sql.notifications import NOTICES, notify_parties


def deal_view_sql(source: str, extra_columns: str = "") -> str:
    """SELECT of a DealView from `source` (a table or a CTE of escrow rows)."""
    return f"""
SELECT d.id, d.code, d.creator_id, d.buyer_id, d.seller_id, d.amount, d.fee, d.fee_bps,
       d.currency, d.description, d.status, d.status_before_dispute, d.created_at,
       d.funded_at, d.deadline_at, d.version, d.deliver_due_at, d.release_due_at,
       d.split_seller, d.split_fee,
       b.telegram_id AS buyer_telegram_id, s.telegram_id AS seller_telegram_id,
       coalesce('@' || b.username, b.first_name) AS buyer_name,
       coalesce('@' || s.username, s.first_name) AS seller_name{extra_columns}
FROM {source} d
LEFT JOIN users b ON b.id = d.buyer_id
LEFT JOIN users s ON s.id = d.seller_id"""


# The deal as it is now, locked for this transaction, with the actor's standing
# read from the database (never from the cache) and who made the deal's latest
# move (a press finding the deal already where it asked to take it learns
# whether the move was its own), and the parties' standing (nobody takes a deal
# forward with a blocked party), and whether its deadline to be accepted and
# funded has passed by the database's clock (the expiry job's).
WITH_ACTOR = (
    deal_view_sql(
        "escrows",
        ", a.actor_status, a.actor_is_admin, m.last_actor_id,"
        " b.status AS buyer_status, s.status AS seller_status,"
        " coalesce(d.deadline_at <= now(), false) AS past_deadline",
    )
    + """
LEFT JOIN LATERAL (SELECT status AS actor_status, is_admin AS actor_is_admin
                   FROM users WHERE id = :actor_id) a ON true
LEFT JOIN LATERAL (SELECT actor_id AS last_actor_id FROM deal_events
                   WHERE escrow_id = d.id ORDER BY id DESC LIMIT 1) m ON true"""
)
LOCK_DEAL = text(
    WITH_ACTOR
    + """
WHERE d.code = :code
FOR UPDATE OF d"""
)

# The deal an invitation is for, locked like LOCK_DEAL, before the invitation
# itself (LOCK_INVITATION): every path that locks both takes the deal first
# (a final transition revokes, and the expiry job expires, the invitations of
# the deals they hold), so none of them waits for another in a cycle.
LOCK_INVITED_DEAL = text(
    WITH_ACTOR
    + """
WHERE d.id = (SELECT escrow_id FROM invitations WHERE code = :invitation_code)
FOR UPDATE OF d"""
)

# Guarded by the status and version the deal was locked at: a change that
# slipped past the lock would leave this statement without a row; with
# :overdue_only, also by the delivery deadline having passed (the database's
# clock decides). Funding starts the delivery clock (:deliver_within), a
# delivery the release clock (:release_after); NULL: no such clock.
TRANSITION = text(
    """
WITH changed AS (
    UPDATE escrows SET
        status = CAST(:to_status AS varchar),
        version = version + 1,
        updated_at = now(),
        funded_at = CASE WHEN CAST(:to_status AS varchar) = 'funded' THEN now() ELSE funded_at END,
        deliver_due_at = CASE WHEN CAST(:to_status AS varchar) = 'funded'
                              THEN now() + CAST(:deliver_within AS interval)
                              ELSE deliver_due_at END,
        delivered_at = CASE WHEN CAST(:to_status AS varchar) = 'delivered' THEN now()
                            ELSE delivered_at END,
        release_due_at = CASE WHEN CAST(:to_status AS varchar) = 'delivered'
                              THEN now() + CAST(:release_after AS interval)
                              ELSE release_due_at END,
        closed_at = CASE WHEN CAST(:final AS boolean) THEN now() ELSE closed_at END,
        status_before_dispute = CASE WHEN CAST(:to_status AS varchar) = 'disputed'
                                     THEN status ELSE status_before_dispute END,
        -- an invitee joins on the side that is still open
        buyer_id = coalesce(buyer_id, CAST(:joiner_id AS bigint)),
        seller_id = CASE WHEN buyer_id IS NULL THEN seller_id
                         ELSE coalesce(seller_id, CAST(:joiner_id AS bigint)) END,
        split_seller = coalesce(CAST(:split_seller AS bigint), split_seller),
        split_fee = coalesce(CAST(:split_fee AS bigint), split_fee)
    WHERE id = :deal_id AND status = :from_status AND version = :from_version
      -- coalesce: a check of the row found by its id, which never implies a
      -- clock running (never a reason to scan ix_escrows_deliver_due instead)
      AND (NOT CAST(:overdue_only AS boolean) OR coalesce(deliver_due_at <= now(), false))
      -- a deal is accepted or funded only while none of its parties is blocked
      AND (CAST(:to_status AS varchar) NOT IN ('accepted', 'funded') OR NOT EXISTS (
          SELECT 1 FROM users u
          WHERE u.id IN (escrows.buyer_id, escrows.seller_id, CAST(:joiner_id AS bigint))
            AND u.status <> 'active'))
    RETURNING *
), history AS (
    INSERT INTO deal_events (escrow_id, actor_id, from_status, to_status, reason)
    SELECT id, :actor_id, :from_status, status, :reason FROM changed
), revoked AS (
    -- a deal that ends before its invitee joined takes its links with it
    UPDATE invitations SET status = 'revoked', updated_at = now()
    WHERE escrow_id IN (SELECT id FROM changed) AND status = 'active'
      AND CAST(:final AS boolean)
), """
    # the parties' records: a completion, a dispute opened or lost (db/sql/reputation.py)
    + reputation.counted(
        "changed",
        completes="CAST(:completes AS boolean)",
        volume="CAST(:volume AS bigint)",
        opener="CAST(:opener_id AS bigint)",
        loser="CAST(:loser_id AS bigint)",
    )
    + ", "
    + reputation.bumped("CAST(:bump_ids AS bigint[])")
    + ", "
    + notify_parties("changed")
    + deal_view_sql("changed", NOTICES + reputation.REPUTED)
)

INSERT_DEAL = text(
    """
WITH created AS (
    INSERT INTO escrows (code, creator_id, buyer_id, seller_id, amount, fee, fee_bps,
                         currency, description, deadline_at, create_key, to_stranger)
    SELECT :code, :creator_id, :buyer_id, :seller_id, :amount, :fee, :fee_bps,
           :currency, :description, now() + CAST(:deadline AS interval), :create_key,
           coalesce(CAST(:to_stranger AS boolean), false)
    -- nobody blocked opens a deal, or is made a party to one
    WHERE NOT EXISTS (SELECT 1 FROM users WHERE status <> 'active' AND id IN (
        CAST(:creator_id AS bigint), CAST(:buyer_id AS bigint), CAST(:seller_id AS bigint)))
    RETURNING *
), history AS (
    INSERT INTO deal_events (escrow_id, actor_id, from_status, to_status)
    SELECT id, creator_id, NULL, status FROM created
), """
    + notify_parties("created")
    + deal_view_sql("created", NOTICES)
)

# The deal a creator's request with this idempotency key made, with its
# invitation (the partial unique index uq_escrows_creator_create_key).
DEAL_BY_CREATE_KEY = text(
    deal_view_sql(
        "escrows",
        """, i.code AS invitation_code, i.telegram_id AS invitation_telegram_id,
       i.username AS invitation_username, i.status AS invitation_status,
       i.expires_at AS invitation_expires_at""",
    )
    + """
LEFT JOIN LATERAL (SELECT code, telegram_id, username, status, expires_at FROM invitations
                   WHERE escrow_id = d.id ORDER BY id LIMIT 1) i ON true
WHERE d.creator_id = :creator_id AND d.create_key = :create_key"""
)

INSERT_INVITATION = text("""
INSERT INTO invitations (code, escrow_id, inviter_id, telegram_id, username, expires_at)
VALUES (:code, :escrow_id, :inviter_id, :telegram_id, :username,
        now() + CAST(:ttl AS interval))
RETURNING code, :deal_code AS deal_code, telegram_id, username, status, expires_at
""")

INVITATION_BY_CODE = """
SELECT i.id, i.telegram_id, i.username, i.status, i.expires_at <= now() AS expired,
       e.code AS deal_code
FROM invitations i JOIN escrows e ON e.id = i.escrow_id
WHERE i.code = :code"""
READ_INVITATION = text(INVITATION_BY_CODE)
# Only ever after its deal (LOCK_INVITED_DEAL).
LOCK_INVITATION = text(INVITATION_BY_CODE + "\nFOR UPDATE OF i")

CLOSE_INVITATION = text("""
UPDATE invitations SET status = :status, telegram_id = coalesce(telegram_id, :telegram_id),
       updated_at = now()
WHERE id = :id
""")

_buyer, _seller = users.alias("b"), users.alias("s")
_AT = literal_column("'@'", String)

# A deal with its parties' names, as `DealView` reads it (in Core: the admin
# reads wrap it in `reads.admin_only`).
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

# The deals a batch of notifications is about, as they are now.
DEALS_BY_ID = text(deal_view_sql("escrows") + "\nWHERE d.id = ANY(CAST(:ids AS bigint[]))")

# On a user's first contact or a change to their profile: invitations sent to
# their @username while nobody on the bot held it are claimed by them, bound
# to their Telegram id for good (someone who takes the name later never finds
# them); and how many invitations now wait for them, addressed to their id or
# claimed now, to tell them at once.
CLAIM_INVITATIONS = text("""
WITH claimed AS (
    UPDATE invitations SET telegram_id = :telegram_id, updated_at = now()
    WHERE username = CAST(:username AS varchar) AND telegram_id IS NULL AND status = 'active'
      AND inviter_id <> :user_id
    RETURNING escrow_id, expires_at
), addressed AS (
    SELECT escrow_id, expires_at FROM claimed
    UNION ALL
    SELECT escrow_id, expires_at FROM invitations
    WHERE telegram_id = :telegram_id AND status = 'active' AND inviter_id <> :user_id
)
SELECT count(*) AS waiting
FROM addressed a JOIN escrows e ON e.id = a.escrow_id
WHERE a.expires_at > now() AND e.status = 'pending'
""")
