"""The operator's statements: health checks, migration locks, and what
`python -m bot doctor` reads (samples for the plans, the outbox's backlog,
what users are owed)."""

from __future__ import annotations

from sqlalchemy import text

PING = text("SELECT 1")

# -- migrations ------------------------------------------------------------------------

# For this transaction only: waiting for another replica's migration, and a
# long step, are not cut short by the app's statement_timeout.
NO_TIMEOUTS = text(
    "SELECT set_config('statement_timeout', '0', true), set_config('lock_timeout', '0', true)"
)
TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")
LOCK = text("SELECT pg_advisory_xact_lock(:key)")
LOCK_TIMEOUT = text("SELECT set_config('lock_timeout', :ms, true)")
# On the server's `postgres` database, through asyncpg ($n parameters).
SESSION_LOCK = "SELECT pg_advisory_lock($1)"
DATABASE_EXISTS = "SELECT 1 FROM pg_database WHERE datname = $1"
# The WAL written so far (bytes since 0/0) and this database's committed
# transactions: read before and after a benchmark window (asyncpg).
WAL_AND_COMMITS = (
    "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn AS wal, xact_commit"
    " FROM pg_stat_database WHERE datname = current_database()"
)

# -- doctor ----------------------------------------------------------------------------

# Real values for the hot statements' parameters: the newest deal and its buyer.
SAMPLE = text("""
SELECT u.id AS user_id, u.telegram_id, coalesce(lower(u.username), '') AS username,
       e.currency, e.id AS deal_id, e.code AS deal_code,
       coalesce((SELECT telegram_id FROM invitations WHERE telegram_id IS NOT NULL
                 ORDER BY id DESC LIMIT 1), 0) AS invitee_telegram_id,
       coalesce((SELECT id FROM users WHERE is_admin ORDER BY id LIMIT 1), 0) AS admin_id
FROM escrows e JOIN users u ON u.id = e.buyer_id
ORDER BY e.id DESC LIMIT 1
""")
ROW_ESTIMATES = text(
    "SELECT relname, greatest(reltuples, 0)::bigint AS rows FROM pg_class"
    " WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
)
# Pending notifications (the partial index's rows); "stuck" ones were due long
# enough ago that a running outbox worker would have claimed them.
OUTBOX = text("""
SELECT count(*) AS pending,
       count(*) FILTER (WHERE due_at < now() - CAST(:stuck AS interval)) AS stuck,
       min(due_at) AS oldest
FROM notifications WHERE status = 'pending'
""")
# What the users are owed per currency (available and held: held covers funded
# deals and withdrawals not paid yet), and the platform's fees.
LIABILITIES = text("""
SELECT c.currency,
       coalesce((SELECT sum(available + held) FROM wallets w WHERE w.currency = c.currency), 0)
           AS owed,
       coalesce((SELECT fees FROM platform_accounts p WHERE p.currency = c.currency), 0) AS fees
FROM unnest(CAST(:currencies AS varchar[])) AS c(currency)
""")

# -- a hot standby for reads (db/replay.py) --------------------------------------------

# The same on a primary and every standby made from it (a base backup).
SYSTEM_IDENTIFIER = text("SELECT system_identifier FROM pg_control_system()")
# How far the primary's WAL is flushed now, as a number of bytes: every commit
# that finished before this was sent lies before it, since a commit returns
# once its record is flushed (synchronous_commit on, Postgres's default; the
# bot never turns it off). Not the insert position: a record inserted but not
# yet flushed (the background writer's, say) may stay so on an idle primary,
# and no standby would ever be seen to replay it. A position just past a page
# header (40 bytes on a segment's first page, 24 on the others), where no
# record ends, is taken back to the page's start, where the last record ended.
PRIMARY_WAL_POSITION = text("""
SELECT CASE WHEN p % segment = 40 THEN p - 40 WHEN p % block = 24 THEN p - 24 ELSE p END
FROM (SELECT pg_current_wal_flush_lsn() - '0/0'::pg_lsn AS p,
             current_setting('wal_block_size')::int AS block,
             (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size') AS segment
     ) AS wal
""")
# How far the standby has replayed; NULL replayed on a server that is no
# standby (promoted, or the primary's address by mistake).
STANDBY_REPLAY = text(
    "SELECT pg_is_in_recovery() AS in_recovery,"
    " pg_last_wal_replay_lsn() - '0/0'::pg_lsn AS replayed"
)
