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
from bot.telegram.keyboards import Nav
from bot.telegram.routing import press_prefixes


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
