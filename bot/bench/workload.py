"""Simulated users, the mix of what they do, and the arrival processes.

Two kinds of people:

- navigators press around the main menu: menu, wallet and help (read-only
  presses served from the snapshot), "My deals" list pages and older pages,
  and deal cards of their own deals;
- traders come in pairs and run whole deals: the buyer types /new and goes
  through the wizard (role and currency buttons, counterparty, amount and
  description messages), creates the deal; the seller accepts, the buyer
  funds, the seller marks it delivered, the buyer asks to release (a
  confirmation card) and confirms. Then the next deal. Between steps either
  of them looks around: their wallet, the current deal's card, the menu
  (reads by users whose own and counterparties' writes change what they read).

Every update comes from a button the user can see or a message they type,
through the Telegram double, into the real Dispatcher.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiogram.types import CallbackQuery, Message, MessageEntity, Update

from bot.bench.harness import Harness
from bot.bench.rows import first_name, telegram_id, username
from bot.services.money import Currency, format_minor_units
from bot.services.rules import Action
from bot.sim.chats import ChatMessage
from bot.sim.content import Button
from bot.sim.users import ButtonNotFound, SimulatedUser
from bot.telegram.handlers import wizard_screens
from bot.telegram.keyboards import ACTION_LABELS, DealCard, DealList, Nav

# Traders open deal after deal, faster than [escrow] deals_per_hour lets a
# person: the pace is still counted (its statement runs), never reached.
TRADERS_PACE = {"deals_per_hour": 100_000, "strangers_per_day": 100_000}

_now = time.perf_counter_ns
LIST_KINDS = ("active", "action", "finished")
CREATE_TEXT = wizard_screens.CREATE
FUND_PREFIX = ACTION_LABELS[Action.FUND].split("{", 1)[0]
DEAL_CARD_PREFIX = DealCard.__prefix__ + ":"


@dataclass(frozen=True)
class Mix:
    """Shares of arrivals: trader steps, then navigator presses by kind."""

    trader: float = 0.30
    trader_look: float = 0.25  # of the traders' turns, a look around instead of a step
    read: float = 0.50
    card: float = 0.10
    list: float = 0.10


class BenchUser(SimulatedUser):
    """A simulated user whose updates go through the harness (timed, counted)."""

    def __init__(self, harness: Harness, index: int, number: int, codes: Sequence[str] = ()):
        super().__init__(
            harness.telegram,
            harness.bot,
            harness.dispatcher,
            user_id=telegram_id(number),
            first_name=first_name(number),
            username=username(number),
            started=True,
        )
        self.harness = harness
        self.index = index  # position in the run's user list (the trace refers to it)
        self.number = number
        self.codes = list(codes)
        self.busy = False
        self.nav_id = 0  # the message the navigator presses around on
        self.screen = "menu"
        self._route = "start"
        self._sched = 0

    async def feed(self, update: Update, **kwargs: object):  # type: ignore[override]
        return await self.harness.feed(self.index, self.id, update, self._route, self._sched)

    async def act(self, route: str, sched: int, action: Callable[[], Awaitable[object]]) -> None:
        self._route, self._sched, self.busy = route, sched, True
        try:
            await action()
        finally:
            self.busy = False

    def callback(self, data: str, message: Message) -> Update:
        """The update of pressing a button with `data` on `message`."""
        query = CallbackQuery(
            id=self.telegram.open_callback_query(self.id),
            from_user=self.user,
            chat_instance=str(self.id * 7_919 % 2**63),
            message=message,
            data=data,
        ).as_(self.bot)
        return Update(update_id=self.telegram.next_update_id(), callback_query=query).as_(self.bot)

    def message(self, text: str) -> Update:
        """The update of typing `text` (a leading /command gets its entity)."""
        entities = None
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            entities = [MessageEntity(type="bot_command", offset=0, length=len(command))]
        return self._message_update(text, entities=entities)

    async def press_data(self, route: str, sched: int, data: str) -> None:
        shown = self.chat.messages.get(self.nav_id) or self.last
        await self.act(route, sched, lambda: self.feed(self.callback(data, shown.message)))

    async def welcome(self) -> None:
        """/start: registers nothing (preloaded), shows the menu to navigate on."""
        await self.act("start", 0, lambda: self.send("/start"))
        self.nav_id, self.screen = self.last.message_id, "menu"

    # -- a navigator's presses -------------------------------------------------------

    async def navigate(self, kind: str, sched: int, rng: random.Random) -> None:
        if kind == "card" and self.codes:
            choices = [code for code in self.codes if self.screen != f"card:{code}"]
            code = rng.choice(choices)
            self.screen = f"card:{code}"
            return await self.press_data("card", sched, DealCard(code=code).pack())
        if kind in ("list", "card"):
            older = self._older() if self.screen.startswith("list:") else None
            if older is not None and rng.random() < 0.3:
                self.screen = f"older:{older.callback_data}"
                return await self.press_data("older", sched, older.callback_data or "")
            current = self.screen.partition(":")[2]
            list_kind = rng.choice([k for k in LIST_KINDS if k != current])
            self.screen = f"list:{list_kind}"
            return await self.press_data("list", sched, DealList(kind=list_kind).pack())
        to = rng.choice(("wallet", "help")) if self.screen == "menu" else "menu"
        self.screen = to
        return await self.press_data(to, sched, Nav(to=to).pack())

    # -- a trader's look around between steps -------------------------------------------

    async def look(self, sched: int, rng: random.Random) -> None:
        """The wallet or the current deal's card from the menu, else back to the menu."""
        if self.screen != "menu":
            self.screen = "menu"
            return await self.press_data("menu", sched, Nav(to="menu").pack())
        code = self._current_deal()
        if code is not None and rng.random() < 0.5:
            self.screen = f"card:{code}"
            return await self.press_data("card", sched, DealCard(code=code).pack())
        self.screen = "wallet"
        return await self.press_data("wallet", sched, Nav(to="wallet").pack())

    def _current_deal(self) -> str | None:
        """The code of the newest deal card in the chat (its refresh button)."""
        for message in reversed(self.chat.messages.values()):
            if message.message_id == self.nav_id:
                continue
            for row in message.keyboard:
                for button in row:
                    data = button.callback_data or ""
                    if data.startswith(DEAL_CARD_PREFIX):
                        return DealCard.unpack(data).code
        return None

    def _older(self) -> Button | None:
        shown = self.chat.messages.get(self.nav_id)
        if shown is None:
            return None
        try:
            return shown.find_button("Older »")
        except LookupError:
            return None


