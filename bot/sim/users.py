"""Simulated Telegram users: people who type, forward and press buttons in a private
chat with the bot, driving a real aiogram Dispatcher through `FakeTelegram`.

    telegram = FakeTelegram()
    bot = Bot("42:TEST", session=telegram, default=DefaultBotProperties(parse_mode="HTML"))
    alice = SimulatedUser(telegram, bot, dispatcher, user_id=1, first_name="Alice")
    await alice.send("/start")
    await alice.press("Wallet")
    assert "Balance" in alice.last.text
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import (
    CallbackQuery,
    Message,
    MessageEntity,
    MessageOrigin,
    MessageOriginHiddenUser,
    MessageOriginUser,
    Update,
    User,
)

from bot.sim.chats import CallbackAnswer, ChatMessage, ChatState
from bot.sim.content import Button

if TYPE_CHECKING:
    from aiogram import Bot, Dispatcher

    from bot.sim.telegram import BotRequest, FakeTelegram


class ButtonNotFound(LookupError):
    """The user can't press that: no visible message shows such a callback button."""


@dataclass(slots=True, eq=False)
class UpdateResult:
    """What the bot did in response to one update: the requests it made while handling it
    (only its own, even with other updates in flight)."""

    update: Update
    requests: list[BotRequest]
    handled: bool
    """False when no handler took the update."""

    @property
    def methods(self) -> list[str]:
        return [request.method for request in self.requests]

    @property
    def messages(self) -> list[ChatMessage]:
        """Messages the bot sent or edited, each as that request left it."""
        return [r.message for r in self.requests if r.message is not None and r.error is None]

    @property
    def texts(self) -> list[str]:
        return [message.text for message in self.messages]

    @property
    def answer(self) -> CallbackAnswer | None:
        """The callback answer (toast or alert) this update produced, if any."""
        for request in self.requests:
            if request.method == "answerCallbackQuery" and request.error is None:
                params = request.params
                return CallbackAnswer(
                    params["callback_query_id"],
                    params.get("text"),
                    bool(params.get("show_alert")),
                    params.get("url"),
                )
        return None


