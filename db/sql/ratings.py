"""Ratings: a party's stars for the other after a completed deal (once per
party and deal: the unique index uq_ratings_deal_rater), the short review
added to them, and the reviews a user received.

A rating and the rated user's counters (`reputations`, see
db/sql/reputation.py) and snapshot version move in one statement; a second
rating finds the first (`new` false) and changes nothing. Each statement
reads the deal, the rater's standing (never the cache's) and the rating
given, so a refusal costs no second statement.
"""

from __future__ import annotations

from sqlalchemy import text

from db.sql.deals import deal_view_sql

# The deal :code if :rater_id is a party, with the other party and whether it
# is completed (bot/services/deals/standing.py: released, or refunded by a
# settlement), and the rater's standing.
_DEAL = """
deal AS (
    SELECT e.*, CASE WHEN e.buyer_id = CAST(:rater_id AS bigint) THEN e.seller_id
                     ELSE e.buyer_id END AS rated_id,
           (e.status = 'released' OR (e.status = 'refunded'
                                      AND e.status_before_dispute IS NOT NULL)) AS completed
    FROM escrows e
    WHERE e.code = :code AND CAST(:rater_id AS bigint) IN (e.buyer_id, e.seller_id)
), rater AS (
    SELECT status AS rater_status FROM users WHERE id = CAST(:rater_id AS bigint)
)"""

# The rating given before this statement, and the deal as `DealView` reads it.
_RESULT = """,
       r.rater_status, d.completed, d.rated_id,
       coalesce(n.stars, g.stars) AS stars, coalesce(n.review, g.review) AS review,
       coalesce(n.created_at, g.created_at) AS rated_at, n.stars IS NOT NULL AS new"""
_JOINS = """
CROSS JOIN rater r
LEFT JOIN ratings g ON g.escrow_id = d.id AND g.rater_id = CAST(:rater_id AS bigint)"""

# Rate the deal :code with :stars as :rater_id, if they are an active party to
# it and it is completed: the rating, the rated user's counters in the deal's
# currency and their snapshot's version, all or nothing. `new` is false when a
# rating was there already (then it is the one returned).
RATE_DEAL = text(
    "WITH "
    + _DEAL
    + """, rated AS (
    INSERT INTO ratings (escrow_id, rater_id, rated_id, stars)
    SELECT d.id, CAST(:rater_id AS bigint), d.rated_id, CAST(:stars AS smallint)
    FROM deal d CROSS JOIN rater r
    WHERE d.completed AND r.rater_status = 'active'
    ON CONFLICT (escrow_id, rater_id) DO NOTHING
    RETURNING escrow_id, rated_id, stars, review, created_at
), counted AS (
    INSERT INTO reputations AS p (user_id, currency, ratings, stars)
    SELECT n.rated_id, d.currency, 1, n.stars FROM rated n JOIN deal d ON d.id = n.escrow_id
    ON CONFLICT (user_id, currency) DO UPDATE
    SET ratings = p.ratings + 1, stars = p.stars + excluded.stars
    RETURNING user_id
), bumped AS (
    UPDATE users u SET version = u.version + 1, updated_at = now()
    FROM counted c WHERE u.id = c.user_id
    RETURNING u.id, u.telegram_id, u.version
)"""
    + deal_view_sql(
        "deal",
        _RESULT
        + ", v.id AS bumped_id, v.telegram_id AS bumped_telegram_id, v.version AS bumped_version",
    )
    + _JOINS
    + """
LEFT JOIN rated n ON true
LEFT JOIN bumped v ON true"""
)

# Add :review to the rating :rater_id gave the deal :code, once: a rating that
# has its review already keeps it (`new` false, the review returned is the
# first). Reviews move no counter and are not part of any snapshot.
ADD_REVIEW = text(
    "WITH "
    + _DEAL
    + """, reviewed AS (
    UPDATE ratings g SET review = CAST(:review AS varchar)
    FROM deal d CROSS JOIN rater r
    WHERE g.escrow_id = d.id AND g.rater_id = CAST(:rater_id AS bigint)
      AND g.review IS NULL AND r.rater_status = 'active'
    RETURNING g.stars, g.review, g.created_at
)"""
    + deal_view_sql("deal", _RESULT)
    + _JOINS
    + """
LEFT JOIN reviewed n ON true"""
)

# The latest reviews :user_id received, newest first, with who wrote them
# (ix_ratings_reviews walked backwards).
REVIEWS_OF = text("""
SELECT g.stars, g.review, g.created_at, coalesce('@' || u.username, u.first_name) AS rater_name
FROM ratings g JOIN users u ON u.id = g.rater_id
WHERE g.rated_id = :user_id AND g.review IS NOT NULL
ORDER BY g.id DESC
LIMIT :limit
""")
