"""What a bounded randomized run is made of: Telegram delivering updates to two
replicas as it does (a POST without a 2xx answer in time is posted again
later, with the same update_id, to either replica), people pressing the
buttons the bot really showed them, and faults on a seeded schedule."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bot.telegram import texts
from bot.telegram.handlers import wizard_screens
from bot.telegram.handlers.fallback import NOT_UNDERSTOOD
from tests.cache.redis_server import OwnRedis
from tests.runtime.botapi import BotApiServer, Process, Shown, message, press, start

STEP_SECONDS = 15.0  # how long a person waits for the screen an update should bring
# What the bot says while Redis fails (bot/telegram/fsm.py): nothing was done, send or
# press it again in a moment; a person does, a few times.
ASKED_AGAIN = (texts.MESSAGE_NOT_READ, texts.FORM_UNAVAILABLE)
AGAIN_ATTEMPTS = 12
# What a form whose state Redis lost (restarted empty, flushed) answers.
FORM_GONE = (NOT_UNDERSTOOD, wizard_screens.EXPIRED, "That form has expired", "Start again")


class Stuck(Exception):
    """A person did not see what their update should have shown."""

    def __init__(self, message: str, form_gone: bool = False) -> None:
        super().__init__(message)
        self.form_gone = form_gone


class AskedAgain(Exception):
    """The bot asked to send or press it again in a moment (Redis failing)."""


@dataclass
class Delivery:
    update_id: int
    kind: str  # "message" or "press"
    chat: int
    text: str
    statuses: list[str] = field(default_factory=list)  # one per POST: "200", "503", "timeout"...
    first_at: float = 0.0  # monotonic time of the first POST and of the last answer
    last_at: float = 0.0


class Replicas:
    """Two replicas, SIGKILLed and started again where they were."""

    def __init__(self, config: Any, api_port: int, logs: Path, settings: dict[str, str]) -> None:
        self.config, self.api_port, self.logs, self.settings = config, api_port, logs, settings
        self.running: list[Process] = []
        self.down: set[int] = set()
        self.kills = 0

    async def start(self) -> None:
        self.running = list(
            await asyncio.gather(
                *(
                    start(
                        self.config, self.api_port, self.logs / f"replica{i}.log", **self.settings
                    )
                    for i in range(2)
                )
            )
        )

    def up(self) -> list[int]:
        return [i for i in range(len(self.running)) if i not in self.down]

    async def sigkill_and_restart(self, index: int, pause: float) -> None:
        process = self.running[index]
        self.down.add(index)
        process.process.send_signal(signal.SIGKILL)
        await process.process.wait()
        self.kills += 1
        await asyncio.sleep(pause)
        self.running[index] = await start(
            self.config,
            self.api_port,
            process.log,
            ports=(process.port, process.side_port),
            append=True,
            **self.settings,
        )
        self.down.discard(index)


class Telegram:
    """Delivers updates as Telegram's webhook does, and lets people wait for
    what the bot shows them."""

    def __init__(
        self,
        server: BotApiServer,
        replicas: Replicas,
        http: aiohttp.ClientSession,
        rng: random.Random,
        *,
        short_post_rate: float,
    ) -> None:
        self.server, self.replicas, self.http, self.rng = server, replicas, http, rng
        self.short_post_rate = short_post_rate
        self.deliveries: dict[int, Delivery] = {}

    async def deliver(self, update: dict[str, Any], replica: int | None = None) -> None:
        """POST until a replica answers 2xx. Some first POSTs give up early (a
        timeout Telegram sees while the replica still works): posted again."""
        if "message" in update:
            kind, body = "message", update["message"]
            chat, text = body["chat"]["id"], body["text"]
        else:
            kind, body = "press", update["callback_query"]
            chat, text = body["from"]["id"], body["data"]
        delivery = self.deliveries[update["update_id"]] = Delivery(
            update["update_id"], kind, chat, text, first_at=time.monotonic()
        )
        deadline = time.monotonic() + 90
        first = True
        while time.monotonic() < deadline:
            if replica is not None:
                target = replica
            else:
                up = self.replicas.up() or [0, 1]
                target = self.rng.choice(up)
            within = 30.0
            if first and replica is None and self.rng.random() < self.short_post_rate:
                within = self.rng.uniform(0.01, 0.3)
            first = False
            try:
                status = await self.replicas.running[target].post(self.http, update, within)
                delivery.statuses.append(f"{target}:{status}")
                if 200 <= status < 300:
                    return
            except TimeoutError:
                delivery.statuses.append(f"{target}:timeout")
            except aiohttp.ClientError as exc:
                delivery.statuses.append(f"{target}:{type(exc).__name__}")
            finally:
                delivery.last_at = time.monotonic()
            await asyncio.sleep(self.rng.uniform(0.1, 0.6))
        raise Stuck(f"update {update['update_id']} never accepted: {delivery.statuses}")


@dataclass
class Person:
    telegram: Telegram
    user_id: int
    first_name: str
    username: str

    @property
    def chat(self):
        return self.telegram.server.chat(self.user_id)

    def who(self) -> dict[str, str]:
        return {"first_name": self.first_name, "username": self.username}

    async def send(
        self,
        text: str,
        expect: Callable[[Shown], bool],
        replica: int | None = None,
    ) -> Shown:
        # The screen may come from an earlier attempt (an update the bot asked
        # to send again, then handled when Telegram posted it again): a person
        # sees it as well, so every attempt looks from before the first.
        since = self.chat.version
        for attempt in range(AGAIN_ATTEMPTS):
            attempt_since = self.chat.version
            update = message(self.user_id, text, **self.who())
            await self.telegram.deliver(update, replica)
            try:
                what = f"{text!r} (update {update['update_id']})"
                return await self.wait(since, expect, what, attempt_since)
            except AskedAgain:
                await asyncio.sleep(0.5 + attempt * 0.25)
        raise Stuck(f"{self.username}: asked again {AGAIN_ATTEMPTS} times after {text!r}")

    async def press(
        self,
        label: str,
        expect: Callable[[Shown], bool],
        double: bool = False,
        on: Shown | None = None,
    ) -> Shown:
        """Press the newest button whose text starts with `label` (on the message
        `on` was shown in, if given: other messages may offer the same label);
        `double`: the same button twice at once (two updates, as a quick double
        tap sends)."""
        since = self.chat.version  # as for `send`: an earlier attempt's screen counts
        for attempt in range(AGAIN_ATTEMPTS):
            shown, button = self.button(label, on)
            attempt_since = self.chat.version
            data = button["callback_data"]
            updates = [
                press(self.user_id, data, shown.message_id, shown.text, **self.who())
                for _ in range(2 if double else 1)
            ]
            await asyncio.gather(*(self.telegram.deliver(update) for update in updates))
            ids = [u["update_id"] for u in updates]
            try:
                what = f"press {label!r} (updates {ids})"
                return await self.wait(since, expect, what, attempt_since)
            except AskedAgain:
                await asyncio.sleep(0.5 + attempt * 0.25)
        raise Stuck(f"{self.username}: asked again {AGAIN_ATTEMPTS} times after {label!r}")

    def button(self, label: str, on: Shown | None = None) -> tuple[Shown, dict[str, Any]]:
        messages = self.chat.messages.values()
        if on is not None:
            messages = [m for m in messages if m.message_id == on.message_id]
        for shown in sorted(messages, key=lambda m: -m.version):
            for button in shown.buttons():
                if button["text"].startswith(label) and "callback_data" in button:
                    return shown, button
        raise Stuck(f"{self.username} sees no button {label!r}: {self.screens()}")

    async def wait(
        self, since: int, expect: Callable[[Shown], bool], what: str, attempt_since: int = 0
    ) -> Shown:
        """The first screen after `since` that `expect`s; AskedAgain if the bot
        asked to send it again after `attempt_since` (this attempt's start)."""
        deadline = time.monotonic() + STEP_SECONDS
        attempt_since = max(since, attempt_since)
        while True:
            asked_again = form_gone = False
            for shown in reversed(self.chat.history):
                if shown.version <= since:
                    break
                if expect(shown):
                    return shown
                if shown.version > attempt_since:
                    asked_again = asked_again or shown.text.startswith(ASKED_AGAIN)
                form_gone = form_gone or any(part in shown.text for part in FORM_GONE)
            left = deadline - time.monotonic()
            if asked_again and left < STEP_SECONDS - 1:  # a second for the rest to arrive
                raise AskedAgain(what)
            if left <= 0:
                raise Stuck(
                    f"{self.username}: nothing expected after {what}: {self.screens()}", form_gone
                )
            changed = self.chat.changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)

    def screens(self) -> list[str]:
        """What the person saw last: the newest changes to their chat, in order."""
        return [
            f"#{m.message_id} v{m.version} {m.text[:120]!r} {m.labels()}"
            for m in self.chat.history[-8:]
        ]


