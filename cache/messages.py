"""What travels on the invalidation channel: one msgpack tuple per commit of
the tagged `db.events` structs, plus the cache's own reset message."""

from __future__ import annotations

import msgspec

from db.events import DealChanged, UserChanged


class CacheReset(msgspec.Struct, frozen=True, tag="reset", array_like=True):
    """Every entry of slot group `group` (cache/keys.py) older than
    `generation` is void; drop all of L1."""

    generation: int
    group: int


Message = UserChanged | DealChanged | CacheReset
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(tuple[Message, ...])


def encode_messages(messages: tuple[Message, ...]) -> bytes:
    return _ENCODER.encode(messages)


def decode_messages(data: bytes) -> tuple[Message, ...]:
    """Raises msgspec.DecodeError / ValidationError for what it cannot read."""
    return _DECODER.decode(data)
