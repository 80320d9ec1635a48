"""On the real Bot API client (aiogram's aiohttp session, asyncio's loop and
uvloop, which `run` uses), a press's answer is on the wire before the press's
own work begins, and that work does not wait for Telegram's reply.

A Bot API stand-in on a thread of its own notes when the answer's request
(its body included) arrives; the press's handler blocks the event loop at
once, so only bytes written before it started can arrive meanwhile."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import CallbackQuery, User

from bot.telegram.middlewares import AnswerFirst

BODY = b'{"ok":true,"result":true}'
REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)
ROUND_TRIP = 0.2  # the stand-in replies this long after a request arrived
HANDLER_WORK = 0.1  # the press's own work, blocking the loop


class BotApiStandIn:
    """Keep-alive HTTP on a thread: notes when each request's body arrived."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.arrived: list[float] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self.listener.accept()
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    if not (chunk := conn.recv(65536)):
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(buffer) < length:
                    if not (chunk := conn.recv(65536)):
                        return
                    buffer += chunk
                buffer = buffer[length:]
                self.arrived.append(time.perf_counter())
                time.sleep(ROUND_TRIP)
                conn.sendall(REPLY)


async def press_once(api: BotApiStandIn) -> tuple[float, float]:
    """One press through AnswerFirst: when its handler started, and when the
    press was done."""
    server = TelegramAPIServer.from_base(f"http://127.0.0.1:{api.port}")
    bot = Bot("1:wire", session=AiohttpSession(api=server))
    answer = AnswerFirst()
    user = User(id=1, is_bot=False, first_name="Ed")
    query = CallbackQuery(id="q", from_user=user, chat_instance="c", data="x").as_(bot)
    try:
        await bot.answer_callback_query("warm")  # a keep-alive connection, as in steady use
        api.arrived.clear()
        started: list[float] = []

        async def handler(event: Any, data: dict[str, Any]) -> None:
            started.append(time.perf_counter())
            time.sleep(HANDLER_WORK)  # noqa: ASYNC251 - work that blocks the loop

        await answer(handler, query, {"handler": None, "bot": bot})
        ended = time.perf_counter()
        await asyncio.gather(*answer._sending)
        return started[0], ended
    finally:
        await bot.session.close()


RUNNERS: dict[str, Callable[[Coroutine[Any, Any, Any]], Any]] = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
}


@pytest.mark.parametrize("loop", list(RUNNERS))
def test_the_answer_is_on_the_wire_before_the_handler_starts(loop):
    api = BotApiStandIn()
    started, ended = RUNNERS[loop](press_once(api))
    (arrived,) = api.arrived
    # arrived while the handler blocked the loop: written before it started
    assert arrived < started + HANDLER_WORK / 2, arrived - started
    # and the handler did not wait for the reply (a round trip after arrival)
    assert ended < arrived + ROUND_TRIP
