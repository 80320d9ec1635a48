"""Every hot statement's plan uses its index on a realistic data set.

A database of its own (the session database is emptied before every test)
is migrated with alembic and filled server-side with generate_series: 100k
users with a wallet per currency, 1M deals with a few very busy users,
invitations, withdrawals, deposits, the outbox and the deals' histories. Each
`HOT_QUERIES` entry is then explained twice: as planned for its parameter
values (what EXPLAIN shows by default) and as a generic plan (what asyncpg's
cached prepared statements get after a few executions). A statement that locks
or writes is explained without ANALYZE (planned, not run). `pytest -s` prints
the plans' execution times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Config
from bot.ops import migrate
from db.engine import DatabaseSettings, build_engine
from db.explain import explain, indexes_used, nodes, scans, seq_scanned
from db.models import FINAL_DEAL_STATUSES
from db.sql.hot import HOT_QUERIES, HotQuery, Sample
from db.sql.reads import FIRST_PAGE, MY_DEALS_PAGE, PAGE_SIZE
from db.sql.users import SNAPSHOT_BY_TELEGRAM_ID

pytestmark = pytest.mark.slow

# The benchmark's size (about a minute to load here); smaller for a quick look
# with ESCROW_EXPLAIN_USERS=20000 ESCROW_EXPLAIN_DEALS=100000.
USERS = int(os.environ.get("ESCROW_EXPLAIN_USERS", 100_000))
DEALS = int(os.environ.get("ESCROW_EXPLAIN_DEALS", 1_000_000))
WITHDRAWALS = 3_000
DEPOSITS = 20_000
NOTIFICATIONS = 300_000
# Users 1-5 are the busy ones: a party to about 1 deal in 7 as buyer and 1 in
# 11 as seller (some 4,600 deals each); everyone else has a handful.
BUSY_USER = 1
ADMIN_ID = 11
# Tables a hot query must never read whole.
NO_SEQ_SCAN = frozenset(
    {
        "escrows",
        "users",
        "wallets",
        "invitations",
        "deal_events",
        "withdrawals",
        "deposits",
        "notifications",
        "ratings",
        "reputations",
    }
)

# Where a statement takes $1, it is the array of configured currency codes.
INSERT_USERS = f"""
INSERT INTO users (id, telegram_id, username, first_name, language_code, is_admin,
                   created_at, updated_at)
SELECT u, 100000000 + u * 7,
       CASE WHEN u % 5 <> 0 THEN CASE WHEN u % 3 = 0 THEN 'User_' ELSE 'user_' END || u END,
       'User ' || u, (ARRAY['en', 'ru', 'es', 'de'])[u % 4 + 1], u = {ADMIN_ID},
       now() - interval '400 days' + u * interval '25 minutes',
       now() - interval '400 days' + u * interval '25 minutes'
FROM generate_series(1, {USERS}) u
"""
INSERT_WALLETS = f"""
INSERT INTO wallets (user_id, currency, available, held)
SELECT u, c, (random() * 100000000)::bigint, 0
FROM generate_series(1, {USERS}) u, unnest($1::varchar[]) c
"""
# Deals $2 to $3. Deals are numbered by age (the newest has the highest id,
# created five minutes after the one before); the newest thousand hold the
# open and funded ones, older deals are mostly finished, with a few disputes
# still open.
INSERT_DEALS = f"""
INSERT INTO escrows (id, code, creator_id, buyer_id, seller_id, amount, fee, fee_bps, currency,
                     description, status, status_before_dispute, created_at, updated_at,
                     funded_at, deadline_at, closed_at, create_key, deliver_due_at,
                     release_due_at, to_stranger)
