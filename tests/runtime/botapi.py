"""A Bot API test server and whole `python -m bot run` replicas in webhook mode
pointed at it: what tests/runtime/test_two_processes.py and tests/chaos use.

The server records every call, keeps each chat's messages as Telegram shows
them (text and keyboard, edited and deleted in place), refuses a second answer
to one callback query as Telegram does, and can answer a seeded fraction of
calls with 429 (retry_after) or 500."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bot.runtime.webhook import webhook_secret
from tests.conftest import ADMIN_TELEGRAM_ID
from tests.runtime.test_webhook import free_port

TOKEN = "424242:TEST-two-processes"
ROOT = Path(__file__).resolve().parents[2]
_update_ids = itertools.count(int(time.time() * 1000) % 10**9)

QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
# Calls a seeded fault never refuses: the replica's start-up and webhook checks.
NEVER_FAILED = frozenset({"getMe", "setWebhook", "deleteWebhook", "getWebhookInfo"})


@dataclass
class Shown:
    """One bot message in a chat as it stands now."""

    message_id: int
    text: str
    markup: dict[str, Any] | None
    version: int  # the chat's version when it was last sent or edited

    def buttons(self) -> list[dict[str, Any]]:
        rows = (self.markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]

    def labels(self) -> list[str]:
        return [button["text"] for button in self.buttons()]


@dataclass
class Chat:
    """A private chat: the bot's messages, and every text it sent or edited in."""

    messages: dict[int, Shown] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    # every screen shown, as it was then (a second edit may replace it at once)
    history: list[Shown] = field(default_factory=list)
    version: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def touch(self) -> int:
        self.version += 1
        self.changed.set()
        self.changed = asyncio.Event()
        return self.version


@dataclass
class Faults:
    """A seeded share of Bot API calls refused with 429 or 500."""

    rng: random.Random
    rate_429: float = 0.0
    rate_500: float = 0.0
    retry_after: int = 1
    refused: dict[int, int] = field(default_factory=lambda: {429: 0, 500: 0})

    def draw(self, method: str) -> int | None:
        if method in NEVER_FAILED or not (self.rate_429 or self.rate_500):
            return None
        roll = self.rng.random()
        if roll < self.rate_429:
            return 429
        if roll < self.rate_429 + self.rate_500:
            return 500
        return None


