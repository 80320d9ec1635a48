"""Users: registration, the lookups of a user, and the cache's snapshot read."""

from __future__ import annotations

from sqlalchemy import and_, bindparam, func, select, text

from db.models import reputations, users, wallets

# User, wallets and record in one round trip: one row per wallet, with the
# user's reputation counters in that currency (kept on their row, never counted
# from deals: one primary-key lookup per wallet), or one row with NULL wallet
# columns for a user without wallets; empty when the user is unknown. The
# cache's one read.
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
        users.c.created_at,
        users.c.locale,
        wallets.c.currency,
        wallets.c.available,
        wallets.c.held,
        reputations.c.deals,
        reputations.c.volume,
        reputations.c.disputes_opened,
        reputations.c.disputes_lost,
        reputations.c.ratings,
        reputations.c.stars,
    )
    .select_from(
        users.outerjoin(wallets, wallets.c.user_id == users.c.id).outerjoin(
            reputations,
            and_(
                reputations.c.user_id == wallets.c.user_id,
                reputations.c.currency == wallets.c.currency,
            ),
        )
    )
    .where(users.c.telegram_id == bindparam("telegram_id"))
    .order_by(wallets.c.currency)
)


# A database dropped and created again, or restored into a new one, gets a new
# oid: which database this is (cached entries belong to one).
DATABASE_IDENTITY = text(
    "SELECT oid::text || ':' || datname FROM pg_database WHERE datname = current_database()"
)

# A counterparty named by @username (stored as typed; matched lower-cased), with
# what Telegram last reported about them and when, for the creator to check.
# At most one row: registration takes a name from whoever held it before.
_PERSON = (
    users.c.id,
    users.c.telegram_id,
    users.c.first_name,
    users.c.username,
    users.c.status,
    users.c.profile_at,
)
USER_BY_USERNAME = select(*_PERSON).where(func.lower(users.c.username) == bindparam("username"))
# The same, for a counterparty named by their numeric Telegram id or a forward.
PERSON_BY_TELEGRAM_ID = select(*_PERSON).where(users.c.telegram_id == bindparam("telegram_id"))

# A user's standing as the database has it (never the cache's), by either id.
_STANDING = "SELECT id, telegram_id, username, status, is_admin FROM users"
USER_STANDING = text(_STANDING + " WHERE id = :user_id")
USER_BY_TELEGRAM_ID = text(_STANDING + " WHERE telegram_id = :telegram_id")
# The same, the row locked until commit (whatever is counted per user after it
# is counted one transaction after the other).
# The user's row, locked for the rest of the transaction (counting what they did
# today, then acting on it: the next statement sees what a concurrent one committed).
LOCK_USER = text("SELECT id FROM users WHERE id = :user_id FOR UPDATE")
LOCK_USER_BY_TELEGRAM_ID = text(_STANDING + " WHERE telegram_id = :telegram_id FOR NO KEY UPDATE")

# Whoever caused a batch of notifications, as the messages name them.
ACTORS_BY_ID = text("""
SELECT id, telegram_id, coalesce('@' || username, first_name) AS name
FROM users WHERE id = ANY(CAST(:ids AS bigint[]))
""")

# Insert or update the profile; an unchanged profile is not written at all.
UPSERT_USER = text("""
WITH upserted AS (
    INSERT INTO users (telegram_id, username, first_name, last_name, language_code, is_admin)
    VALUES (:telegram_id, :username, :first_name, :last_name, :language_code, :is_admin)
    ON CONFLICT (telegram_id) DO UPDATE SET
        username = excluded.username,
        first_name = excluded.first_name,
        last_name = excluded.last_name,
        language_code = excluded.language_code,
        is_admin = excluded.is_admin,
        version = users.version + 1,
        updated_at = now(),
        -- when Telegram reported this name and @username: what the creator of a
        -- deal by @username is shown, so a new language does not move it
        profile_at = CASE WHEN (users.username, users.first_name)
                               IS DISTINCT FROM (excluded.username, excluded.first_name)
                          THEN now() ELSE users.profile_at END
    WHERE (users.username, users.first_name, users.last_name, users.language_code,
           users.is_admin)
          IS DISTINCT FROM
          (excluded.username, excluded.first_name, excluded.last_name,
           excluded.language_code, excluded.is_admin)
    RETURNING id, telegram_id, username, first_name, status, is_admin, version,
              (xmax = 0) AS created, true AS changed
)
SELECT * FROM upserted
UNION ALL
SELECT id, telegram_id, username, first_name, status, is_admin, version, false, false
FROM users WHERE telegram_id = :telegram_id AND NOT EXISTS (SELECT 1 FROM upserted)
""")

# Usernames change hands on Telegram: whoever reports a name now holds it, and
# any other row still carrying it (its owner renamed since) lets go of it in
# the same transaction, so a deal by @username never binds to a stale holder.
RELEASE_USERNAME = text("""
UPDATE users SET username = NULL, version = version + 1, updated_at = now()
WHERE lower(username) = lower(:username) AND telegram_id <> :telegram_id
RETURNING id, telegram_id, version
""")

# The language a user chose (NULL: Telegram's language_code decides); choosing
# the one already chosen writes nothing.
SET_LOCALE = text("""
UPDATE users SET locale = :locale, version = version + 1, updated_at = now()
WHERE id = :user_id AND locale IS DISTINCT FROM CAST(:locale AS varchar)
RETURNING id, telegram_id, version
""")

BUMP_VERSION = text("""
UPDATE users SET version = version + 1, updated_at = now() WHERE id = :user_id
RETURNING version
""")