SELECT i, code, CASE WHEN i % 2 = 0 THEN buyer ELSE seller END,
       CASE WHEN unjoined AND i % 2 = 1 THEN NULL ELSE buyer END,
       CASE WHEN unjoined AND i % 2 = 0 THEN NULL ELSE seller END,
       amount, amount * 150 / 10000, 150, ($1::varchar[])[i % cardinality($1::varchar[]) + 1],
       'Deal ' || i || ': ' || md5(i::text), status,
       CASE status WHEN 'disputed' THEN 'delivered' WHEN 'refunded' THEN 'funded' END,
       created,
       CASE WHEN status = 'pending' THEN created
            ELSE least(now(), created + (1 + i % 48) * interval '1 hour') END,
       CASE WHEN status IN ('funded', 'delivered', 'disputed', 'released', 'refunded')
            THEN least(now(), created + interval '30 minutes') END,
       created + interval '72 hours',
       CASE WHEN status IN ('released', 'refunded', 'cancelled', 'declined', 'expired')
            THEN least(now(), created + (1 + i % 48) * interval '1 hour') END,
       CASE WHEN i % 4 = 0 THEN 'wizard-' || i END,
       -- the clocks: 7 days to deliver from funding (the busy users' sellers are
       -- late), 72 hours to release
       CASE WHEN status = 'funded' AND buyer <= 5 THEN created
            WHEN status = 'funded' THEN created + interval '30 minutes' + interval '7 days' END,
       CASE WHEN status = 'delivered' THEN created + interval '72 hours' END,
       unjoined OR i % 10 = 3
FROM (
    SELECT i, buyer, seller, status, amount, created,
           -- invited (1 deal in 10): the invitee's side stays empty unless they joined
           i % 10 = 3 AND status IN ('pending', 'declined', 'expired', 'cancelled') AS unjoined,
           -- 8 characters of the deal-code alphabet, distinct for every deal
           translate(lpad(upper(to_hex(i * 2654435761 % 4294967296)), 8, '0'), '01', 'WX')
               AS code
    FROM (
        SELECT i,
               CASE WHEN i % 7 = 0 THEN 1 + i % 5 ELSE 11 + (i * 7919) % 19990 END AS buyer,
               CASE WHEN i % 11 = 0 THEN 1 + (i + 1) % 5
                    ELSE 11 + ((i * 7919) % 19990 + 1 + (i * 104729) % 19989) % 19990
               END AS seller,
               CASE WHEN i > {DEALS} - 1000 THEN (ARRAY[
                        'pending', 'pending', 'pending', 'pending', 'pending', 'pending',
                        'accepted', 'accepted', 'accepted', 'funded', 'funded', 'funded',
                        'delivered', 'delivered', 'disputed', 'released', 'released',
                        'released', 'cancelled', 'declined'])[i % 20 + 1]
                    WHEN i % 1000 = 0 THEN 'disputed'
                    WHEN i % 100 < 80 THEN 'released'
                    WHEN i % 100 < 85 THEN 'refunded'
                    WHEN i % 100 < 92 THEN 'cancelled'
                    WHEN i % 100 < 96 THEN 'declined'
                    ELSE 'expired'
               END AS status,
               100 + (random() * 1000000)::bigint AS amount,
               now() - ({DEALS} - i) * interval '5 minutes' AS created
        FROM generate_series($2::bigint, $3::bigint) i
    ) parties
) deals
"""
# The invited deals' invitations: addressed to a Telegram id (of someone not on
# the bot yet), to an @username, or to anyone with the link; the invitee's
# Telegram id is recorded when they take it up.
INSERT_INVITATIONS = """
INSERT INTO invitations (code, escrow_id, inviter_id, telegram_id, username, status, expires_at,
                         created_at, updated_at)
SELECT md5('invitation ' || e.id), e.id, e.creator_id,
       CASE WHEN e.id % 3 = 0 THEN 500000000 + e.id ELSE joiner.telegram_id END,
       CASE WHEN e.id % 3 = 1 THEN coalesce(lower(joiner.username), 'newbie_' || e.id) END,
       CASE e.status WHEN 'pending' THEN 'active' WHEN 'declined' THEN 'declined'
                     WHEN 'expired' THEN 'expired' WHEN 'cancelled' THEN 'revoked'
                     ELSE 'accepted' END,
       e.created_at + interval '72 hours', e.created_at, e.updated_at
