"""A TCP proxy in front of the real Redis, to take it away and bring it back.

`stop()` closes the listening socket and every proxied connection (Redis
"goes down": connects are refused, open connections see EOF); `start()`
listens again on the same port. `blackhole()` keeps every connection open
but lets nothing through, so clients hit their socket timeouts. `forget()`
is Redis's host coming back from a reboot (or a firewall losing its state):
open connections get no FIN, but the first thing a client sends on one is
answered by a reset; new connections work.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._blackhole = False
        # client side of each open connection, and its upstream writer
        self._pairs: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.StreamWriter]]
        self._pairs = []
        self._forgetting = False

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        self._blackhole = False
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    def blackhole(self) -> None:
        """From now on nothing gets through, either way; connections stay open."""
        self._blackhole = True

    async def forget(self) -> None:
        """Drop every open connection without telling the client (see above)."""
        pairs, self._pairs = self._pairs, []
        self._forgetting = True  # the pipes stop without closing the client's side
        try:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            self._forgetting = False
        for reader, writer, upstream in pairs:
            upstream.close()
            task = asyncio.get_running_loop().create_task(self._reset_on_data(reader, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _reset_on_data(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await reader.read(1)
        sock = writer.get_extra_info("socket")
        # linger 0: closing sends RST, as a host that lost the connection does
        # (unless the client has closed it meanwhile)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        self._writers.discard(writer)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        self._pairs.append((reader, writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if not self._blackhole:
                    sink.write(data)
                    await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not self._forgetting:
                sink.close()
                self._writers.discard(sink)


class ThreadedTcpProxy:
    """A `TcpProxy` served by an event loop on a thread of its own (one for
    every such proxy of the session), so a stall of the test's own loop (a
    garbage collection, a synchronous wait for a standby) does not hold up
    every byte to and from the Redis behind it: the cluster's nodes are
    behind these, and a client's 250 ms timeout is the cluster's, not the
    test loop's. The same interface; `start`, `stop` and `forget` are awaited
    from the caller's loop."""

    _loop: asyncio.AbstractEventLoop | None = None

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._proxy = TcpProxy(upstream_host, upstream_port)

    @classmethod
    def _serving(cls) -> asyncio.AbstractEventLoop:
        if cls._loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="test-proxies", daemon=True).start()
            cls._loop = loop
        return cls._loop

    async def _there(self, work: Coroutine[Any, Any, None]) -> None:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._serving()))

    @property
    def port(self) -> int:
        return self._proxy.port

    @port.setter
    def port(self, value: int) -> None:
        self._proxy.port = value

    @property
    def listening(self) -> bool:
        return self._proxy.listening

    async def start(self) -> None:
        await self._there(self._proxy.start())

    async def stop(self) -> None:
        await self._there(self._proxy.stop())

    async def forget(self) -> None:
        await self._there(self._proxy.forget())

    def blackhole(self) -> None:
        self._proxy.blackhole()  # a flag the pipes read: takes effect on their next read
