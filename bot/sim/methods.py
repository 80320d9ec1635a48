"""The Bot API methods the Telegram double answers (a `BotRequest` each), each a
function of the double, the bot and the request; `FakeTelegram.make_request`
looks them up here and a method not registered raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiogram.methods import TelegramMethod
from aiogram.types import Message, User

from bot.sim.chats import CallbackAnswer, ChatMessage
from bot.sim.content import Refused, keyboard_of, render_text

if TYPE_CHECKING:
    from aiogram import Bot

    from bot.sim.telegram import FakeTelegram


@dataclass(slots=True, eq=False)
class BotRequest:
    """One Bot API call as the server saw it."""

    method: str
    params: dict[str, Any]
    """The call's fields that were set, with bot defaults (parse_mode, ...) resolved."""
    at_ns: int
    """time.perf_counter_ns() when the server handled it, for one ordered timeline."""
    call: TelegramMethod[Any] = field(repr=False)
    result: Any = field(default=None, repr=False)
    error: Exception | None = None
    message: ChatMessage | None = field(default=None, repr=False)
    """The chat message this call created or changed, as it stands afterwards."""
    sent_ns: int = 0
    """time.perf_counter_ns() when the request reached the double (left the bot's
    process), before its round trip."""
    waited_ns: int = 0
    """How long the double made the caller wait for it (the simulated round trip)."""


Handler = Callable[["FakeTelegram", "Bot", BotRequest], Any]

_HANDLERS: dict[str, Handler] = {}


def answers(*methods: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for method in methods:
            _HANDLERS[method] = handler
        return handler

    return register


def handler_for(method: str) -> Handler | None:
    return _HANDLERS.get(method)


def answered_methods() -> frozenset[str]:
    """Bot API methods the double answers; every other method raises."""
    return frozenset(_HANDLERS)


@answers("getMe")
def _get_me(telegram: FakeTelegram, bot: Bot, request: BotRequest) -> User:
    return User(
        id=bot.id,
        is_bot=True,
        first_name=telegram.bot_name,
        username=telegram.bot_username,
        can_join_groups=True,
        can_read_all_group_messages=False,
        supports_inline_queries=False,
        can_connect_to_business=False,
        has_main_web_app=False,
    )


@answers("sendMessage")
def _send_message(telegram: FakeTelegram, bot: Bot, request: BotRequest) -> Message:
    params = request.params
    chat = telegram.chat_of(request)
    request.message = chat.post(
        telegram.bot_user(bot),
        telegram.now(),
        params["text"],
        params.get("parse_mode"),
        params.get("reply_markup"),
    )
    return request.message.message.as_(bot)


@answers("sendPhoto", "sendDocument")
def _send_file(telegram: FakeTelegram, bot: Bot, request: BotRequest) -> Message:
    """A file Telegram holds, sent again by its file id (`bot.sim.files`)."""
    params = request.params
    kind = "photo" if request.method == "sendPhoto" else "document"
    chat = telegram.chat_of(request)
    stored = telegram.files.resend(kind, params[kind])
    request.message = chat.post_media(
        telegram.bot_user(bot),
        telegram.now(),
        stored,
        params.get("caption"),
        params.get("parse_mode"),
        params.get("reply_markup"),
    )
    return request.message.message.as_(bot)


@answers("editMessageText", "editMessageReplyMarkup")
def _edit_message(telegram: FakeTelegram, bot: Bot, request: BotRequest) -> Message | bool:
    params = request.params
    text = params["text"] if request.method == "editMessageText" else None
    parse_mode, markup = params.get("parse_mode"), params.get("reply_markup")
    if "inline_message_id" in params:
        # Inline-mode messages are not kept: check what Telegram checks, answer True.
        keyboard_of(markup)
        if text is not None:
            render_text(text, parse_mode)
        return True
    chat = telegram.chat_of(request)
    request.message = chat.edit(params["message_id"], telegram.now(), text, parse_mode, markup)
    return request.message.message.as_(bot)


@answers("answerCallbackQuery")
def _answer_callback_query(telegram: FakeTelegram, bot: Bot, request: BotRequest) -> bool:
    params = request.params
    query_id = params["callback_query_id"]
    # Telegram takes one answer per query: a second one is refused like an old one
    user_id = telegram.close_callback_query(query_id)
    if user_id is None:
        raise Refused("query is too old and response timeout expired or query ID is invalid")
    answer = CallbackAnswer(
        query_id, params.get("text"), bool(params.get("show_alert")), params.get("url")
    )
    telegram.chats[user_id].answers.append(answer)
    return True


@answers("deleteMessage", "deleteMessages")
def _delete_messages(telegram: FakeTelegram, bot: Bot, request: BotRequest) -> bool:
    params = request.params
    telegram.chat_of(request).delete(params.get("message_ids") or [params["message_id"]])
    return True


@answers("sendChatAction")
def _send_chat_action(telegram: FakeTelegram, bot: Bot, request: BotRequest) -> bool:
    telegram.chat_of(request).check_writable()
    return True


@answers(
    "setMyCommands",
    "deleteMyCommands",
    "getMyCommands",
    "setChatMenuButton",
    "getChatMenuButton",
    "setWebhook",
    "deleteWebhook",
    "getWebhookInfo",
    "setMyName",
    "setMyDescription",
    "setMyShortDescription",
)
def _bot_settings(telegram: FakeTelegram, bot: Bot, request: BotRequest) -> Any:
    return telegram.settings.answer(request.method, request.params)