FROM escrows e
LEFT JOIN users joiner
       ON joiner.id = CASE WHEN e.creator_id = e.buyer_id THEN e.seller_id ELSE e.buyer_id END
WHERE e.id % 10 = 3
ORDER BY e.id
"""
INSERT_WITHDRAWALS = f"""
INSERT INTO withdrawals (user_id, currency, amount, destination, status, created_at,
                         decided_at, decided_by, payout)
SELECT 1 + (g * 7919) % {USERS}, ($1::varchar[])[g % cardinality($1::varchar[]) + 1],
       1000 + (random() * 1000000)::bigint, 'wallet-' || md5(g::text),
       CASE WHEN g > {WITHDRAWALS} - 100 THEN 'pending'
            WHEN g > {WITHDRAWALS} - 120 THEN 'sending'
            WHEN g % 10 = 0 THEN 'rejected' ELSE 'approved' END,
       now() - ({WITHDRAWALS} - g) * interval '2 hours',
       CASE WHEN g <= {WITHDRAWALS} - 100
            THEN now() - ({WITHDRAWALS} - g) * interval '2 hours' + interval '1 hour' END,
       CASE WHEN g <= {WITHDRAWALS} - 100 THEN {ADMIN_ID} END,
       CASE WHEN g > {WITHDRAWALS} - 120 AND g <= {WITHDRAWALS} - 100 THEN 'cryptopay' END
FROM generate_series(1, {WITHDRAWALS}) g
"""
# Invoice deposits, one every half hour: all settled but the newest 50 (open
# invoices) and 5 whose invoice is being created.
INSERT_DEPOSITS = f"""
INSERT INTO deposits (user_id, currency, amount, provider, invoice_id, pay_url, status,
                      created_at, expires_at, settled_at)
SELECT 1 + (g * 7919) % {USERS}, ($1::varchar[])[g % cardinality($1::varchar[]) + 1],
       1000 + (random() * 1000000)::bigint, 'cryptopay',
       CASE WHEN g <= {DEPOSITS} - 5 THEN 900000 + g END,
       CASE WHEN g <= {DEPOSITS} - 5 THEN 'https://pay.example/' || g END,
       CASE WHEN g > {DEPOSITS} - 5 THEN 'creating' WHEN g > {DEPOSITS} - 55 THEN 'active'
            WHEN g % 10 = 0 THEN 'expired' ELSE 'paid' END,
       now() - ({DEPOSITS} - g) * interval '30 minutes',
       now() - ({DEPOSITS} - g) * interval '30 minutes' + interval '1 hour',
       CASE WHEN g <= {DEPOSITS} - 55 THEN now() - ({DEPOSITS} - g) * interval '30 minutes' END
FROM generate_series(1, {DEPOSITS}) g
"""
# The outbox: every notification sent long ago, but the newest few still
# pending (Telegram was down for a minute), as the worker finds it.
INSERT_NOTIFICATIONS = f"""
INSERT INTO notifications (chat_id, user_id, kind, escrow_id, actor_id, status, attempts,
                           due_at, created_at, sent_at)
SELECT 1000000 + (g * 7919) % {USERS}, 1 + (g * 7919) % {USERS}, 'fund', 1 + g % {DEALS},
       1 + (g * 104729) % {USERS},
       CASE WHEN g > {NOTIFICATIONS} - 50 THEN 'pending' ELSE 'sent' END,
       CASE WHEN g > {NOTIFICATIONS} - 50 THEN 1 ELSE 0 END,
       now() - ({NOTIFICATIONS} - g) * interval '1 second',
       now() - ({NOTIFICATIONS} - g) * interval '1 second' - interval '30 seconds',
       CASE WHEN g <= {NOTIFICATIONS} - 50
            THEN now() - ({NOTIFICATIONS} - g) * interval '1 second' END
