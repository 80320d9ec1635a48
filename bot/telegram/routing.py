"""Where a press goes: straight to the feature routers that can take it.

aiogram tries a parent's routers one by one, and every visit costs (its
middlewares wrapped, its filters run, every handler's CallbackData parsed):
~40 µs each, so a press for the eleventh router paid ~400 µs of CPU before
its handler ran, more than the handler itself. A press's callback data starts
with its CallbackData prefix, and each router's press handlers say which
prefixes they take; `Features` sends a press only to the routers that take
its prefix, and to those that take any press, in the routers' own order. Any
other update goes through every router, as aiogram does.
"""

from __future__ import annotations

from typing import Any

from aiogram import Router
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.filters.callback_data import CallbackQueryFilter
from aiogram.types import TelegramObject

SEPARATOR = ":"  # CallbackData's, which every button here keeps


def press_prefixes(router: Router) -> frozenset[str] | None:
    """The callback data prefixes `router` (with its sub-routers) takes, or
    None when it may take any press: a handler without a CallbackData filter
    (a catch-all, a filter on raw data), or an outer middleware on presses,
    which runs for every press that reaches the router. (A router's own
    filters only narrow what its handlers take.)"""
    prefixes: set[str] = set()
    for each in router.chain_tail:
        if len(each.callback_query.outer_middleware):
            return None
        for handler in each.callback_query.handlers:
            taken = [f.callback for f in handler.filters or () if _takes_data(f.callback)]
            if not taken:
                return None
            for data_filter in taken:
                if data_filter.callback_data.__separator__ != SEPARATOR:
                    return None
                prefixes.add(data_filter.callback_data.__prefix__)
    return frozenset(prefixes)


def _takes_data(callback: object) -> bool:
    return isinstance(callback, CallbackQueryFilter)


class Features(Router):
    """The parent of the feature routers, sending a press only to those that
    take it (see the module's docstring). It has no handlers, filters or
    middlewares of its own, so skipping a router that cannot take a press is
    all that differs from aiogram's own propagation."""

    def __init__(self, *features: Router) -> None:
        super().__init__(name="escrow")
        self.include_routers(*features)
        takes = [(router, press_prefixes(router)) for router in features]
        every = {prefix for _, prefixes in takes for prefix in prefixes or ()}
        self.any_press = tuple(router for router, prefixes in takes if prefixes is None)
        self.by_prefix: dict[str, tuple[Router, ...]] = {
            prefix: tuple(r for r, p in takes if p is None or prefix in p) for prefix in every
        }

    async def propagate_event(self, update_type: str, event: TelegramObject, **kwargs: Any) -> Any:
        if update_type != "callback_query":
            return await super().propagate_event(update_type, event, **kwargs)
        kwargs.update(event_router=self)
        prefix = (getattr(event, "data", None) or "").partition(SEPARATOR)[0]
        for router in self.by_prefix.get(prefix, self.any_press):
            response = await router.propagate_event(update_type, event, **kwargs)
            if response is not UNHANDLED:
                return response
        return UNHANDLED
