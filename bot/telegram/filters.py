"""Filters shared by several routers. All async: aiogram runs sync filters in a
thread, which costs tens of microseconds on every update they see."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Filter
from aiogram.filters.callback_data import CallbackQueryFilter
from aiogram.types import CallbackQuery, Message

from bot.services.settings import EscrowSettings


class NotACommand(Filter):
    """A message answering a step (a wizard's, a dispute's reason): anything but
    a command, which goes to its own router instead."""

    async def __call__(self, message: Message) -> bool:
        return message.forward_origin is not None or not (message.text or "").startswith("/")


class ConfiguredAdmin(Filter):
    """The sender is a configured admin: no I/O, so a refused press gets its
    alert in the pre-answer."""

    async def __call__(self, event: Message | CallbackQuery, settings: EscrowSettings) -> bool:
        return event.from_user is not None and event.from_user.id in settings.admins


class PressFor(Filter):
    """A router's gate for presses: only callback data with one of the prefixes
    its handlers take gets in (see `gate_presses`). aiogram tries routers one
    by one, and each visit (its middlewares wrapped, every handler's
    CallbackData parsed) cost ~40 µs: a press for the eleventh router paid
    ~400 µs before its handler ran."""

    def __init__(self, prefixes: frozenset[str], separator: str) -> None:
        self.prefixes = prefixes
        self.separator = separator

    async def __call__(self, query: CallbackQuery) -> bool:
        return (query.data or "").partition(self.separator)[0] in self.prefixes


def gate_presses(router: Router) -> None:
    """Put a `PressFor` gate on `router` when every press handler in it (and
    its sub-routers) takes one CallbackData: the gate admits exactly the
    prefixes they take. A router with any other press handler (a catch-all,
    a filter on raw data) is left ungated."""
    prefixes: set[str] = set()
    separators: set[str] = set()
    for each in router.chain_tail:
        for handler in each.callback_query.handlers:
            taken = [f.callback for f in handler.filters or () if _takes_callback_data(f.callback)]
            if not taken:
                return
            for callback_filter in taken:
                prefixes.add(callback_filter.callback_data.__prefix__)
                separators.add(callback_filter.callback_data.__separator__)
    if len(separators) <= 1:  # none: no press handler, no press gets in
        router.callback_query.filter(
            PressFor(frozenset(prefixes), separators.pop() if separators else ":")
        )


def _takes_callback_data(callback: object) -> bool:
    return isinstance(callback, CallbackQueryFilter)
