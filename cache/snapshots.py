"""What handlers know about a user: a frozen snapshot of the user, wallets and record.

An L2 entry is one Redis string:

    b"<generation>:<version>:<schema>:" + msgpack(UserSnapshot)

`version` is `users.version` (bumped in the transaction of every change to the
snapshot), `schema` is SCHEMA_VERSION of the code that wrote it, 0 for a
tombstone (no payload: "version N exists, load it"). The header is ASCII so the
set-if-newer Lua script can compare it without decoding msgpack, and a reader
checks the schema before it decodes the payload: an entry written by older or
newer code is a miss, never a misread.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

# Bump whenever UserSnapshot, WalletSnapshot or ReputationSnapshot change shape
# or meaning. 2: the user's record (ReputationSnapshot) added; 3: the chosen locale.
SCHEMA_VERSION = 3
TOMBSTONE_SCHEMA = 0

_HEADER = re.compile(rb"(\d+):(\d+):(\d+):")


class WalletSnapshot(msgspec.Struct, frozen=True, array_like=True, gc=False):
    currency: str
    available: int  # minor units
    held: int  # minor units, locked in deals or withdrawals


class ReputationSnapshot(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A user's record: the counters of `reputations`, summed over currencies
    (volume per currency), and when they joined. Small ints are one byte of
    msgpack: a newcomer's record is 12 bytes, a trader's in three currencies
    about 60."""

    since: int = 0  # users.created_at, Unix seconds
    deals: int = 0  # completed deals, as either party
    ratings: int = 0  # ratings received
    stars: int = 0  # their stars, summed
    disputes_opened: int = 0
    disputes_lost: int = 0  # settlements that went against them
    volumes: tuple[tuple[str, int], ...] = ()  # (currency, minor units released), none zero

    @property
    def average(self) -> float | None:
        """Stars per rating, None before the first one."""
        return self.stars / self.ratings if self.ratings else None

    def volume(self, currency: str) -> int:
        for code, volume in self.volumes:
            if code == currency:
                return volume
        return 0


class UserSnapshot(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A user as of `version`; satisfies the services' `Actor` (id, telegram_id)."""

    id: int
    telegram_id: int
    username: str | None
    first_name: str
    last_name: str | None
    language_code: str | None
    status: str
    is_admin: bool
    version: int
    wallets: tuple[WalletSnapshot, ...] = ()
    reputation: ReputationSnapshot = ReputationSnapshot()
    # The language chosen in the menu; None: Telegram's language_code decides.
    locale: str | None = None

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    def wallet(self, currency: str) -> WalletSnapshot | None:
        for wallet in self.wallets:
            if wallet.currency == currency:
                return wallet
        return None

    def available(self, currency: str) -> int:
        """What the user can spend in `currency` (0 without a wallet in it)."""
        wallet = self.wallet(currency)
        return wallet.available if wallet is not None else 0


def snapshot_from_rows(rows: Sequence[Any]) -> UserSnapshot | None:
    """Build a snapshot from `db.sql.users.SNAPSHOT_BY_TELEGRAM_ID` (one row per wallet,
    with the reputation counters in its currency, or one row with NULL wallet
    columns); None for an unknown user."""
    if not rows:
        return None
    wallets = [row for row in rows if row.currency is not None]
    return snapshot_of(rows[0], wallets, reputation_of(rows[0], wallets))


def reputation_of(user: Any, rows: Iterable[Any]) -> ReputationSnapshot:
    """The record from a user's `created_at` and their rows of the snapshot
    statement (the counters NULL in a currency with no record yet)."""
    rows = [row for row in rows if row.deals is not None]
    return ReputationSnapshot(
        since=int(user.created_at.timestamp()),
        deals=sum(row.deals for row in rows),
        ratings=sum(row.ratings for row in rows),
        stars=sum(row.stars for row in rows),
        disputes_opened=sum(row.disputes_opened for row in rows),
        disputes_lost=sum(row.disputes_lost for row in rows),
        volumes=tuple((row.currency, row.volume) for row in rows if row.volume),
    )


def snapshot_of(
    user: Any, wallets: Iterable[Any], reputation: ReputationSnapshot | None = None
) -> UserSnapshot:
    """A snapshot from anything with the user's columns and wallets with
    currency, available and held (rows or ORM objects), wallets in the given
    order; without `reputation`, a record with no deals yet."""
    return UserSnapshot(
        id=user.id,
        telegram_id=user.telegram_id,
        username=user.username,
        first_name=user.first_name,
        last_name=user.last_name,
        language_code=user.language_code,
        status=user.status,
        is_admin=user.is_admin,
        version=user.version,
        wallets=tuple(WalletSnapshot(w.currency, w.available, w.held) for w in wallets),
        reputation=reputation or ReputationSnapshot(since=int(user.created_at.timestamp())),
        locale=user.locale,
    )


class EntryHeader(msgspec.Struct, frozen=True):
    generation: int
    version: int
    schema: int
    payload_offset: int


def parse_header(raw: bytes) -> EntryHeader | None:
    match = _HEADER.match(raw)
    if match is None:
        return None
    return EntryHeader(int(match[1]), int(match[2]), int(match[3]), match.end())


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(UserSnapshot)


class SnapshotCodec:
    """Encodes snapshot payloads and decodes entries of its own schema only.

    The module-level CODEC is the one the code uses; tests build others to
    play an older or newer release.
    """

    __slots__ = ("_decode", "_encode", "schema")

    def __init__(
        self,
        schema: int = SCHEMA_VERSION,
        encoder: msgspec.msgpack.Encoder = _ENCODER,
        decoder: msgspec.msgpack.Decoder[Any] = _DECODER,
    ) -> None:
        if schema <= TOMBSTONE_SCHEMA:
            raise ValueError("schema versions start at 1 (0 marks a tombstone)")
        self.schema = schema
        self._encode = encoder.encode
        self._decode = decoder.decode

    def encode(self, snapshot: UserSnapshot) -> bytes:
        return self._encode(snapshot)

    def decode(self, raw: bytes, header: EntryHeader) -> UserSnapshot | None:
        """The snapshot of an entry, or None if it is a tombstone, another
        schema, or undecodable (all three are misses)."""
        if header.schema != self.schema:
            return None
        try:
            snapshot: UserSnapshot = self._decode(memoryview(raw)[header.payload_offset :])
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        return snapshot


CODEC = SnapshotCodec()
