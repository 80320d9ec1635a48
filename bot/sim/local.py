"""Local mode: the whole bot with no token and no network.

The same app (cache, database, handlers) talks to the Telegram double
(`bot.sim`); simulated people walk through complete deals while the
conversation is printed, then a latency summary per kind of update.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.runtime.app import App
from bot.sim import BotRequest, FakeTelegram, SimulatedUser, UpdateResult

Print = Callable[[str], object]
# Fixed ids, so a second run meets the same people (and their wallets) again.
ALICE, BOB, CAROL = 7_000_000_001, 7_000_000_002, 7_000_000_003
TEXT_WIDTH = 72


def _compact(text: str) -> str:
    line = " ⏎ ".join(part for part in text.splitlines() if part.strip())
    return line if len(line) <= TEXT_WIDTH else line[: TEXT_WIDTH - 1] + "…"


@dataclass
class Timings:
    """Milliseconds per kind of update, and time to answer a press."""

    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, kind: str, started_ns: int, result: UpdateResult) -> None:
        self.samples[kind].append((time.perf_counter_ns() - started_ns) / 1e6)
        for request in result.requests:
            if request.method == "answerCallbackQuery":
                self.samples["press answered"].append((request.at_ns - started_ns) / 1e6)
                break

    def summary(self) -> list[str]:
        lines = [f"{'update':<16}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}"]
        for kind, values in sorted(self.samples.items()):
            ordered = sorted(values)
            p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
            lines.append(
                f"{kind:<16}{len(values):>5}{statistics.median(ordered):>10.2f}"
                f"{p95:>10.2f}{ordered[-1]:>10.2f}"
            )
        return lines


class Person:
    """A simulated user whose every action is printed and timed."""

    def __init__(self, user: SimulatedUser, out: Print, timings: Timings) -> None:
        self.user = user
        self.out = out
        self.timings = timings
        self.name = user.user.first_name

    async def send(self, text: str) -> UpdateResult:
        self.out(f"{self.name} ▸ {text}")
        kind = text.split()[0] if text.startswith("/") else "text"
        started = time.perf_counter_ns()
        result = await self.user.send(text)
        self.timings.add(kind, started, result)
        return result

    async def press(self, text: str) -> UpdateResult:
        self.out(f"{self.name} ▸ [{text}]")
        started = time.perf_counter_ns()
        result = await self.user.press(text)
        self.timings.add("button", started, result)
        return result


class LocalMode:
    def __init__(self, app: App, telegram: FakeTelegram, admin_id: int, out: Print) -> None:
        self.app = app
        self.telegram = telegram
        self.out = out
        self.timings = Timings()
        self.names: dict[int, str] = {}
        self.admin_id = admin_id
        self.currency = (
            "USDT" if "USDT" in app.config.currencies else next(iter(app.config.currencies))
        )

    def person(self, user_id: int, first_name: str, username: str | None) -> Person:
        user = SimulatedUser(
            self.telegram,
            self.app.bot,
            self.app.dispatcher,
            user_id=user_id,
            first_name=first_name,
            username=username,
        )
        # Message ids go on from the last run's: the demo deposit is
        # idempotent per message, and a rerun must not replay the old ids.
        user.chat.last_message_id = max(user.chat.last_message_id, time.time_ns() // 1000)
        self.names[user_id] = first_name
        return Person(user, self.out, self.timings)

    def _show(self, request: BotRequest) -> None:
        if request.error is not None:
            return
        chat = request.params.get("chat_id")
        name = self.names.get(chat) if isinstance(chat, int) else None
        if request.message is not None and name is not None:
            verb = "✎" if request.method.startswith("edit") else "←"
            buttons = request.message.buttons
            shown = f"   {verb} {name}: {_compact(request.message.text)}"
            if buttons:
                shown += "  [" + " | ".join(buttons) + "]"
            self.out(shown)
        elif request.method == "answerCallbackQuery" and request.params.get("text"):
            self.out(f"   ⓘ {request.params['text']}")

    def amount(self, major: str) -> str:
        money = self.app.services.ctx.currencies[self.currency]
        return money.format(money.parse(major))

    async def new_deal(self, buyer: Person, counterparty: str | None, major: str) -> None:
        await buyer.send("/new")
        await buyer.press("I'm buying")
        if counterparty is None:
            await buyer.press("🔗 Invite by link")
        else:
            await buyer.send(counterparty)
        await buyer.press(self.currency)
        await buyer.send(major)
        await buyer.send("Road bike, 56 cm frame")
        await buyer.press("✅ Create deal")

    async def delivered(self, buyer: Person, seller: Person, major: str) -> None:
        """A deal `buyer` opens with @local_bob (`seller`), accepted, funded and delivered."""
        await self.new_deal(buyer, "@local_bob", major)
        await seller.press("✅ Accept")
        await buyer.press(f"💰 Fund {self.amount(major)}")
        await seller.press("📦 Mark as delivered")

    async def run(self) -> Timings:
        listener = self.telegram.add_listener(self._show)
        try:
            await self._script()
        finally:
            self.telegram.remove_listener(listener)
        return self.timings

    async def _script(self) -> None:
        alice = self.person(ALICE, "Alice", "local_alice")
        bob = self.person(BOB, "Bob", "local_bob")
        carol = self.person(CAROL, "Carol", None)
        admin = self.person(self.admin_id, "Ada", "local_admin")
        for person in (alice, bob, carol, admin):
            await person.send("/start")
        self.out("")
        self.out("— Alice tops up her wallet (the demo provider credits at once)")
        await alice.send("/wallet")
        await alice.press("➕ Deposit")
        await alice.press(self.currency)
        await alice.send("1000")

        self.out("")
        self.out("— Deal 1: Alice buys from @local_bob")
        await self.delivered(alice, bob, "400")
        await alice.press("✅ Release payment")
        await alice.press("✅ Yes, release the payment")
        self.out("— They rate each other")
        await alice.press("5⭐")
        await alice.press("✍️ Add a short review")
        await alice.send("Fast shipping, exactly as described")
        await bob.press("4⭐")

        self.out("")
        self.out("— Deal 2: Alice invites Carol (no username) by link")
        await self.new_deal(alice, None, "100")
        link = next(m.text for m in reversed(alice.user.messages) if "?start=" in m.text)
        payload = link.split("?start=")[1].split()[0]
        await carol.send(f"/start {payload}")
        await carol.press("✅ Accept the deal")
        await alice.press(f"💰 Fund {self.amount('100')}")
        await carol.press("📦 Mark as delivered")
        await alice.press("✅ Release payment")
        await alice.press("✅ Yes, release the payment")

        self.out("")
        self.out("— Deal 3: Alice disputes with a photo; the admin splits it, 30 to Bob")
        await self.delivered(alice, bob, "50")
        await alice.press("⚠️ Open a dispute")
        await alice.send("Half of the parts are missing")
        await alice.press("📎 Add evidence")
        await alice.user.send_photo("What arrived: the frame, no wheels")
        await alice.press("✅ Done")
        await admin.press("✂️ Split")
        await admin.send("30")
        await admin.press("✅ Yes, split it")

        self.out("")
        self.out("— Deal 4: Bob delivers and nobody releases: the release clock does")
        await self.delivered(alice, bob, "20")
        after = self.app.config.escrow.auto_release_after_hours * 3600
        await asyncio.sleep(after + 0.5)
        self.out(f"   … {after:g} s later (local mode's release clock)")
        released = await self.app.services.deals.release_due()  # the jobs loop's step
        await self.app.outbox.send(released.notices, *released.value)

        self.out("")
        for person in (alice, bob, carol):
            await person.send("/wallet")
