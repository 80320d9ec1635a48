"""Filters shared by several routers. All async: aiogram runs sync filters in a
thread, which costs tens of microseconds on every update they see."""

from __future__ import annotations

from aiogram.filters import Filter
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