class BotApiServer:
    """Just enough of the Bot API: every call is recorded; the webhook is kept
    as Telegram keeps it; chats keep the bot's messages; sendMessage can be
    slowed down or refused with a 429 once; `faults` refuses a share of calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.throttle_next = 0
        self.send_delay = 0.0
        # sendMessage to this chat does not answer until `unhang` is set
        self.hang_chat: int | None = None
        self.unhang = asyncio.Event()
        self.message_ids = itertools.count(1)
        self.webhook: dict[str, Any] = {}  # what setWebhook set, as getWebhookInfo tells
        self.chats: dict[int, Chat] = {}
        self.answered: dict[str, int] = {}  # callback query id -> answers accepted
        self.refused_answers: list[str] = []  # query ids answered again
        self.faults: Faults | None = None

    def methods(self, name: str) -> list[dict[str, Any]]:
        return [params for method, params in self.calls if method == name]

    def chat(self, chat_id: int) -> Chat:
        chat = self.chats.get(chat_id)
        if chat is None:
            chat = self.chats[chat_id] = Chat()
        return chat

    @staticmethod
    def _markup(params: dict[str, Any]) -> dict[str, Any] | None:
        raw = params.get("reply_markup")
        return json.loads(raw) if raw else None

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = dict(await request.post())
        self.calls.append((method, params))
        if method == "sendMessage" and self.throttle_next:
            self.throttle_next -= 1
            return self._refuse(429, f"Too Many Requests: retry after {1}", retry_after=1)
        if self.faults is not None:
            status = self.faults.draw(method)
            if status is not None:
                self.faults.refused[status] += 1
                if status == 429:
                    seconds = self.faults.retry_after
                    return self._refuse(
                        429, f"Too Many Requests: retry after {seconds}", retry_after=seconds
                    )
                return self._refuse(500, "Internal Server Error")
        result: Any = True
        if method == "setWebhook":
            self.webhook = {"url": params["url"], "has_custom_certificate": False}
            self.webhook["allowed_updates"] = json.loads(params.get("allowed_updates", "[]"))
            # as Telegram reports it: the connections asked for, or its default 40
            self.webhook["max_connections"] = int(params.get("max_connections", 40))
        elif method == "deleteWebhook":
            self.webhook = {}
        elif method == "getWebhookInfo":
            result = {"url": "", "has_custom_certificate": False, **self.webhook}
            result["pending_update_count"] = 0
        elif method == "getMe":
            result = {"id": 424242, "is_bot": True, "first_name": "Test", "username": "t_bot"}
        elif method == "sendMessage":
            await asyncio.sleep(self.send_delay)
            chat_id = int(params["chat_id"])
            if chat_id == self.hang_chat:
                await self.unhang.wait()
            text = params.get("text", "")
            message_id = next(self.message_ids)
            chat = self.chat(chat_id)
            chat.texts.append(text)
            chat.messages[message_id] = Shown(message_id, text, self._markup(params), 0)
            chat.messages[message_id].version = chat.touch()
            chat.history.append(dataclasses.replace(chat.messages[message_id]))
            result = self._message(chat_id, message_id, text)
        elif method in ("editMessageText", "editMessageReplyMarkup"):
            chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
            chat = self.chat(chat_id)
            shown = chat.messages.get(message_id)
            text = params.get("text")
            if shown is not None:
                if shown.text == (text or shown.text) and shown.markup == self._markup(params):
                    return self._refuse(
                        400,
                        "Bad Request: message is not modified: specified new message content"
                        " and reply markup are exactly the same as a current content and"
                        " reply markup of the message",
                    )
                shown.text = text if text is not None else shown.text
                shown.markup = self._markup(params)
                shown.version = chat.touch()
                chat.history.append(dataclasses.replace(shown))
            if text is not None:
                chat.texts.append(text)
                chat.touch()
            result = self._message(chat_id, message_id, text or (shown.text if shown else ""))
        elif method in ("deleteMessage", "deleteMessages"):
            chat = self.chat(int(params["chat_id"]))
            ids = json.loads(params["message_ids"]) if "message_ids" in params else []
            if "message_id" in params:
                ids.append(int(params["message_id"]))
            for message_id in ids:
                chat.messages.pop(int(message_id), None)
            chat.touch()
        elif method == "answerCallbackQuery":
            query_id = params["callback_query_id"]
            if query_id in self.answered:
                self.refused_answers.append(query_id)
                return self._refuse(400, QUERY_TOO_OLD)
            self.answered[query_id] = 1
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _message(chat_id: int, message_id: int, text: str) -> dict[str, Any]:
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "text": text,
        }

    @staticmethod
    def _refuse(status: int, description: str, retry_after: int | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=status)


@asynccontextmanager
async def serving(server: BotApiServer) -> AsyncIterator[int]:
    """`server` on a free local port (yielded) until the block ends."""
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


class Process:
    def __init__(
        self, process: asyncio.subprocess.Process, port: int, side_port: int, log: Path
    ) -> None:
        self.process, self.port, self.side_port, self.log = process, port, side_port, log

    async def post(
        self, http: aiohttp.ClientSession, update: dict[str, Any], within: float | None = None
    ) -> int:
        headers = {"X-Telegram-Bot-Api-Secret-Token": webhook_secret(TOKEN, "")}
        url = f"http://127.0.0.1:{self.port}/tg"
        limit = aiohttp.ClientTimeout(total=within)
        async with http.post(url, json=update, headers=headers, timeout=limit) as response:
            return response.status


def replica_env(replica_config, api_port: int, port: int, side_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "ESCROW__TELEGRAM__TOKEN": TOKEN,
        "ESCROW__TELEGRAM__API_BASE": f"http://127.0.0.1:{api_port}",
        "ESCROW__TELEGRAM__MODE": "webhook",
        "ESCROW__TELEGRAM__WEBHOOK_HOST": "127.0.0.1",
        "ESCROW__TELEGRAM__WEBHOOK_PORT": str(port),
        "ESCROW__TELEGRAM__WEBHOOK_PATH": "/tg",
        "ESCROW__TELEGRAM__WEBHOOK_URL": "https://bot.example.test/tg",
        "ESCROW__DATABASE__URL": replica_config.database.url,
        "ESCROW__DATABASE__READ_URL": replica_config.database.read_url,
        "ESCROW__REDIS__URL": replica_config.redis.url,
        "ESCROW__REDIS__CLUSTER": str(replica_config.redis.cluster).lower(),
        "ESCROW__CACHE__KEY_PREFIX": replica_config.cache.key_prefix,
        "ESCROW__OBSERVABILITY__HTTP_HOST": "127.0.0.1",
        "ESCROW__OBSERVABILITY__HTTP_PORT": str(side_port),
        "ESCROW__ESCROW__ADMINS": f"[{ADMIN_TELEGRAM_ID}]",
    }


async def start(
    replica_config,
    api_port: int,
    log: Path,
    *,
    ports: tuple[int, int] | None = None,
    append: bool = False,
    **settings: str,
) -> Process:
    """A replica in webhook mode, ready (/healthz 200). `ports` (webhook, side
    server) to start one again where it was; `append` keeps its log."""
    port, side_port = ports or (free_port(), free_port())
    env = replica_env(replica_config, api_port, port, side_port)
    env.update({f"ESCROW__{key.upper()}": value for key, value in settings.items()})
    with log.open("ab" if append else "wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=ROOT, env=env, stdout=sink, stderr=sink
        )
    running = Process(process, port, side_port, log)
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            if process.returncode is not None:
                break
            try:
                # /healthz is on the internal side server, not the public webhook port
                async with http.get(f"http://127.0.0.1:{side_port}/healthz") as response:
                    if response.status == 200:
                        return running
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    process.kill()
    raise AssertionError(f"replica did not become ready:\n{output(log)}")


def output(*logs: Path) -> str:
    return "".join(log.read_text() for log in logs)


def message(user_id: int, text: str, first_name: str = "Alice", **who: str) -> dict[str, Any]:
    """A text message from the user (`who`: username)."""
    user = {"id": user_id, "is_bot": False, "first_name": first_name, **who}
    update: dict[str, Any] = {
        "update_id": next(_update_ids),
        "message": {
            "message_id": next(_update_ids),
            "date": int(time.time()),
            "chat": {"id": user_id, "type": "private", "first_name": first_name},
            "from": user,
            "text": text,
        },
    }
    if text.startswith("/"):
        length = len(text.split()[0])
        update["message"]["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
    return update


def press(
    user_id: int, data: str, message_id: int, text: str = "the deal card", **who: str
) -> dict[str, Any]:
    """A button press on the bot's message `message_id` (showing `text`) in the
    user's chat (`who`: first_name, username)."""
    user = {"id": user_id, "is_bot": False, "first_name": "Alice", **who}
    return {
        "update_id": next(_update_ids),
        "callback_query": {
            "id": str(next(_update_ids)),
            "from": user,
            "chat_instance": str(user_id),
            "data": data,
            "message": {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": user_id, "type": "private", "first_name": user["first_name"]},
                "from": {"id": 424242, "is_bot": True, "first_name": "Test"},
                "text": text,
            },
        },
    }


async def stop(process: Process) -> int:
    if process.process.returncode is None:
        process.process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.process.wait(), 30)


async def until(condition: Callable[[], object], seconds: float, step: float = 0.05) -> bool:
    """Wait until `condition()` is true; False if it is not within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(step)
    return bool(condition())