def has(*parts: str) -> Callable[[Shown], bool]:
    """A screen showing every one of `parts`."""
    return lambda shown: all(part in shown.text for part in parts)


def offers(label: str) -> Callable[[Shown], bool]:
    return lambda shown: any(t.startswith(label) for t in shown.labels())


WALLET_LINE = re.compile(r"USDT</b>: ([\d,.]+) USDT available · ([\d,.]+) USDT held")


def minor(amount: str) -> int:
    return int(Decimal(amount.replace(",", "")) * 100)


def wallet_shown(text: str) -> tuple[int, int]:
    found = WALLET_LINE.search(text)
    if found is None:
        raise AssertionError(f"no USDT line in the wallet screen: {text!r}")
    return minor(found.group(1)), minor(found.group(2))


# -- faults -----------------------------------------------------------------------------


class Faults:
    """The schedule: Redis restarts and FLUSHALLs, pub/sub connections killed,
    the replicas' Postgres connections terminated, a replica SIGKILLed and
    started again; Telegram refusing a share of calls meanwhile."""

    KINDS = ("redis_restart", "flushall", "kill_pubsub", "kill_postgres", "sigkill")

    def __init__(
        self, rng: random.Random, redis: OwnRedis, replicas: Replicas, pg_dsn: dict[str, Any]
    ) -> None:
        self.rng, self.redis, self.replicas, self.pg_dsn = rng, redis, replicas, pg_dsn
        self.done: list[tuple[float, str]] = []
        # (start, end) in monotonic time of each Redis restart or flush: what Redis
        # held (forms, leases, locks) is gone, and it fails meanwhile
        self.redis_trouble: list[tuple[float, float]] = []

    def plan(self, seconds: float, count: int) -> list[tuple[float, str]]:
        """`count` faults in `seconds`, every kind at least once, in a seeded order."""
        kinds = list(self.KINDS) + [self.rng.choice(self.KINDS) for _ in range(count - 5)]
        self.rng.shuffle(kinds)
        times = sorted(self.rng.uniform(2, seconds) for _ in kinds)
        return list(zip(times, kinds, strict=True))

    async def run(self, plan: list[tuple[float, str]]) -> None:
        began = time.monotonic()
        for at, kind in plan:
            await asyncio.sleep(max(0.0, began + at - time.monotonic()))
            await getattr(self, kind)()
            self.done.append((round(time.monotonic() - began, 1), kind))

    async def redis_restart(self) -> None:
        began = time.monotonic()
        await self.redis.stop()
        await asyncio.sleep(self.rng.uniform(0.3, 1.5))
        await self.redis.start()
        self.redis_trouble.append((began, time.monotonic()))

    async def flushall(self) -> None:
        began = time.monotonic()
        client = self.redis.client()
        try:
            await client.flushall()
        finally:
            await client.aclose()
        self.redis_trouble.append((began, time.monotonic()))

    def redis_lost_data(self, since: float) -> bool:
        """Whether Redis was restarted empty or flushed after `since`."""
        return any(end >= since for _, end in self.redis_trouble)

    def redis_impaired(self, start: float, end: float, after: float) -> bool:
        """Whether a Redis restart or flush overlapped [start, end + after]."""
        return any(b <= end + after and e >= start for b, e in self.redis_trouble)

    async def kill_pubsub(self) -> None:
        client = self.redis.client()
        try:
            await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        finally:
            await client.aclose()

    async def kill_postgres(self) -> None:
        conn = await asyncpg.connect(**self.pg_dsn)
        try:
            await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                self.pg_dsn["database"],
            )
        finally:
            await conn.close()

    async def sigkill(self) -> None:
        await self.replicas.sigkill_and_restart(self.rng.randrange(2), self.rng.uniform(0.5, 2.0))