FROM generate_series(1::bigint, {NOTIFICATIONS}) g
"""
# The history of deals $1 to $2: the path that led to each one's status, in
# time order (so one deal's events are spread over the table, as they would be).
INSERT_DEAL_EVENTS = """
INSERT INTO deal_events (escrow_id, actor_id, from_status, to_status, created_at)
SELECT e.id,
       CASE WHEN p.to_status = 'expired' THEN NULL
            WHEN p.step = 1 THEN e.creator_id
            WHEN p.step % 2 = 0 THEN coalesce(e.seller_id, e.creator_id)
            ELSE coalesce(e.buyer_id, e.creator_id) END,
       p.from_status, p.to_status, least(now(), e.created_at + p.step * interval '20 minutes')
FROM escrows e
JOIN (VALUES
    ('pending', 1, NULL, 'pending'),
    ('accepted', 1, NULL, 'pending'), ('accepted', 2, 'pending', 'accepted'),
    ('funded', 1, NULL, 'pending'), ('funded', 2, 'pending', 'accepted'),
    ('funded', 3, 'accepted', 'funded'),
    ('delivered', 1, NULL, 'pending'), ('delivered', 2, 'pending', 'accepted'),
    ('delivered', 3, 'accepted', 'funded'), ('delivered', 4, 'funded', 'delivered'),
    ('disputed', 1, NULL, 'pending'), ('disputed', 2, 'pending', 'accepted'),
    ('disputed', 3, 'accepted', 'funded'), ('disputed', 4, 'funded', 'delivered'),
    ('disputed', 5, 'delivered', 'disputed'),
    ('released', 1, NULL, 'pending'), ('released', 2, 'pending', 'accepted'),
    ('released', 3, 'accepted', 'funded'), ('released', 4, 'funded', 'delivered'),
    ('released', 5, 'delivered', 'released'),
    ('refunded', 1, NULL, 'pending'), ('refunded', 2, 'pending', 'accepted'),
    ('refunded', 3, 'accepted', 'funded'), ('refunded', 4, 'funded', 'disputed'),
    ('refunded', 5, 'disputed', 'refunded'),
    ('cancelled', 1, NULL, 'pending'), ('cancelled', 2, 'pending', 'cancelled'),
    ('declined', 1, NULL, 'pending'), ('declined', 2, 'pending', 'declined'),
    ('expired', 1, NULL, 'pending'), ('expired', 2, 'pending', 'expired')
) AS p(status, step, from_status, to_status) ON p.status = e.status
WHERE e.id BETWEEN $1 AND $2
ORDER BY 5
"""
# Evidence on every dispute (open and settled): a few pieces from each party.
INSERT_EVIDENCE = """
INSERT INTO dispute_evidence (escrow_id, sender_id, kind, file_id, text, created_at)
SELECT e.id, CASE WHEN n % 2 = 0 THEN e.buyer_id ELSE e.seller_id END,
       CASE WHEN n % 3 = 0 THEN 'text' ELSE 'photo' END,
       CASE WHEN n % 3 = 0 THEN NULL ELSE 'AgACAgIAAxkBAA' || md5(e.id || ':' || n) END,
       'piece ' || n, e.updated_at
FROM escrows e CROSS JOIN generate_series(1, 5) n
WHERE e.status = 'disputed' OR (e.status = 'refunded' AND e.id % 7 = 0)
"""
# Some users blocked and unblocked by the admin over time.
INSERT_STATUS_CHANGES = f"""
INSERT INTO user_status_changes (user_id, admin_id, status, reason, created_at)
SELECT 12 + (g * 7919) % ({USERS} - 12), {ADMIN_ID},
       CASE WHEN g % 2 = 0 THEN 'blocked' ELSE 'active' END, 'reason ' || g,
       now() - g * interval '1 hour'
FROM generate_series(1, 2000) g
"""
# The parties' ratings of completed deals: the buyer rated 3 in 5, the seller
# 2 in 5, every other rating with a review; deals $1 to $2.
INSERT_RATINGS = """
INSERT INTO ratings (escrow_id, rater_id, rated_id, stars, review, created_at)
SELECT e.id, r.rater, r.rated, 1 + (e.id * 7 + r.side) % 5,
       CASE WHEN (e.id + r.side) % 2 = 0 THEN 'Review of deal ' || e.id END,
       e.updated_at + interval '1 hour'
