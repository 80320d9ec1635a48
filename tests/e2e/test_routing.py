"""A press goes only to the feature routers that take its callback data
(bot/telegram/routing.py): aiogram would try every router before it, parsing
the press once per handler on the way."""

from __future__ import annotations

import pytest
from aiogram import Router
from aiogram.filters.callback_data import CallbackData, CallbackQueryFilter

from bot.runtime.app import App
from bot.telegram import keyboards
from bot.telegram.handlers import build_router
from bot.telegram.handlers.evidence import EvidenceForm
from bot.telegram.handlers.wizard_screens import NewDeal
from bot.telegram.keyboards import Nav
from bot.telegram.routing import may_take_message, press_prefixes


def names(routers: tuple[Router, ...]) -> list[str]:
    return [router.name for router in routers]


def test_every_button_has_its_routers_and_the_catch_all_comes_last_for_each():
    features = build_router()
    buttons = {c.__prefix__ for c in _every_callback_data(CallbackData)}
    assert {c.__prefix__ for c in vars(keyboards).values() if _is_callback_data(c)} <= buttons
    assert len(buttons) > 15
    assert buttons <= set(features.by_prefix), buttons - set(features.by_prefix)
    order = names(tuple(features.sub_routers))
    for prefix, routers in features.by_prefix.items():
        # in the routers' own order, the stale-button catch-all last
        assert names(routers) == sorted(names(routers), key=order.index), prefix
        assert names(routers)[-1] == "fallback", prefix
    assert names(features.any_press) == ["fallback"]  # an unknown prefix: the catch-all
    assert names(features.by_prefix["dc"]) == ["deals", "fallback"]
    assert names(features.by_prefix["nav"])[:2] == ["start", "language"]


def test_a_router_that_may_take_any_press_is_always_tried():
    catch_all = Router(name="any")
    catch_all.callback_query.register(_handler)
    assert press_prefixes(catch_all) is None
    narrow = Router(name="narrow")
    narrow.callback_query.register(_handler, Nav.filter())
    assert press_prefixes(narrow) == {"nav"}
    narrow.callback_query.outer_middleware(_middleware)  # runs for every press it sees
    assert press_prefixes(narrow) is None


async def _handler(*args: object) -> None:
    return None


async def _middleware(handler, event, data):  # type: ignore[no-untyped-def]
    return await handler(event, data)


def _every_callback_data(base: type[CallbackData]) -> list[type[CallbackData]]:
    found = []
    for sub in base.__subclasses__():
        if sub.__module__.startswith("bot."):
            found.append(sub)
        found.extend(_every_callback_data(sub))
    return found


def _is_callback_data(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, CallbackData) and value is not CallbackData


async def test_a_wallet_press_is_parsed_only_by_routers_that_take_it(
    app: App, people, monkeypatch: pytest.MonkeyPatch
):
    alice = people("Alice", "alice_routes")
    await alice.start()
    parsed: list[str] = []
    original = CallbackQueryFilter.__call__

    async def counting(self: CallbackQueryFilter, query, *args, **kwargs):  # type: ignore[no-untyped-def]
        parsed.append(self.callback_data.__prefix__)
        return await original(self, query, *args, **kwargs)

    monkeypatch.setattr(CallbackQueryFilter, "__call__", counting)
    await alice.press("👛 Wallet")
    assert "Your wallet" in alice.last.text
    # only routers with a Nav ("nav") handler were tried: none of the deals', the
    # deal actions', the wizard steps' or the dispute evidence's handlers
    taking_nav = set().union(
        *(press_prefixes(router) or () for router in build_router().by_prefix["nav"])
    )
    assert "nav" in parsed
    assert set(parsed) <= taking_nav, set(parsed) - taking_nav
    assert not set(parsed) & {"dc", "dl", "da", "wc", "wr", "wi", "wt", "ea"}


async def test_typed_messages_go_to_the_routers_whose_filters_could_take_them():
    features = build_router()

    async def takers(slash: bool, plain: bool, state: str | None) -> list[str]:
        kind = (slash, plain, state)
        return [r.name for r in features.sub_routers if await may_take_message(r, kind)]

    amount = NewDeal.amount.state
    # a wizard step's answer: its step's router, and the catch-all
    assert await takers(False, True, amount) == ["wizard_steps", "fallback"]
    # plain text with no form open: only "I didn't understand"
    assert await takers(False, True, None) == ["fallback"]
    # a command, in a form or not: the routers with commands (not the form steps)
    commands = await takers(True, False, amount)
    assert {"start", "wizard", "wallet", "deals", "fallback"} <= set(commands)
    assert "wizard_steps" not in commands and "evidence" not in commands
    # /cancel while sending dispute evidence: the evidence router's own /cancel first
    assert (await takers(True, False, EvidenceForm.collect.state))[0] == "evidence"


async def test_a_wizard_step_is_tried_only_by_its_router(app: App, people):
    alice, _bob = people("Alice", "alice_steps"), people("Bob", "bob_steps")
    await _bob.start()
    await alice.start()
    await alice.send("/new")
    await alice.press("I'm buying")
    await alice.send("@bob_steps")
    await alice.press("USDT")
    tried: list[str] = []
    features = app.dispatcher.sub_routers[0]
    for router in features.sub_routers:
        original = router.propagate_event

        async def visit(*args, _original=original, _name=router.name, **kwargs):  # type: ignore[no-untyped-def]
            tried.append(_name)
            return await _original(*args, **kwargs)

        router.propagate_event = visit  # type: ignore[method-assign]
    await alice.send("100")
    assert tried == ["wizard_steps"]
    assert "100.00 USDT" in alice.last.text or "describe" in alice.last.text.lower()
