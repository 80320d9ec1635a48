"""Presses go only to the routers that take their callback data: aiogram tries
routers one by one, so each router's gate (bot/telegram/filters.py,
`gate_presses`) keeps a press from being parsed by every handler before its own."""

from __future__ import annotations

import pytest
from aiogram.filters.callback_data import CallbackData, CallbackQueryFilter

from bot.runtime.app import App
from bot.telegram import keyboards
from bot.telegram.filters import PressFor
from bot.telegram.handlers import build_router


def gates() -> dict[str, frozenset[str] | None]:
    out: dict[str, frozenset[str] | None] = {}
    for router in build_router().sub_routers:
        found = [
            f.callback
            for f in router.callback_query._handler.filters or ()
            if isinstance(f.callback, PressFor)
        ]
        out[router.name] = found[0].prefixes if found else None
    return out


def test_every_button_reaches_a_router_and_the_catch_all_takes_any():
    by_router = gates()
    assert by_router["fallback"] is None  # the stale-button catch-all sees every press
    admitted = set().union(*(p for p in by_router.values() if p is not None))
    buttons = {c.__prefix__ for c in vars(keyboards).values() if _is_callback_data(c)}
    assert buttons, "no CallbackData found"
    assert buttons <= admitted, buttons - admitted
    # a router's gate admits only what its own handlers take
    assert by_router["deals"] == {"dc", "dl"}
    assert by_router["deal_actions"] == {"da"}


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
    assert "👛" in alice.last.text or "Wallet" in alice.last.text
    # only routers with a Nav ("nav") handler were tried: none of the deals', the
    # deal actions', the wizard steps' or the dispute evidence's handlers
    taking_nav = set().union(*(p for p in gates().values() if p is not None and "nav" in p))
    assert "nav" in parsed
    assert set(parsed) <= taking_nav, set(parsed) - taking_nav
    assert not set(parsed) & {"dc", "dl", "da", "wc", "wr", "wi", "wt", "ea"}