FROM escrows e
CROSS JOIN LATERAL (VALUES (0, e.buyer_id, e.seller_id), (1, e.seller_id, e.buyer_id))
    AS r(side, rater, rated)
WHERE e.id BETWEEN $1 AND $2
  AND (e.status = 'released' OR (e.status = 'refunded' AND e.status_before_dispute IS NOT NULL))
  AND e.id % 5 < CASE r.side WHEN 0 THEN 3 ELSE 2 END
ORDER BY e.id, r.side
"""
# Every party's record, as the statements that keep it would have counted it.
INSERT_REPUTATIONS = """
INSERT INTO reputations (user_id, currency, deals, volume, disputes_opened, disputes_lost,
                         ratings, stars)
SELECT c.user_id, c.currency, c.deals, c.volume, c.opened, c.lost,
       coalesce(g.ratings, 0), coalesce(g.stars, 0)
FROM (
    SELECT p.user_id, e.currency,
           count(*) FILTER (WHERE e.status = 'released' OR (e.status = 'refunded'
                                  AND e.status_before_dispute IS NOT NULL)) AS deals,
           coalesce(sum(e.amount) FILTER (WHERE e.status = 'released'), 0) AS volume,
           count(*) FILTER (WHERE e.status_before_dispute IS NOT NULL AND p.side = 0) AS opened,
           count(*) FILTER (WHERE e.status = 'refunded' AND e.status_before_dispute IS NOT NULL
                            AND p.side = 1) AS lost
    FROM escrows e
    CROSS JOIN LATERAL (VALUES (0, e.buyer_id), (1, e.seller_id)) AS p(side, user_id)
    WHERE p.user_id IS NOT NULL
    GROUP BY p.user_id, e.currency
) c
LEFT JOIN (
    SELECT g.rated_id, e.currency, count(*) AS ratings, sum(g.stars) AS stars
    FROM ratings g JOIN escrows e ON e.id = g.escrow_id
    GROUP BY g.rated_id, e.currency
) g ON g.rated_id = c.user_id AND g.currency = c.currency
"""
SET_SEQUENCES = """
SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users)),
       setval(pg_get_serial_sequence('escrows', 'id'), (SELECT max(id) FROM escrows))
"""
LOADED_TABLES = (
    "ratings",
    "reputations",
    "users",
    "wallets",
    "escrows",
    "invitations",
    "withdrawals",
    "deposits",
    "deal_events",
    "notifications",
    "dispute_evidence",
    "user_status_changes",
)

# Sample values: the busy user, one of their released deals some way down
# their history (a next-page cursor), one of their funded deals and one they
# made with the wizard's key, the newest invitation addressed to a Telegram id
# and to an @username not on the bot; the admin (the admin reads check their
# row); a pending and a sending withdrawal, a deposit being created and one
# with an open invoice, a pending notification.
SAMPLE = f"""
SELECT u.id AS user_id, u.telegram_id, lower(u.username) AS username,
       d.id AS deal_id, d.code AS deal_code, i.telegram_id AS invitee_telegram_id,
       i.code AS invitation_code, {ADMIN_ID} AS admin_id,
       f.id AS funded_deal_id, f.version AS funded_deal_version,
       (SELECT create_key FROM escrows WHERE creator_id = u.id AND create_key IS NOT NULL
        ORDER BY id DESC LIMIT 1) AS create_key,
       (SELECT username FROM invitations WHERE status = 'active' AND telegram_id IS NULL
        AND username IS NOT NULL ORDER BY id DESC LIMIT 1) AS invitee_username,
       w.id AS withdrawal_id, w.user_id AS withdrawer_id,
       (SELECT max(id) FROM withdrawals WHERE status = 'sending') AS sending_withdrawal_id,
       (SELECT max(id) FROM deposits WHERE status = 'creating') AS creating_deposit_id,
       o.id AS deposit_id, o.invoice_id,
       (SELECT max(id) FROM notifications WHERE status = 'pending') AS notification_id,
       x.id AS disputed_deal_id, x.code AS disputed_deal_code, x.buyer_id AS disputer_id,
       (SELECT max(id) FROM dispute_evidence WHERE escrow_id = x.id) AS evidence_id
