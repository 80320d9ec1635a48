"""What the Telegram double keeps of each private chat: the bot's messages as the user
currently sees them, the user's own messages, callback answers and the reply keyboard,
with the checks Telegram applies before it changes any of them.

Plain data and rules; `bot.sim.telegram` turns a `Refused` into aiogram's exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiogram.types import (
    Chat,
    Document,
    InlineKeyboardMarkup,
    Message,
    PhotoSize,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    User,
)

from bot.sim.content import (
    Button,
    Keyboard,
    Refused,
    keyboard_of,
    render_caption,
    render_text,
)
from bot.sim.files import StoredFile


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
    media: tuple[str, str] | None = None
    """A photo or document message: its kind and file id (`text` is its caption)."""

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

    def post_media(
        self,
        sender: User,
        date: datetime,
        file: StoredFile,
        caption: str | None,
        parse_mode: str | None,
        reply_markup: Any,
    ) -> ChatMessage:
        """sendPhoto or sendDocument of a file Telegram holds: store and return it."""
        self.check_writable()
        plain = render_caption(caption, parse_mode)
        markup = reply_markup if isinstance(reply_markup, InlineKeyboardMarkup) else None
        keyboard = keyboard_of(markup)
        if file.kind == "photo":
            content: dict[str, Any] = {
                "photo": [
                    PhotoSize(
                        file_id=file.file_id,
                        file_unique_id=file.file_unique_id,
                        width=1280,
                        height=960,
                        file_size=file.size,
                    )
                ]
            }
        else:
            content = {
                "document": Document(
                    file_id=file.file_id,
                    file_unique_id=file.file_unique_id,
                    file_name=file.name,
                    mime_type=file.mime_type,
                    file_size=file.size,
                )
            }
        message = Message(
            message_id=self.next_message_id(),
            date=date,
            chat=self.chat,
            from_user=sender,
            caption=plain or None,
            reply_markup=markup,
            **content,
        )
        stored = ChatMessage(
            message.message_id,
            plain,
            caption or "",
            parse_mode,
            keyboard,
            message,
            media=(file.kind, file.file_id),
        )
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
        elif current.media is not None:
            raise Refused("there is no text in the message to edit")
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
        if current.media is not None:  # its buttons changed: the file and caption stay
            message = current.message.model_copy(
                update={"reply_markup": reply_markup, "edit_date": int(date.timestamp())}
            )
        edited = ChatMessage(
            message_id, plain, text, parse_mode, keyboard, message, current.edits + 1, current.media
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
