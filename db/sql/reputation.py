"""The reputation counters: one `reputations` row per user and currency (deals
completed, the volume released, disputes opened and lost, ratings received
and their stars), moved by the statement that makes the change they count,
in its transaction, never counted from the deals.

These are pieces for other statements' WITH lists, not statements: a deal's
transition (`db.sql.deals.TRANSITION`) splices `counted` and `bumped`; any
other statement that completes deals (a batch of automatic releases, say)
splices the same two over its own rows, so a completed deal is counted once,
by the statement that completed it, whichever path that was. Ratings, which
move the counters too, are `db.sql.ratings`.

Row locks: the `reputations` rows of a deal's parties are taken in user order
(two completions over the same two users queue, they don't deadlock), and
before any wallet. A money movement locks wallets before users
(`db.sql.ledger.POST_MOVEMENT`) and bumps its users' versions itself, so a
`users` row is bumped here only for a party whose money the transaction does
not move (a dispute's opener, the seller of a refund an admin settles): no
wallet of theirs is locked after it.
"""

from __future__ import annotations


def counted(source: str, *, completes: str, volume: str, opener: str, loser: str) -> str:
    """A `reputed` CTE: for each deal in `source` (a CTE of escrow rows), its
    parties' counters in the deal's currency. The arguments are SQL
    expressions over the source row `c`: `completes` (boolean) counts a
    completed deal for both parties with `volume` (minor units) each,
    `opener` is the user who opened a dispute and `loser` the one a
    settlement went against (NULL: nobody). Returns the user ids it moved."""
    return f"""reputed AS (
    INSERT INTO reputations AS r (user_id, currency, deals, volume, disputes_opened, disputes_lost)
    SELECT p.user_id, c.currency,
           CASE WHEN {completes} THEN 1 ELSE 0 END,
           CASE WHEN {completes} THEN {volume} ELSE 0 END,
           CASE WHEN p.user_id = {opener} THEN 1 ELSE 0 END,
           CASE WHEN p.user_id = {loser} THEN 1 ELSE 0 END
    FROM {source} c CROSS JOIN LATERAL (VALUES (c.buyer_id), (c.seller_id)) AS p(user_id)
    WHERE p.user_id IS NOT NULL AND ({completes} OR p.user_id IN ({opener}, {loser}))
    ORDER BY p.user_id
    ON CONFLICT (user_id, currency) DO UPDATE SET
        deals = r.deals + excluded.deals,
        volume = r.volume + excluded.volume,
        disputes_opened = r.disputes_opened + excluded.disputes_opened,
        disputes_lost = r.disputes_lost + excluded.disputes_lost
    RETURNING user_id
)"""


def bumped(ids: str) -> str:
    """A `reputed_users` CTE: the users of `reputed` among `ids` (an SQL
    bigint[]) get their snapshot's version bumped here; the others' are
    bumped by the money movement of the same transaction."""
    return f"""reputed_users AS (
    UPDATE users u SET version = u.version + 1, updated_at = now()
    WHERE u.id = ANY({ids}) AND u.id IN (SELECT user_id FROM reputed)
    RETURNING u.id, u.telegram_id, u.version
)"""


# A column listing the users `bumped` moved (spliced into a SELECT list).
REPUTED = (
    ", (SELECT json_agg(json_build_object('id', b.id, 'telegram_id', b.telegram_id,"
    " 'version', b.version)) FROM reputed_users b) AS reputed"
)