FROM users u
CROSS JOIN LATERAL (SELECT id, code FROM escrows WHERE buyer_id = u.id AND status = 'released'
                    ORDER BY id DESC OFFSET 40 LIMIT 1) d
CROSS JOIN LATERAL (SELECT id, version FROM escrows WHERE buyer_id = u.id AND status = 'funded'
                    ORDER BY id DESC LIMIT 1) f
CROSS JOIN LATERAL (SELECT telegram_id, code FROM invitations
                    WHERE status = 'active' AND telegram_id IS NOT NULL
                    ORDER BY id DESC LIMIT 1) i
CROSS JOIN LATERAL (SELECT id, user_id FROM withdrawals WHERE status = 'pending'
                    ORDER BY id DESC LIMIT 1) w
CROSS JOIN LATERAL (SELECT id, invoice_id FROM deposits WHERE status = 'active'
                    ORDER BY id DESC LIMIT 1) o
CROSS JOIN LATERAL (SELECT id, code, buyer_id FROM escrows WHERE status = 'disputed'
                    ORDER BY id DESC LIMIT 1) x
WHERE u.id = {BUSY_USER}
"""


@dataclass
class DataSet:
    engine: AsyncEngine
    sample: Sample
    load_seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def load_phases(currencies: list[str], chunks: int = 4) -> list[list[tuple[str, tuple]]]:
    """The load as phases of statements; a phase's statements run side by side."""
    size = -(-DEALS // chunks)
    ranges = [(lo, min(lo + size - 1, DEALS)) for lo in range(1, DEALS + 1, size)]
    return [
        [(INSERT_USERS, ())],
        [
            (INSERT_WALLETS, (currencies,)),
            (INSERT_WITHDRAWALS, (currencies,)),
            (INSERT_DEPOSITS, (currencies,)),
            (INSERT_NOTIFICATIONS, ()),
        ]
        + [(INSERT_DEALS, (currencies, lo, hi)) for lo, hi in ranges],
        [(INSERT_INVITATIONS, ()), (INSERT_EVIDENCE, ()), (INSERT_STATUS_CHANGES, ())]
        + [(INSERT_DEAL_EVENTS, (lo, hi)) for lo, hi in ranges]
        + [(INSERT_RATINGS, (lo, hi)) for lo, hi in ranges],
        [(INSERT_REPUTATIONS, ())],
        # what autovacuum would have done by now
        [(SET_SEQUENCES, ())] + [(f"VACUUM ANALYZE {table}", ()) for table in LOADED_TABLES],
    ]


async def load(engine: AsyncEngine, currencies: list[str]) -> None:
    async def run(statement: str, args: tuple) -> None:
        async with engine.connect() as conn:
            raw: asyncpg.Connection = (await conn.get_raw_connection()).driver_connection
            await raw.execute("SELECT setseed(0.42)")
            # Foreign keys are not checked while loading (the data is consistent
            # by construction): the checks would take longer than the load.
            with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
                await raw.execute("SET session_replication_role = replica")
            try:
                await raw.execute(statement, *args)
            finally:
                await raw.execute("RESET session_replication_role")

    for phase in load_phases(currencies):
        await asyncio.gather(*(run(statement, args) for statement, args in phase))


@pytest.fixture(scope="module")
async def data_set(pg_settings: DatabaseSettings, config: Config) -> AsyncIterator[DataSet]:
    """A database of its own, migrated and loaded; dropped at the end."""
    url = pg_settings.sqlalchemy_url
    server = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username,
        password=url.password, database="postgres", timeout=5,
    )  # fmt: skip
    name = f"{url.database}_explain"
    try:
        await server.execute(f'CREATE DATABASE "{name}"')
        engine = build_engine(
            msgspec.structs.replace(pg_settings.with_database(name), statement_timeout_ms=60_000)
        )
        try:
            await migrate.run(engine)
            started = time.perf_counter()
            await load(engine, list(config.currency_table().codes))
            load_seconds = time.perf_counter() - started
            async with engine.connect() as conn:
                row = (await conn.execute(text(SAMPLE))).one()
            sample = Sample(currency=config.currency_table().codes[0], **row._asdict())
            data = DataSet(engine, sample, load_seconds)
            yield data
        finally:
            await engine.dispose()
        print(f"\n\ndata set loaded in {load_seconds:.2f} s; best execution time of 3:")
        for key, ms in data.timings.items():
            print(f"  {key:45} {ms:7.3f} ms")
    finally:
        await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await server.close()