class SimulatedUser:
    """One Telegram user in a private chat with the bot (chat.id == user.id).

    Many users can share one FakeTelegram, Bot and Dispatcher, and their updates can be
    fed at the same time (asyncio.gather)."""

    def __init__(
        self,
        telegram: FakeTelegram,
        bot: Bot,
        dispatcher: Dispatcher,
        *,
        user_id: int,
        first_name: str,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        started: bool = False,
    ) -> None:
        """:param started: the user pressed Start in an earlier life, so the bot may write
        first; otherwise Telegram refuses until the user sends something."""
        self.telegram = telegram
        self.bot = bot
        self.dispatcher = dispatcher
        self.user = User(
            id=user_id,
            is_bot=False,
            first_name=first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
        )
        self.chat: ChatState = telegram.register_user(self.user, started=started)

    def __repr__(self) -> str:
        return f"SimulatedUser({self.user.full_name!r}, id={self.id})"

    @property
    def id(self) -> int:
        return self.user.id

    # -- what the user does ---------------------------------------------------------

    async def send(self, text: str) -> UpdateResult:
        """Type `text` and send it; a leading /command gets its bot_command entity."""
        entities = None
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            length = len(command.encode("utf-16-le")) // 2  # Telegram counts UTF-16 units
            entities = [MessageEntity(type="bot_command", offset=0, length=length)]
        return await self.feed(self._message_update(text, entities=entities))

    async def send_photo(self, caption: str | None = None, *, size: int = 150_000) -> UpdateResult:
        """Send a photo (Telegram keeps it and gives each of its sizes a file id)."""
        return await self.send_content(photo=self.telegram.files.photo_sizes(size), caption=caption)

    async def send_document(
        self, name: str = "invoice.pdf", caption: str | None = None, *, size: int = 80_000
    ) -> UpdateResult:
        """Send a file as a document."""
        document = self.telegram.files.document(name, size, "application/pdf")
        return await self.send_content(document=document, caption=caption)

    async def send_content(self, **content: Any) -> UpdateResult:
        """Send a message of any other content (a `sticker=`, a `location=`, ...)."""
        return await self.feed(self._message_update(None, **content))

    async def start(self, payload: str | None = None) -> UpdateResult:
        """Open the bot, or follow a t.me/<bot>?start=<payload> link."""
        return await self.send(f"/start {payload}" if payload else "/start")

    async def forward_from(
        self, origin: SimulatedUser | User, text: str = "Hi!", *, hidden: bool = False
    ) -> UpdateResult:
        """Forward a message `origin` wrote. With `hidden`, `origin` hides their account
        in forwards (a privacy setting) and the bot only learns their name."""
        user = origin.user if isinstance(origin, SimulatedUser) else origin
        date = self.telegram.now()
        forward_origin: MessageOrigin = (
            MessageOriginHiddenUser(date=date, sender_user_name=user.full_name)
            if hidden
            else MessageOriginUser(date=date, sender_user=user)
        )
        return await self.feed(self._message_update(text, forward_origin=forward_origin))

    async def press(
        self,
        text: str | None = None,
        *,
        callback_data: str | None = None,
        message: ChatMessage | None = None,
    ) -> UpdateResult:
        """Press the button with this visible `text` (and/or `callback_data`) on the newest
        bot message that shows one, or on `message`. An old snapshot of a message presses
        what a slow client still shows; the bot gets the message as it stands now."""
        return await self.feed(
            self.press_update(text, callback_data=callback_data, message=message)
        )

    def press_update(
        self,
        text: str | None = None,
        *,
        callback_data: str | None = None,
        message: ChatMessage | None = None,
    ) -> Update:
        """The update Telegram sends for that press (see `press`), not delivered."""
        if text is None and callback_data is None:
            raise TypeError("press() needs the button's text or its callback_data")
        target, button = self._find_button(text, callback_data, message)
        if button.callback_data is None:
            raise ButtonNotFound(
                f"{button.text!r} is a URL button ({button.url}): it opens a link, "
                "the bot receives no update"
            )
        current = self.chat.messages.get(target.message_id)
        if current is None:
            raise ButtonNotFound(f"message #{target.message_id} was deleted; nothing to press")
        shown = current.message
        if shown.bot is not self.bot:  # sent through another replica's Bot
            shown = shown.model_copy().as_(self.bot)
        query = CallbackQuery(
            id=self.telegram.open_callback_query(self.id),
            from_user=self.user,
            chat_instance=str(self.id * 7_919 % 2**63),
            message=shown,
            data=button.callback_data,
        ).as_(self.bot)
        self.chat.started = True
        update = Update(update_id=self.telegram.next_update_id(), callback_query=query)
        return update.as_(self.bot)

    async def feed(self, update: Update, **kwargs: Any) -> UpdateResult:
        """Deliver `update` to the dispatcher (again, to simulate Telegram redelivering)."""
        with self.telegram.capture() as requests:
            response = await self.dispatcher.feed_update(self.bot, update, **kwargs)
        return UpdateResult(update, requests, handled=response is not UNHANDLED)

    def block(self) -> None:
        """Block the bot: its sends and edits now fail with 403, as in Telegram."""
        self.chat.blocked = True

    def unblock(self) -> None:
        self.chat.blocked = False

    # -- what the user sees ---------------------------------------------------------

    @property
    def messages(self) -> list[ChatMessage]:
        """The bot's messages in this chat, oldest first, as they currently stand."""
        return list(self.chat.messages.values())

    @property
    def last(self) -> ChatMessage:
        """The newest bot message in this chat."""
        newest = next(reversed(self.chat.messages.values()), None)
        if newest is None:
            raise LookupError(f"the bot has shown {self.user.full_name} no messages")
        return newest

    def buttons(self, message: ChatMessage | None = None) -> list[str]:
        """Button texts on `message`, or on the newest bot message."""
        return (message or self.last).buttons

    @property
    def answers(self) -> list[CallbackAnswer]:
        """Every callback answer (toast or alert) the user got, oldest first."""
        return self.chat.answers

    @property
    def last_answer(self) -> CallbackAnswer | None:
        return self.chat.answers[-1] if self.chat.answers else None

    # -- helpers --------------------------------------------------------------------

    def _message_update(
        self,
        text: str | None,
        *,
        entities: list[MessageEntity] | None = None,
        forward_origin: MessageOrigin | None = None,
        **content: Any,
    ) -> Update:
        chat = self.chat
        # Writing to the bot starts the chat, and unblocks it ("Restart bot").
        chat.started, chat.blocked = True, False
        message = Message(
            message_id=chat.next_message_id(),
            date=self.telegram.now(),
            chat=chat.chat,
            from_user=self.user,
            text=text,
            entities=entities,
            forward_origin=forward_origin,
            **content,
        ).as_(self.bot)
        chat.user_messages[message.message_id] = message
        return Update(update_id=self.telegram.next_update_id(), message=message).as_(self.bot)

    def _shown(self, message: ChatMessage | None) -> Iterable[ChatMessage]:
        """`message`, or every bot message newest first (the one a user looks at first)."""
        return [message] if message is not None else reversed(self.chat.messages.values())

    def _find_button(
        self, text: str | None, callback_data: str | None, message: ChatMessage | None
    ) -> tuple[ChatMessage, Button]:
        for candidate in self._shown(message):
            try:
                return candidate, candidate.find_button(text, callback_data)
            except LookupError:
                continue
        wanted = repr(text) if callback_data is None else f"{text!r} (data {callback_data!r})"
        visible = [f"#{m.message_id} {m.buttons}" for m in self._shown(message) if m.keyboard]
        raise ButtonNotFound(
            f"{self.user.full_name} sees no button {wanted}; visible buttons: "
            + ("; ".join(visible) if visible else "none")
        )
