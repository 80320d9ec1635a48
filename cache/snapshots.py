"""What handlers know about the caller: a frozen snapshot of the user and wallets.

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

# Bump whenever UserSnapshot or WalletSnapshot change shape or meaning.
SCHEMA_VERSION = 2  # 2: the chosen locale
TOMBSTONE_SCHEMA = 0

_HEADER = re.compile(rb"(\d+):(\d+):(\d+):")


class WalletSnapshot(msgspec.Struct, frozen=True, array_like=True, gc=False):
    currency: str
    available: int  # minor units
    held: int  # minor units, locked in deals or withdrawals


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
    or one row with NULL wallet columns); None for an unknown user."""
    if not rows:
        return None
    return snapshot_of(rows[0], [row for row in rows if row.currency is not None])


def snapshot_of(user: Any, wallets: Iterable[Any]) -> UserSnapshot:
    """A snapshot from anything with the user's columns and wallets with
    currency, available and held (rows or ORM objects), wallets in the given order."""
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