# -- EXPLAIN ------------------------------------------------------------------------------


async def explain_query(
    engine: AsyncEngine, query: HotQuery, sample: Sample, *, generic: bool
) -> dict:
    return await explain(
        engine, query.statement, query.params(sample), generic=generic, analyze=not query.writes
    )


@pytest.mark.parametrize("mode", ["custom", "generic"])
@pytest.mark.parametrize("query", HOT_QUERIES, ids=lambda query: query.name)
async def test_hot_query_plan_uses_its_index(data_set: DataSet, query: HotQuery, mode: str):
    result = await explain_query(data_set.engine, query, data_set.sample, generic=mode == "generic")
    plan = result["Plan"]
    used = indexes_used(plan)
    seq_scans = seq_scanned(plan) & NO_SEQ_SCAN - set(query.seq_scans)
    if not query.writes:  # planned only: nothing ran
        data_set.timings[f"{query.name} ({mode})"] = result["Execution Time"]
    ran = "planned only" if query.writes else f"{result['Execution Time']:.3f} ms execution"
    print(
        f"\n{query.name} ({mode}): {ran}, "
        f"{result['Planning Time']:.3f} ms planning; {'; '.join(scans(plan))}"
    )
    assert query.expected(generic=mode == "generic") <= used, json.dumps(plan, indent=1)
    assert not seq_scans, json.dumps(plan, indent=1)


@pytest.mark.parametrize("query", HOT_QUERIES, ids=lambda query: query.name)
async def test_hot_query_returns_rows(data_set: DataSet, query: HotQuery):
    """An index plan over an empty result proves little: the sample values hit
    rows (a statement that writes runs in a transaction rolled back after it)."""
    async with data_set.engine.connect() as conn:
        result = await conn.execute(query.statement, query.params(data_set.sample))
        hit = len(result.all()) if result.returns_rows else result.rowcount
        await conn.rollback()
    assert hit > 0


# A user's record counted from their deals and ratings when it is loaded: what
# the snapshot would cost without the counters kept on `reputations`.
RECORD_COUNTED = text("""
SELECT e.currency,
       count(*) FILTER (WHERE e.status = 'released' OR (e.status = 'refunded'
                              AND e.status_before_dispute IS NOT NULL)) AS deals,
       coalesce(sum(e.amount) FILTER (WHERE e.status = 'released'), 0) AS volume,
       (SELECT count(*) FROM ratings g WHERE g.rated_id = :user_id) AS ratings
FROM escrows e
WHERE e.buyer_id = :user_id OR e.seller_id = :user_id
GROUP BY e.currency
""")


def rows_read(plan: dict) -> int:
    return sum(
        int(node.get("Actual Rows", 0) * node.get("Actual Loops", 1))
        for node in nodes(plan)
        if "Scan" in node["Node Type"]
    )


