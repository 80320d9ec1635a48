"""The benchmark's statements: its data set (loaded with COPY, described in
`bench_dataset`, sampled for the workload), the server settings it reports,
and the seed's own ORM pattern that its `seed` mode measures. asyncpg's $n
parameters: the data set is loaded and read through asyncpg directly."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.orm import joinedload

from db.models import User

# -- the data set ----------------------------------------------------------------------

DATASET_TABLE = """
CREATE TABLE IF NOT EXISTS bench_dataset (
    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1), version int NOT NULL, users bigint NOT NULL,
    deals bigint NOT NULL, currencies text NOT NULL, loaded_at timestamptz NOT NULL,
    seconds double precision NOT NULL)
"""
DATASET = "SELECT * FROM bench_dataset"
RECORD_DATASET = (
    "INSERT INTO bench_dataset VALUES (1, $1, $2, $3, $4, now(), $5)"
    " ON CONFLICT (id) DO UPDATE SET version = $1, users = $2, deals = $3,"
    " currencies = $4, loaded_at = now(), seconds = $5"
)
TABLES = "ledger_entries, deal_events, invitations, withdrawals, wallets, escrows, users"
EMPTY_TABLES = f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"
# Indexes that are not constraints' (dropped while COPY loads, rebuilt after).
SECONDARY_INDEXES = """
SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i
WHERE i.indrelid = ANY(ARRAY['users', 'wallets', 'escrows']::regclass[])
  AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid)
"""
SET_SEQUENCES = """
SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users)),
       setval(pg_get_serial_sequence('wallets', 'id'), (SELECT max(id) FROM wallets)),
       setval(pg_get_serial_sequence('escrows', 'id'), (SELECT max(id) FROM escrows))
"""
# Each user's newest deals, either side: {user id, deal code} rows.
NEWEST_DEAL_CODES = """
SELECT u.id, d.code FROM unnest($1::bigint[]) AS u(id)
CROSS JOIN LATERAL (
    (SELECT id, code FROM escrows WHERE buyer_id = u.id ORDER BY id DESC LIMIT $2)
    UNION ALL
    (SELECT id, code FROM escrows WHERE seller_id = u.id ORDER BY id DESC LIMIT $2)
) d"""
INDEX_DEFINITIONS = "SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY($1::text[])"
PRESENT_INDEXES = "SELECT indexname FROM pg_indexes WHERE indexname = ANY($1::text[])"
SERVER_SETTINGS = "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY($1)"

# A busy buyer and one of their older released deals, for timing the hot reads.
BUSY_USER_SAMPLE = text("""
SELECT u.id AS user_id, u.telegram_id, lower(u.username) AS username,
       d.id AS deal_id, d.code AS deal_code
FROM users u
CROSS JOIN LATERAL (SELECT id, code FROM escrows WHERE buyer_id = u.id AND status = 'released'
                    ORDER BY id DESC OFFSET 40 LIMIT 1) d
WHERE u.id = 1
""")

# -- the seed's pattern ----------------------------------------------------------------

# The seed's fix for its N+1: the user with their wallets, eager-loaded via the ORM.
USER_WITH_WALLETS = select(User).options(joinedload(User.wallets))
