"""The Telegram double: an in-process Bot API (`FakeTelegram`) and simulated users who
drive the real Dispatcher through it, for tests, the benchmark and local mode."""

from bot.sim.chats import CallbackAnswer, ChatMessage
from bot.sim.content import Button
from bot.sim.methods import answered_methods
from bot.sim.telegram import BotRequest, FakeTelegram
from bot.sim.users import ButtonNotFound, SimulatedUser, UpdateResult

__all__ = [
    "BotRequest",
    "Button",
    "ButtonNotFound",
    "CallbackAnswer",
    "ChatMessage",
    "FakeTelegram",
    "SimulatedUser",
    "UpdateResult",
    "answered_methods",
]