async def test_the_record_is_kept_because_counting_it_reads_every_deal(
    data_set: DataSet, config: Config
):
    """The snapshot reads a user's record as one `reputations` row per wallet;
    counted from the deals at load time, a busy user's record reads every
    deal they were a party to, on every cache miss. So the counters are kept,
    by the statements that change them, in the same transaction."""
    sample = data_set.sample
    kept = await explain(
        data_set.engine, SNAPSHOT_BY_TELEGRAM_ID, {"telegram_id": sample.telegram_id}
    )
    counted = await explain(data_set.engine, RECORD_COUNTED, {"user_id": BUSY_USER})
    wallets = len(config.currency_table().codes)
    print(
        f"\nthe busy user's record: kept {rows_read(kept['Plan'])} rows read, "
        f"{kept['Execution Time']:.3f} ms; counted {rows_read(counted['Plan'])} rows read, "
        f"{counted['Execution Time']:.3f} ms"
    )
    # the user, their wallets (index and heap) and a record each: a handful of
    # rows however many deals, against every one of them
    assert rows_read(kept["Plan"]) <= 1 + 4 * wallets
    assert rows_read(counted["Plan"]) > 1_000


# "My deals" as anyone would first write it: one scan of everything the user
# was ever a party to, sorted.
MY_DEALS_PLAIN = text("""
SELECT id FROM escrows
WHERE (buyer_id = :user_id OR seller_id = :user_id) AND status = ANY(:statuses)
      AND id < :before_id
ORDER BY id DESC LIMIT :limit
""")


@pytest.mark.parametrize("before", ["first page", "sample deal"])
@pytest.mark.parametrize("user_id", [BUSY_USER, 12, 19_999])
async def test_my_deals_page_is_the_plain_query_page(data_set: DataSet, user_id: int, before: str):
    statuses = [status.value for status in FINAL_DEAL_STATUSES] + ["funded", "disputed"]
    params = {
        "user_id": user_id,
        "telegram_id": 0,
        "username": None,
        "invited": False,
        "statuses": statuses,
        "buyer_statuses": statuses,
        "seller_statuses": statuses,
        "awaiting_me": False,
        "before_id": FIRST_PAGE if before == "first page" else data_set.sample.deal_id,
        "limit": PAGE_SIZE,
    }
    async with data_set.engine.connect() as conn:
        page = (await conn.execute(MY_DEALS_PAGE, params)).scalars().all()
        plain = (await conn.execute(MY_DEALS_PLAIN, params)).scalars().all()
    assert page == plain
    assert page


async def test_data_set_is_realistic(data_set: DataSet, config: Config):
    async with data_set.engine.connect() as conn:
        counts = (
            await conn.execute(
                text("""
SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM wallets) AS wallets,
       (SELECT count(*) FROM escrows) AS deals, (SELECT count(*) FROM invitations) AS invitations,
       (SELECT count(*) FROM withdrawals) AS withdrawals,
       (SELECT count(*) FROM deal_events) AS deal_events,
       (SELECT count(*) FROM notifications) AS notifications
""")
            )
        ).one()
        by_status = dict(
            (await conn.execute(text("SELECT status, count(*) FROM escrows GROUP BY 1"))).all()
        )
        busiest = (
            await conn.execute(
                text("""
SELECT party, count(*) FROM (SELECT buyer_id FROM escrows UNION ALL SELECT seller_id FROM escrows)
AS parties(party) WHERE party IS NOT NULL GROUP BY party ORDER BY 2 DESC LIMIT 6
""")
            )
        ).all()
    print(f"\nloaded in {data_set.load_seconds:.2f} s: {counts._asdict()}")
    print(f"deals by status: {by_status}")
    print(f"busiest parties: {busiest}; sample: {data_set.sample}")
    assert counts.users == USERS and counts.deals == DEALS
    assert counts.wallets == USERS * len(config.currency_table().codes)
    assert by_status["released"] > DEALS // 2
    assert all(by_status[status] > 0 for status in ("pending", "accepted", "funded", "disputed"))
    assert {party for party, _ in busiest[:5]} == {1, 2, 3, 4, 5}
    assert busiest[5][1] < busiest[4][1] // 10  # a few heavy users, then everyone else
