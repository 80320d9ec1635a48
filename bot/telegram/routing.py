"""Where a press goes: straight to the feature routers that can take it.

aiogram tries a parent's routers one by one, and every visit costs (its
middlewares wrapped, its filters run, every handler's CallbackData parsed):
~40 µs each, so a press for the eleventh router paid ~400 µs of CPU before
its handler ran, more than the handler itself. A press's callback data starts
with its CallbackData prefix, and each router's press handlers say which
prefixes they take; `Features` sends a press only to the routers that take
its prefix, and to those that take any press, in the routers' own order.

A typed message is routed by what its handlers' filters say: a command
handler takes only text starting with "/", a form step only its form's state
and no command. From the message's first character, whether it counts as a
command (`NotACommand`) and the sender's state (read before routing), each
router's handlers tell whether any could take it; the routers that could are
found once per such kind of message and remembered. Any other update goes
through every router, as aiogram does.
"""

from __future__ import annotations

from typing import Any

from aiogram import Router
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackQueryFilter
from aiogram.types import Message, TelegramObject

from bot.telegram.filters import NotACommand

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

        self.by_message: dict[MessageKind, tuple[Router, ...]] = {}

    async def propagate_event(self, update_type: str, event: TelegramObject, **kwargs: Any) -> Any:
        if update_type == "callback_query":
            prefix = (getattr(event, "data", None) or "").partition(SEPARATOR)[0]
            routers = self.by_prefix.get(prefix, self.any_press)
        elif update_type == "message" and isinstance(event, Message) and "raw_state" in kwargs:
            kind = message_kind(event, kwargs["raw_state"])
            routers = self.by_message.get(kind) or await self._routes_for(kind)
        else:
            return await super().propagate_event(update_type, event, **kwargs)
        kwargs.update(event_router=self)
        for router in routers:
            response = await router.propagate_event(update_type, event, **kwargs)
            if response is not UNHANDLED:
                return response
        return UNHANDLED

    async def _routes_for(self, kind: MessageKind) -> tuple[Router, ...]:
        routers = tuple([r for r in self.sub_routers if await may_take_message(r, kind)])
        self.by_message[kind] = routers
        return routers


# (text or caption starts with "/", NotACommand would pass, the sender's state)
MessageKind = tuple[bool, bool, str | None]


def message_kind(message: Message, raw_state: str | None) -> MessageKind:
    slash = (message.text or message.caption or "").startswith("/")
    plain = message.forward_origin is not None or not (message.text or "").startswith("/")
    return slash, plain, raw_state


async def may_take_message(router: Router, kind: MessageKind) -> bool:
    """Whether any message handler of `router` (or its sub-routers) could take
    a message of this kind: its filters that depend only on the kind are
    asked (state, command, NotACommand); any other filter is taken to pass."""
    slash, plain, raw_state = kind
    for each in router.chain_tail:
        if len(each.message.outer_middleware):
            return True
        for handler in each.message.handlers:
            if await _may_pass(handler.filters or (), slash, plain, raw_state):
                return True
    return False


async def _may_pass(filters: Any, slash: bool, plain: bool, raw_state: str | None) -> bool:
    for each in filters:
        check = each.callback
        if isinstance(check, StateFilter):
            if not await check(None, raw_state=raw_state):  # type: ignore[arg-type]
                return False
        elif isinstance(check, Command):
            if check.prefix == "/" and not slash:  # (another prefix: can't tell, passes)
                return False
        elif isinstance(check, NotACommand) and not plain:
            return False
    return True
