"""The benchmark's generated rows: users, their wallets and a million deals.

Deterministic (no randomness), so two loads of one size are the same data set.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

TELEGRAM_BASE = 6_000_000_000
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_CODE_SPACE = len(CODE_ALPHABET) ** 8
DEAL_SPACING = timedelta(seconds=20)  # 1M deals span about 230 days
OPEN_SHARE = 100  # the newest 1 deal in 100 is still open or in escrow
OPEN_CYCLE = ("pending", "pending", "accepted", "accepted", "funded", "funded", "delivered")
OPEN_CYCLE += ("disputed",)


def telegram_id(user: int) -> int:
    return TELEGRAM_BASE + user


def username(user: int) -> str:
    return f"bench_{user}"


def first_name(user: int) -> str:
    return f"Bench {user}"


def deal_code(deal: int) -> str:
    """8 characters of the deal-code alphabet, distinct for every deal number."""
    n = deal * 1_000_003 % _CODE_SPACE  # 1_000_003 is prime to 31**8: a bijection
    chars = []
    for _ in range(8):
        n, digit = divmod(n, 31)
        chars.append(CODE_ALPHABET[digit])
    return "".join(chars)


# -- generating rows ---------------------------------------------------------------


def user_rows(users: int, now: datetime) -> Iterator[tuple]:
    for i in range(1, users + 1):
        at = now - timedelta(minutes=users - i)
        yield (
            i,
            telegram_id(i),
            username(i),
            first_name(i),
            None,
            "en",
            "active",
            False,
            1,
            at,
            at,
        )


def wallet_rows(users: int, currencies: Sequence[str]) -> Iterator[tuple]:
    wallet_id = 0
    for i in range(1, users + 1):
        for code in currencies:
            wallet_id += 1
            # plenty to fund any number of deals in the benchmark
            yield (wallet_id, i, code, 10**15 + i, 0)


def deal_rows(users: int, deals: int, currencies: Sequence[str], now: datetime) -> Iterator[tuple]:
    """Deals numbered by age (the newest has the highest id). A few busy users
    take part in many deals; the newest 1% are open or in escrow; older ones
    are mostly released, some refunded, cancelled, declined or expired."""
    n_currencies = len(currencies)
    first_open = deals - deals // OPEN_SHARE
    start = now - DEAL_SPACING * deals
    hour, half_hour, deadline = timedelta(hours=1), timedelta(minutes=30), timedelta(hours=72)
    for j in range(1, deals + 1):
        # one deal in 40 has one of five busy buyers
        buyer = 1 + j % min(users, 5) if j % 40 == 0 else 1 + j * 7919 % users
        seller = 1 + (buyer + j * 104729 % (users - 1)) % users  # never the buyer
        if j > first_open:
            status = OPEN_CYCLE[j % len(OPEN_CYCLE)]
        else:
            bucket = j % 100
            status = (
                "released"
                if bucket < 80
                else "refunded"
                if bucket < 85
                else "cancelled"
                if bucket < 92
                else "declined"
                if bucket < 96
                else "expired"
            )
        amount = 100 + j * 2654435761 % 1_000_000
        created = start + DEAL_SPACING * j
        final = status in ("released", "refunded", "cancelled", "declined", "expired")
        funded = status in ("funded", "delivered", "disputed", "released", "refunded")
        updated = created if status == "pending" else min(now, created + hour)
        yield (
            j,
            deal_code(j),
            buyer if j % 2 == 0 else seller,
            buyer,
            seller,
            amount,
            amount * 150 // 10_000,
            150,
            currencies[j % n_currencies],
            f"Deal {j}",
            status,
            "delivered" if status == "disputed" else "funded" if status == "refunded" else None,
            created,
            updated,
            created + half_hour if funded else None,
            created + deadline,
            updated if final else None,
            1,
        )


USER_COLUMNS = [
    "id",
    "telegram_id",
    "username",
    "first_name",
    "last_name",
    "language_code",
    "status",
    "is_admin",
    "version",
    "created_at",
    "updated_at",
]
WALLET_COLUMNS = ["id", "user_id", "currency", "available", "held"]
DEAL_COLUMNS = [
    "id",
    "code",
    "creator_id",
    "buyer_id",
    "seller_id",
    "amount",
    "fee",
    "fee_bps",
    "currency",
    "description",
    "status",
    "status_before_dispute",
    "created_at",
    "updated_at",
    "funded_at",
    "deadline_at",
    "closed_at",
    "version",
]