class Pair:
    """A buyer and a seller running deal after deal."""

    def __init__(
        self,
        buyer: BenchUser,
        seller: BenchUser,
        money: Currency,
        stagger: int = 0,
        look: float = 0.0,
    ) -> None:
        """:param stagger: the first this many turns the buyer only looks around
        (menu, wallet, help), so that pairs are not all at the same step.
        :param look: the share of turns in which one of them looks around
        (`BenchUser.look`) instead of taking the next step."""
        self.buyer, self.seller = buyer, seller
        self.look = look
        self.stagger = stagger
        self.step = 0
        self.deals = 0
        self.resets = 0
        amount = min(max(money.min_amount * 10, money.min_amount), money.max_amount)
        self.amount_text = format_minor_units(amount, money.decimals).replace(",", "")
        self.currency = money.code

    @property
    def busy(self) -> bool:
        return self.buyer.busy or self.seller.busy

    def _steps(self) -> tuple:
        b, s = self.buyer, self.seller
        return (
            (b, "new", "send", "/new"),
            (b, "role", "press", wizard_screens.BUYING),
            (b, "counterparty", "send", str(s.id)),
            (b, "currency", "press", self.currency),
            (b, "amount", "send", self.amount_text),
            (b, "description", "send", f"Benchmark deal {self.deals + 1}: 3 widgets"),
            (b, "create", "press", CREATE_TEXT),
            (s, "accept", "press", ACTION_LABELS[Action.ACCEPT]),
            (b, "fund", "prefix", FUND_PREFIX),
            (s, "deliver", "press", ACTION_LABELS[Action.DELIVER]),
            (b, "confirm", "press", ACTION_LABELS[Action.RELEASE]),
            (b, "release", "press", "✅ Yes, release the payment"),
        )

    async def advance(self, sched: int, rng: random.Random) -> None:
        if self.stagger:
            self.stagger -= 1
            return await self.buyer.navigate("read", sched, rng)
        if self.look and rng.random() < self.look:
            return await rng.choice((self.buyer, self.seller)).look(sched, rng)
        steps = self._steps()
        user, route, how, what = steps[self.step]
        try:
            if how == "send":
                action = lambda: user.send(what)  # noqa: E731
            else:
                message, button = _find(user, what, prefix=how == "prefix")
                update = user.callback(button.callback_data or "", message.message)
                action = lambda: user.feed(update)  # noqa: E731
        except ButtonNotFound:
            # Something went wrong earlier (an error, a refusal): start again.
            self.resets += 1
            self.step = 0
            user, route, how, what = steps[0]
            action = lambda: user.send(what)  # noqa: E731
        await user.act(route, sched, action)
        self.step = (self.step + 1) % len(steps)
        if self.step == 0:
            self.deals += 1


def _find(user: BenchUser, text: str, *, prefix: bool) -> tuple[ChatMessage, Button]:
    for message in reversed(user.chat.messages.values()):
        for row in message.keyboard:
            for button in row:
                if button.callback_data and (
                    button.text.startswith(text) if prefix else button.text == text
                ):
                    return message, button
    raise ButtonNotFound(text)


def pairs_of(traders: Sequence[BenchUser], money: Currency, look: float = 0.0) -> list[Pair]:
    """Traders two by two, staggered over the steps of a deal."""
    steps = 12
    return [
        Pair(traders[i], traders[i + 1], money, stagger=(i // 2 * 5) % steps, look=look)
        for i in range(0, len(traders) - 1, 2)
    ]
