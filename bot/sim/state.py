"""What the Telegram double keeps: private chats (the bot's messages as the user currently
sees them, the user's own messages, callback answers, the reply keyboard) and the bot's
settings, with the checks Telegram applies before it changes any of them.

Plain data and pure rules; `bot.sim.telegram` turns a `Refused` into aiogram's exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from aiogram.types import (
    BotCommand,
    Chat,
    InlineKeyboardMarkup,
    MenuButtonDefault,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    User,
    WebhookInfo,
)

# Bot API limits the double enforces, so an oversized reply fails in tests, not in production:
# characters once entities are parsed (code points, as telegram-bot-api counts them),
# bytes of the text as sent (before parsing), bytes of a button's callback data.
MAX_TEXT_LENGTH = 4096
MAX_RAW_TEXT_BYTES = 1 << 15
MAX_CALLBACK_DATA_BYTES = 64

# Tags Telegram accepts with parse_mode=HTML (https://core.telegram.org/bots/api#html-style).
HTML_TAGS = frozenset(
    {"a", "b", "blockquote", "code", "del", "em", "i", "ins", "pre", "s", "span", "strike"}
    | {"strong", "tg-emoji", "tg-spoiler", "u"}
)
# Telegram only knows these four named entities; anything else stays literal text.
NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
HTML_TOKEN = re.compile(
    r"<(?P<close>/?)(?P<tag>[a-zA-Z][a-zA-Z0-9-]*)(?:\s[^<>]*)?>"
    r"|<"
    r"|&(?:#(?P<dec>[0-9]+)|#[xX](?P<hex>[0-9a-fA-F]+)|(?P<name>[a-zA-Z]+));"
)


class Refused(Exception):
    """A request Telegram would refuse, with its status and description."""

    def __init__(self, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.description = description
        self.status = status


def html_to_plain(text: str) -> str:
    """Strip tags and unescape entities the way Telegram parses parse_mode=HTML.

    Raises ValueError where Telegram answers "can't parse entities", so an unescaped
    user-supplied "<" in a template fails a test instead of a live chat."""
    if "<" not in text and "&" not in text:
        return text
    parts: list[str] = []
    open_tags: list[str] = []
    position = 0
    for token in HTML_TOKEN.finditer(text):
        parts.append(text[position : token.start()])
        position = token.end()
        tag = token["tag"]
        if tag is not None:
            tag = tag.lower()
            if tag not in HTML_TAGS:
                raise ValueError(f'Unsupported start tag "{tag}" at {_offset(text, token)}')
            if not token["close"]:
                open_tags.append(tag)
            elif not open_tags or open_tags.pop() != tag:
                raise ValueError(f'Unmatched end tag "{tag}" at {_offset(text, token)}')
        elif token[0] == "<":
            raise ValueError(f"Unsupported start tag at {_offset(text, token)}")
        elif token["name"] is not None:
            parts.append(NAMED_ENTITIES.get(token["name"].lower(), token[0]))
        else:  # chr() raises ValueError past U+10FFFF, as Telegram refuses it
            parts.append(chr(int(token["dec"] or token["hex"], 10 if token["dec"] else 16)))
    if open_tags:
        raise ValueError(f'Can\'t find end tag corresponding to start tag "{open_tags[-1]}"')
    parts.append(text[position:])
    return "".join(parts)


def _offset(text: str, token: re.Match[str]) -> str:
    return f"byte offset {len(text[: token.start()].encode())}"


def render_text(text: str, parse_mode: str | None) -> str:
    """The plain text Telegram would show for a message text, or Refused."""
    if len(text.encode()) > MAX_RAW_TEXT_BYTES:
        raise Refused("text is too long")
    try:
        plain = html_to_plain(text) if (parse_mode or "").upper() == "HTML" else text
    except ValueError as exc:
        raise Refused(f"can't parse entities: {exc}") from None
    if not plain.strip():
        raise Refused("message text is empty")
    if len(plain) > MAX_TEXT_LENGTH:
        raise Refused("message is too long")
    return plain


class Button(NamedTuple):
    """One inline button as the user sees it."""

    text: str
    callback_data: str | None = None
    url: str | None = None


Keyboard = tuple[tuple[Button, ...], ...]


def keyboard_of(markup: InlineKeyboardMarkup | None) -> Keyboard:
    """Snapshot an inline keyboard (the builder's buttons are mutable), or Refused."""
    if markup is None:
        return ()
    rows = tuple(
        tuple(Button(b.text, b.callback_data, b.url) for b in row) for row in markup.inline_keyboard
    )
    for row in rows:
        for button in row:
            data = button.callback_data
            if data is not None and len(data.encode()) > MAX_CALLBACK_DATA_BYTES:
                raise Refused("BUTTON_DATA_INVALID")
    return rows


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One bot message as it currently stands. Every edit replaces it with a new snapshot,
    so an old snapshot still shows what a slow client had on screen."""

    message_id: int
    text: str
    """Plain text: tags stripped and entities unescaped (for parse_mode=HTML)."""
    raw_text: str
    """The text exactly as the bot sent it."""
    parse_mode: str | None
    keyboard: Keyboard
    message: Message
    """The aiogram Message Telegram returned for the latest send or edit."""
    edits: int = 0

    @property
    def buttons(self) -> list[str]:
        return [button.text for row in self.keyboard for button in row]

    def find_button(self, text: str | None = None, callback_data: str | None = None) -> Button:
        for row in self.keyboard:
            for button in row:
                if (text is None or button.text == text) and (
                    callback_data is None or button.callback_data == callback_data
                ):
                    return button
        raise LookupError(f"message #{self.message_id} shows no such button")


@dataclass(frozen=True, slots=True)
class CallbackAnswer:
    """An answerCallbackQuery call as the user experienced it (a toast or an alert)."""

    query_id: str
    text: str | None
    show_alert: bool
    url: str | None = None


@dataclass(slots=True, eq=False)
class ChatState:
    """A private chat between the bot and one user (chat.id == user.id)."""

    user: User
    chat: Chat
    started: bool = False
    """Telegram won't let a bot write first; the user's first update starts the chat."""
    blocked: bool = False
    last_message_id: int = 0
    messages: dict[int, ChatMessage] = field(default_factory=dict)
    """The bot's messages by id, in the order they were sent."""
    user_messages: dict[int, Message] = field(default_factory=dict)
    answers: list[CallbackAnswer] = field(default_factory=list)
    reply_keyboard: ReplyKeyboardMarkup | None = None

    @classmethod
    def private(cls, user: User) -> ChatState:
        chat = Chat(
            id=user.id,
            type="private",
            first_name=user.first_name,
            last_name=user.last_name,
            username=user.username,
        )
        return cls(user=user, chat=chat)

    def next_message_id(self) -> int:
        # One counter for both sides, as in a real private chat.
        self.last_message_id += 1
        return self.last_message_id

    def check_writable(self) -> None:
        if self.blocked:
            raise Refused("Forbidden: bot was blocked by the user", status=403)
        if not self.started:
            raise Refused("Forbidden: bot can't initiate conversation with a user", status=403)

    def post(
        self, sender: User, date: datetime, text: str, parse_mode: str | None, reply_markup: Any
    ) -> ChatMessage:
        """sendMessage: store and return the new bot message."""
        self.check_writable()
        plain = render_text(text, parse_mode)
        # Only an inline keyboard belongs to the message; a reply keyboard replaces the
        # keyboard under the input field until the bot removes it.
        markup = reply_markup if isinstance(reply_markup, InlineKeyboardMarkup) else None
        keyboard = keyboard_of(markup)
        if isinstance(reply_markup, ReplyKeyboardMarkup):
            self.reply_keyboard = reply_markup
        elif isinstance(reply_markup, ReplyKeyboardRemove):
            self.reply_keyboard = None
        message = Message(
            message_id=self.next_message_id(),
            date=date,
            chat=self.chat,
            from_user=sender,
            text=plain,  # Telegram answers with the parsed text (entities are not modelled)
            reply_markup=markup,
        )
        stored = ChatMessage(message.message_id, plain, text, parse_mode, keyboard, message)
        self.messages[message.message_id] = stored
        return stored

    def edit(
        self,
        message_id: int,
        date: datetime,
        text: str | None,
        parse_mode: str | None,
        reply_markup: InlineKeyboardMarkup | None,
    ) -> ChatMessage:
        """editMessageText (text given) or editMessageReplyMarkup (text None)."""
        self.check_writable()
        current = self.messages.get(message_id)
        if current is None:
            if message_id in self.user_messages:
                raise Refused("message can't be edited")
            raise Refused("message to edit not found")
        if text is None:
            text, parse_mode, plain = current.raw_text, current.parse_mode, current.text
        else:
            plain = render_text(text, parse_mode)
        # Like Telegram, an edit without reply_markup removes the inline keyboard.
        keyboard = keyboard_of(reply_markup)
        if text == current.raw_text and keyboard == current.keyboard:
            raise Refused(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        message = Message(
            message_id=message_id,
            date=current.message.date,
            chat=self.chat,
            from_user=current.message.from_user,
            text=plain,
            reply_markup=reply_markup,
            edit_date=int(date.timestamp()),
        )
        edited = ChatMessage(
            message_id, plain, text, parse_mode, keyboard, message, current.edits + 1
        )
        self.messages[message_id] = edited
        return edited

    def delete(self, message_ids: list[int]) -> None:
        found = False
        for message_id in message_ids:
            removed = self.messages.pop(message_id, None) or self.user_messages.pop(
                message_id, None
            )
            found = found or removed is not None
        if not found:
            raise Refused("message to delete not found")


@dataclass(slots=True)
class BotSettings:
    """What setMyCommands, setChatMenuButton, setWebhook and setMy* leave behind."""

    commands: dict[tuple[Any, ...], list[BotCommand]] = field(default_factory=dict)
    menu_buttons: dict[int | None, Any] = field(default_factory=dict)
    webhook_url: str = ""
    webhook_secret: str | None = None
    allowed_updates: list[str] | None = None
    """None: Telegram's default set of update types (not reported by getWebhookInfo)."""
    profile: dict[tuple[str, str], str] = field(default_factory=dict)

    def answer(self, method: str, params: dict[str, Any]) -> Any:
        match method:
            case "setMyCommands":
                self.commands[_scope_key(params)] = list(params["commands"])
            case "deleteMyCommands":
                self.commands.pop(_scope_key(params), None)
            case "getMyCommands":
                return list(self.commands.get(_scope_key(params), ()))
            case "setChatMenuButton":
                self.menu_buttons[params.get("chat_id")] = params.get("menu_button")
            case "getChatMenuButton":
                button = self.menu_buttons.get(params.get("chat_id"))
                return button or self.menu_buttons.get(None) or MenuButtonDefault()
            case "setWebhook":
                self.webhook_url = params["url"]
                self.webhook_secret = params.get("secret_token")
                # Telegram keeps the previous types when none are given; [] means its
                # default set, which getWebhookInfo then leaves out.
                if "allowed_updates" in params:
                    self.allowed_updates = list(params["allowed_updates"]) or None
            case "deleteWebhook":
                # The update types stay: getUpdates and the next setWebhook share them.
                self.webhook_url, self.webhook_secret = "", None
            case "getWebhookInfo":
                return WebhookInfo(
                    url=self.webhook_url,
                    has_custom_certificate=False,
                    pending_update_count=0,
                    allowed_updates=self.allowed_updates,
                )
            case "setMyName" | "setMyDescription" | "setMyShortDescription":
                field_name = _PROFILE_FIELDS[method]
                language = params.get("language_code", "")
                self.profile[(field_name, language)] = params.get(field_name, "")
            case _:
                raise NotImplementedError(method)
        return True


_PROFILE_FIELDS = {
    "setMyName": "name",
    "setMyDescription": "description",
    "setMyShortDescription": "short_description",
}


def _scope_key(params: dict[str, Any]) -> tuple[Any, ...]:
    scope = params.get("scope")
    return (
        scope.type if scope is not None else "default",
        getattr(scope, "chat_id", None),
        getattr(scope, "user_id", None),
        params.get("language_code", ""),
    )
