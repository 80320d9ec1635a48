"""What one update costs, counted as it happens: the record an update is fed
with (a context variable, so tasks it starts count too), and the hooks that
fill it.

- SQL statements and commits: SQLAlchemy's `before_cursor_execute` and
  `commit` events on the engines under test;
- Redis: every request redis-py's asyncio connections send (a pipeline is
  one round trip), the commands in it, the bytes sent, and the bytes read
  back (counted where hiredis, the project's parser, reads the socket).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from redis.asyncio import connection as redis_connection
from redis.asyncio.connection import AbstractConnection
from sqlalchemy import event
from sqlalchemy.engine import Engine


class Rec:
    __slots__ = (
        "answer",
        "commits",
        "error",
        "fallback",
        "first_io",
        "redis",
        "redis_commands",
        "redis_in",
        "redis_out",
        "sql",
        "telegram_wait",
        "waits",
    )

    def __init__(self) -> None:
        self.answer = self.first_io = 0
        self.sql = self.redis = self.commits = 0
        self.redis_commands = self.redis_out = self.redis_in = 0
        self.telegram_wait = 0  # ns the update waited on Bot API round trips
        self.waits: list[tuple[int, int]] = []  # each awaited round trip: (sent, answered)
        self.error = False
        self.fallback = False  # its snapshot came from Postgres because Redis failed


CURRENT: ContextVar[Rec | None] = ContextVar("bench_update", default=None)
now = time.perf_counter_ns


def _io() -> Rec | None:
    rec = CURRENT.get()
    if rec is not None and not rec.first_io:
        rec.first_io = now()
    return rec


def _size(command: Any) -> int:
    if isinstance(command, bytes | bytearray | memoryview | str):
        return len(command)
    return sum(len(chunk) for chunk in command)


def install_redis_counter() -> None:
    """Count every request redis-py's asyncio connections send, its commands
    and bytes, and the bytes read back (once per process)."""
    if getattr(AbstractConnection.send_packed_command, "_bench", False):
        return
    send = AbstractConnection.send_packed_command
    pack = AbstractConnection.pack_command

    async def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
        rec = _io()
        if rec is not None:
            rec.redis += 1
            rec.redis_out += _size(command)
        return await send(self, command, check_health)

    def pack_command(self: Any, *args: Any) -> Any:
        # every command is packed once, alone or for a pipeline
        rec = CURRENT.get()
        if rec is not None:
            rec.redis_commands += 1
        return pack(self, *args)

    send_packed_command._bench = True  # type: ignore[attr-defined]
    AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]
    AbstractConnection.pack_command = pack_command  # type: ignore[method-assign]
    _count_reads(getattr(redis_connection, "DefaultParser", None))


def _count_reads(parser: Any) -> None:
    """hiredis's asyncio parser reads the socket in one place; the others
    leave the bytes read uncounted (0)."""
    if parser is None or parser.__name__ != "_AsyncHiredisParser":
        return
    from redis._parsers.socket import SERVER_CLOSED_CONNECTION_ERROR
    from redis.exceptions import ConnectionError as RedisConnectionError

    async def read_from_socket(self: Any) -> bool:
        # redis-py's own body, with the bytes counted
        buffer = await self._stream.read(self._read_size)
        if not buffer or not isinstance(buffer, bytes):
            raise RedisConnectionError(SERVER_CLOSED_CONNECTION_ERROR) from None
        rec = CURRENT.get()
        if rec is not None:
            rec.redis_in += len(buffer)
        self._reader.feed(buffer)
        return True

    parser.read_from_socket = read_from_socket


def _before_cursor_execute(*args: Any) -> None:
    rec = _io()
    if rec is not None:
        rec.sql += 1


def _commit(*args: Any) -> None:
    rec = CURRENT.get()
    if rec is not None:
        rec.commits += 1


def count_sql(engine: Engine) -> Callable[[], None]:
    """Attribute `engine`'s statements and commits to the update in flight; the undo."""
    event.listen(engine, "before_cursor_execute", _before_cursor_execute)
    event.listen(engine, "commit", _commit)

    def remove() -> None:
        event.remove(engine, "before_cursor_execute", _before_cursor_execute)
        event.remove(engine, "commit", _commit)

    return remove