# -- the replicas' logs ------------------------------------------------------------------


# not handled here: done already (dropped), or in hand on the other replica
# (Telegram is asked to post it again)
DROPPED = re.compile(r"update (\d+) (?:already handled; dropped|is in hand elsewhere)")
FAILED = re.compile(r"update (\d+) failed")


def handled_counts(logs: list[Path]) -> tuple[Counter[int], list[str]]:
    """How many times each update was handled to the end, across the replicas'
    JSON logs: its per-update record, less the redeliveries not handled (done
    already, or in hand elsewhere): they have a record too, as an update is
    timed with its duplicate check.
    Also why each update that failed did (its ERROR line)."""
    records: Counter[int] = Counter()
    dropped: Counter[int] = Counter()
    failed: Counter[int] = Counter()
    errors: list[str] = []
    for log in logs:
        for line in log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                errors.append(line) if "Traceback" in line else None
                continue
            text = entry.get("message", "")
            if text == "slow update" and entry.get("update") is not None:
                records[int(entry["update"])] += 1
            elif found := DROPPED.search(text):
                dropped[int(found.group(1))] += 1
            if entry.get("level") == "ERROR" and (found := FAILED.search(text)):
                failed[int(found.group(1))] += 1
                errors.append(f"{log.name}: {text} {entry.get('exception', '')[-600:]}")
    handled: Counter[int] = Counter()
    for update_id in set(records) | set(dropped):
        # a failed handling lets a redelivery try again (and is reported apart)
        handled[update_id] = records[update_id] - dropped[update_id] - failed[update_id]
    return handled, errors


def by_chat(deliveries: dict[int, Delivery]) -> dict[int, list[Delivery]]:
    grouped: dict[int, list[Delivery]] = defaultdict(list)
    for delivery in deliveries.values():
        grouped[delivery.chat].append(delivery)
    return grouped
