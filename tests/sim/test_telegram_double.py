"""The Telegram double answers like Telegram, records every request, and lets simulated
users drive a real Dispatcher, one at a time or concurrently."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiogram import Bot, Dispatcher, F, Router, html
from aiogram.client.default import DefaultBotProperties
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.filters import CommandObject, CommandStart
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageOriginHiddenUser,
    MessageOriginUser,
)
from aiogram.utils.callback_answer import CallbackAnswer, CallbackAnswerMiddleware
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.sim import BotRequest, ButtonNotFound, FakeTelegram, SimulatedUser

TOKEN = "42:TEST"


class Pick(CallbackData, prefix="pick"):
    item: str


def build_dispatcher(seen: list[Any]) -> Dispatcher:
    """A small bot: /start shows a keyboard; picking edits it in place."""
    router = Router()

    @router.message(CommandStart(deep_link=True))
    async def start_with_payload(message: Message, command: CommandObject) -> None:
        seen.append(command.args)
        await message.answer(f"Opened with {html.quote(command.args or '')}")

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        keyboard = InlineKeyboardBuilder()
        keyboard.button(text="Apples", callback_data=Pick(item="apples"))
        keyboard.button(text="Pears", callback_data=Pick(item="pears"))
        keyboard.button(text="Plums", callback_data=Pick(item="plums"))
        keyboard.button(text="Docs", url="https://example.org/docs")
        keyboard.adjust(3, 1)
        await message.answer("Pick <b>one</b> &amp; only one", reply_markup=keyboard.as_markup())

    @router.message(F.forward_origin)
    async def forwarded(message: Message) -> None:
        seen.append(message.forward_origin)
        await message.answer("Counterparty noted")

    # Plums are out: answer after the handler, with an alert instead of a silent ack.
    late_answer = {"callback_answer": {"pre": False}}

    @router.callback_query(Pick.filter(F.item == "plums"), flags=late_answer)
    async def out_of_stock(callback: CallbackQuery, callback_answer: CallbackAnswer) -> None:
        callback_answer.text = "Out of stock"
        callback_answer.show_alert = True

    @router.callback_query(Pick.filter())
    async def picked(callback: CallbackQuery, callback_data: Pick) -> None:
        back = InlineKeyboardBuilder()
        back.button(text="Back", callback_data="back")
        assert isinstance(callback.message, Message)
        await callback.message.edit_text(
            f"You picked <i>{callback_data.item}</i>", reply_markup=back.as_markup()
        )

    dispatcher = Dispatcher()
    dispatcher.callback_query.middleware(CallbackAnswerMiddleware(pre=True))
    dispatcher.include_router(router)
    return dispatcher


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("a Telegram double test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture
def telegram() -> FakeTelegram:
    return FakeTelegram()


@pytest.fixture
def bot(telegram: FakeTelegram) -> Iterator[Bot]:
    yield Bot(TOKEN, session=telegram, default=DefaultBotProperties(parse_mode="HTML"))


@pytest.fixture
def seen() -> list[Any]:
    return []


@pytest.fixture
def dispatcher(seen: list[Any]) -> Dispatcher:
    return build_dispatcher(seen)


@pytest.fixture
def alice(telegram: FakeTelegram, bot: Bot, dispatcher: Dispatcher) -> SimulatedUser:
    return SimulatedUser(
        telegram, bot, dispatcher, user_id=1001, first_name="Alice", username="alice"
    )


@pytest.fixture
def bob(telegram: FakeTelegram, bot: Bot, dispatcher: Dispatcher) -> SimulatedUser:
    return SimulatedUser(telegram, bot, dispatcher, user_id=1002, first_name="Bob")


async def test_requests_are_recorded_in_order_with_their_parameters(
    telegram: FakeTelegram, bot: Bot, alice: SimulatedUser
) -> None:
    me = await bot.get_me()
    await alice.send("/start")

    assert me.username == "escrow_test_bot" and me.id == 42 and me.is_bot
    assert telegram.methods == ["getMe", "sendMessage"]
    send = telegram.requests[1]
    assert send.params["chat_id"] == alice.id
    assert send.params["text"] == "Pick <b>one</b> &amp; only one"
    assert send.params["parse_mode"] == "HTML"  # the bot's default, resolved
    assert isinstance(send.params["reply_markup"], InlineKeyboardMarkup)
    assert telegram.requests[0].at_ns < send.at_ns
    message = send.result
    assert isinstance(message, Message)
    assert message.chat.id == alice.id and message.from_user is not None
    assert message.from_user.username == "escrow_test_bot"
    assert message.reply_markup == send.params["reply_markup"]

    telegram.clear()
    assert telegram.requests == []


async def test_stored_text_keeps_the_html_and_a_plain_version(alice: SimulatedUser) -> None:
    await alice.send("/start")

    assert alice.last.raw_text == "Pick <b>one</b> &amp; only one"
    assert alice.last.text == "Pick one & only one"
    assert alice.last.keyboard[1][0].url == "https://example.org/docs"
    assert alice.buttons() == ["Apples", "Pears", "Plums", "Docs"]


async def test_message_ids_increase_per_chat(alice: SimulatedUser, bob: SimulatedUser) -> None:
    first = await alice.send("/start")
    second = await alice.send("/start")
    await bob.send("/start")

    # One counter per chat for both sides: user 1, bot 2, user 3, bot 4.
    assert first.update.message is not None and first.update.message.message_id == 1
    assert [m.message_id for m in alice.messages] == [2, 4]
    assert [m.message_id for m in bob.messages] == [2]
    assert second.update.update_id > first.update.update_id


async def test_pressing_a_button_by_text_edits_the_message_in_place(
    alice: SimulatedUser,
) -> None:
    await alice.send("/start")
    shown = alice.last

    result = await alice.press("Pears")

    assert len(alice.messages) == 1
    assert alice.last.message_id == shown.message_id
    assert alice.last.text == "You picked pears"
    assert alice.last.edits == 1
    assert alice.buttons() == ["Back"]
    assert result.texts == ["You picked pears"]
    assert shown.buttons == ["Apples", "Pears", "Plums", "Docs"]  # old snapshot unchanged


async def test_the_callback_is_answered_first_with_a_pre_answer_middleware(
    telegram: FakeTelegram, alice: SimulatedUser
) -> None:
    await alice.send("/start")
    telegram.clear()

    result = await alice.press("Apples")

    assert result.methods == ["answerCallbackQuery", "editMessageText"]
    assert telegram.methods == ["answerCallbackQuery", "editMessageText"]
    answer = telegram.requests[0]
    query = result.update.callback_query
    assert query is not None
    assert answer.params["callback_query_id"] == query.id
    assert query.data == "pick:apples"
    assert query.message is not None and query.message.message_id == alice.last.message_id
    assert alice.last_answer is not None and alice.last_answer.text is None


async def test_a_late_answer_carries_its_alert(alice: SimulatedUser) -> None:
    await alice.send("/start")

    result = await alice.press(callback_data="pick:plums")

    assert result.methods == ["answerCallbackQuery"]
    assert alice.last_answer is not None
    assert (alice.last_answer.text, alice.last_answer.show_alert) == ("Out of stock", True)
    assert result.answer == alice.last_answer


async def test_pressing_a_button_that_is_not_shown_lists_the_visible_ones(
    alice: SimulatedUser,
) -> None:
    await alice.send("/start")
    await alice.press("Pears")

    with pytest.raises(ButtonNotFound, match=r"no button 'Apples'.*#2 \['Back'\]"):
        await alice.press("Apples")
    await alice.send("/start")
    with pytest.raises(ButtonNotFound, match="URL button"):
        await alice.press("Docs")


async def test_an_unknown_method_fails_loudly(
    telegram: FakeTelegram, bot: Bot, alice: SimulatedUser
) -> None:
    await alice.send("/start")

    with pytest.raises(NotImplementedError, match="sendDice"):
        await bot.send_dice(alice.id)
    assert telegram.requests[-1].method == "sendDice"
    assert isinstance(telegram.requests[-1].error, NotImplementedError)
    assert telegram.unanswered == ["sendDice"]


async def test_identical_and_missing_edits_are_refused_like_telegram(
    bot: Bot, alice: SimulatedUser
) -> None:
    await alice.send("/start")
    await alice.press("Pears")
    shown = alice.last

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            text=shown.raw_text,
            chat_id=alice.id,
            message_id=shown.message_id,
            reply_markup=shown.message.reply_markup,
        )
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text(text="x", chat_id=alice.id, message_id=999)
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text(text="x", chat_id=alice.id, message_id=1)

    # Editing the text without reply_markup drops the keyboard, as Telegram does.
    await bot.edit_message_text(text=shown.raw_text + "!", chat_id=alice.id, message_id=2)
    assert alice.buttons() == []


async def test_users_in_separate_chats_do_not_see_each_other(
    alice: SimulatedUser, bob: SimulatedUser
) -> None:
    await alice.send("/start")
    await bob.send("/start")

    await alice.press("Plums")
    await alice.press("Pears")

    assert bob.last.text == "Pick one & only one" and bob.last.edits == 0
    assert bob.answers == []
    assert [a.text for a in alice.answers] == ["Out of stock", None]
    assert all(m.message.chat.id == bob.id for m in bob.messages)


async def test_two_presses_in_flight_at_once_both_complete(dispatcher: Dispatcher) -> None:
    # latency=0 suspends on every request, so the two updates interleave.
    telegram = FakeTelegram(latency=0)
    bot = Bot(TOKEN, session=telegram, default=DefaultBotProperties(parse_mode="HTML"))
    alice = SimulatedUser(telegram, bot, dispatcher, user_id=1, first_name="Alice")
    bob = SimulatedUser(telegram, bot, dispatcher, user_id=2, first_name="Bob")
    await asyncio.gather(alice.send("/start"), bob.send("/start"))
    telegram.clear()

    first, second = await asyncio.gather(alice.press("Apples"), bob.press("Pears"))

    assert telegram.methods == [
        "answerCallbackQuery",
        "answerCallbackQuery",
        "editMessageText",
        "editMessageText",
    ]
    assert [r.params.get("chat_id") for r in first.requests] == [None, alice.id]
    assert [r.params.get("chat_id") for r in second.requests] == [None, bob.id]
    assert (alice.last.text, bob.last.text) == ("You picked apples", "You picked pears")


async def test_a_double_tap_reaches_the_bot_twice(alice: SimulatedUser) -> None:
    await alice.send("/start")
    on_screen = alice.last

    results = await asyncio.gather(
        alice.press("Pears", message=on_screen),
        alice.press("Pears", message=on_screen),
        return_exceptions=True,
    )

    # The second identical edit is refused, exactly what a real double tap produces.
    assert sum(isinstance(r, TelegramBadRequest) for r in results) == 1
    assert len(alice.answers) == 2


async def test_retry_after_is_raised_once_then_the_call_succeeds(
    telegram: FakeTelegram, alice: SimulatedUser
) -> None:
    telegram.fail_next("sendMessage", retry_after=3)

    with pytest.raises(TelegramRetryAfter) as failure:
        await alice.send("/start")
    assert failure.value.retry_after == 3
    assert isinstance(telegram.requests[-1].error, TelegramRetryAfter)
    assert alice.messages == []

    await alice.send("/start")
    assert alice.last.text == "Pick one & only one"


async def test_a_bad_request_can_be_injected(bot: Bot, alice: SimulatedUser) -> None:
    await alice.send("/start")
    alice.telegram.fail_next("editMessageText", bad_request="message can't be edited")

    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await alice.press("Pears")
    await alice.press("Pears")
    assert alice.last.text == "You picked pears"


async def test_a_start_payload_reaches_a_deep_link_handler(
    alice: SimulatedUser, seen: list[Any]
) -> None:
    result = await alice.start("deal_42")

    assert seen == ["deal_42"]
    assert alice.last.text == "Opened with deal_42"
    message = result.update.message
    assert message is not None and message.entities is not None
    assert (message.entities[0].type, message.entities[0].length) == ("bot_command", 6)


async def test_a_forwarded_message_carries_its_origin(
    alice: SimulatedUser, bob: SimulatedUser, seen: list[Any]
) -> None:
    await alice.forward_from(bob)
    await alice.forward_from(bob, hidden=True)

    shown, hidden = seen
    assert isinstance(shown, MessageOriginUser) and shown.sender_user.id == bob.id
    assert isinstance(hidden, MessageOriginHiddenUser) and hidden.sender_user_name == "Bob"


async def test_the_bot_cannot_write_first_or_to_a_user_who_blocked_it(
    telegram: FakeTelegram, bot: Bot, dispatcher: Dispatcher
) -> None:
    carol = SimulatedUser(telegram, bot, dispatcher, user_id=7, first_name="Carol")

    with pytest.raises(TelegramForbiddenError, match="can't initiate conversation"):
        await bot.send_message(carol.id, "Deal opened")
    await carol.send("/start")
    carol.block()
    with pytest.raises(TelegramForbiddenError, match="blocked"):
        await bot.send_message(carol.id, "Deal opened")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(123456, "Deal opened")


async def test_malformed_html_is_refused_like_telegram(bot: Bot, alice: SimulatedUser) -> None:
    await alice.send("/start")

    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(alice.id, "5 < 6")
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(alice.id, "<b>bold")
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(alice.id, "<b> </b>")

    await bot.send_message(alice.id, "5 &lt; 6 &#38; 7 &gt; 3", parse_mode=None)
    assert alice.last.text == "5 &lt; 6 &#38; 7 &gt; 3"
    await bot.send_message(alice.id, "5 &lt; 6 &#38; 7 &gt; 3")
    assert alice.last.text == "5 < 6 & 7 > 3"


async def test_lengths_are_counted_like_telegram(bot: Bot, alice: SimulatedUser) -> None:
    """4,096 characters of text once entities are parsed (one per code point: an
    escaped "<" is one, so is an emoji); 32 KiB of text as sent; 64 bytes of
    callback data."""
    await alice.send("/start")
    await bot.send_message(alice.id, "&lt;" * 4095 + "🛡")
    assert len(alice.last.text) == 4096
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(alice.id, "&lt;" * 4096 + "🛡")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.edit_message_text("x" * 4097, chat_id=alice.id, message_id=alice.last.message_id)
    with pytest.raises(TelegramBadRequest, match="text is too long"):
        await bot.send_message(alice.id, "<b></b>" * 4700 + "short")

    def keyboard(data: str) -> InlineKeyboardMarkup:
        return InlineKeyboardBuilder().button(text="Go", callback_data=data).as_markup()

    await bot.send_message(alice.id, "Buttons", reply_markup=keyboard("é" * 32))
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(alice.id, "Buttons", reply_markup=keyboard("é" * 32 + "x"))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com", "Unsupported URL protocol"),
        ("happ://add/https://example.com", "Unsupported URL protocol"),
        ("not-a-url", "Wrong HTTP URL"),
        ("https://", "URL host is empty"),
        ("https://exa mple.com/", "Wrong URL host"),
        ("https://example.com:70000/", "Wrong port number specified in the URL"),
        ("javascript:alert(1)", "Wrong port number specified in the URL"),
        ("tg://http://example.com", "Wrong tg URL"),
    ],
)
async def test_url_buttons_are_checked_like_telegram(
    bot: Bot, alice: SimulatedUser, url: str, problem: str
) -> None:
    """What the Bot API (tdlib's check_link) refuses in a URL button, in its words;
    a button that does nothing but show its text is refused too."""
    await alice.send("/start")
    link = InlineKeyboardBuilder().button(text="Open", url=url).as_markup()
    with pytest.raises(TelegramBadRequest, match=f"URL '{re.escape(url)}' is invalid: {problem}"):
        await bot.send_message(alice.id, "Link", reply_markup=link)
    no_action = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Nothing")]])
    with pytest.raises(TelegramBadRequest, match="Text buttons are unallowed"):
        await bot.send_message(alice.id, "Link", reply_markup=no_action)


@pytest.mark.parametrize(
    "url",
    [
        "https://t.me/share/url?url=https%3A%2F%2Ft.me%2Fbot%3Fstart%3Dabc&text=a%20deal",
        "https://t.me/share/url?url=x&text=spaces are sent encoded",
        "t.me/escrow_bot",
        "tg://resolve?domain=escrow_bot",
        "https://example.com:8443/path",
    ],
)
async def test_url_buttons_telegram_takes_are_shown(
    bot: Bot, alice: SimulatedUser, url: str
) -> None:
    await alice.send("/start")
    link = InlineKeyboardBuilder().button(text="Open", url=url).as_markup()
    await bot.send_message(alice.id, "Link", reply_markup=link)
    assert alice.last.keyboard[0][0].url  # shown, as a link to open
    with pytest.raises(ButtonNotFound, match="is a URL button"):
        await alice.press("Open")


async def test_a_timeline_listener_sees_every_request_as_it_is_made(
    telegram: FakeTelegram, alice: SimulatedUser
) -> None:
    timeline: list[tuple[str, str]] = []
    listener = telegram.add_listener(lambda request: timeline.append(("bot", request.method)))

    timeline.append(("sql", "SELECT 1"))
    await alice.send("/start")
    timeline.append(("redis", "GET user:1001"))
    await alice.press("Pears")
    telegram.remove_listener(listener)
    await alice.send("/start")

    assert timeline == [
        ("sql", "SELECT 1"),
        ("bot", "sendMessage"),
        ("redis", "GET user:1001"),
        ("bot", "answerCallbackQuery"),
        ("bot", "editMessageText"),
    ]


async def test_bot_settings_round_trip(telegram: FakeTelegram, bot: Bot) -> None:
    commands = [BotCommand(command="start", description="Open the bot")]
    assert await bot.set_my_commands(commands)
    assert await bot.get_my_commands() == commands
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == []
    assert await bot.set_webhook("https://bot.example.org/hook", secret_token="s3cret")
    info = await bot.get_webhook_info()
    assert info.url == "https://bot.example.org/hook"
    assert telegram.settings.webhook_secret == "s3cret"
    assert await bot.delete_webhook()
    assert (await bot.get_webhook_info()).url == ""


async def test_capture_collects_only_the_current_tasks_requests(
    telegram: FakeTelegram, alice: SimulatedUser, bob: SimulatedUser
) -> None:
    await asyncio.gather(alice.send("/start"), bob.send("/start"))

    with telegram.capture() as requests:
        await alice.press("Pears")

    assert [r.method for r in requests] == ["answerCallbackQuery", "editMessageText"]
    assert all(isinstance(r, BotRequest) for r in requests)


async def test_webhook_info_follows_set_and_delete_as_telegram_reports_it(bot: Bot) -> None:
    info = await bot.get_webhook_info()
    assert (info.url, info.allowed_updates) == ("", None)  # never set: the default types
    assert await bot.set_webhook(
        "https://bot.example.org/hook", secret_token="s3cret", allowed_updates=["message"]
    )
    info = await bot.get_webhook_info()
    assert (info.url, info.allowed_updates) == ("https://bot.example.org/hook", ["message"])
    # Telegram keeps the update types across deleteWebhook (getUpdates uses them too)
    assert await bot.delete_webhook()
    info = await bot.get_webhook_info()
    assert (info.url, info.allowed_updates) == ("", ["message"])
    # setWebhook without allowed_updates keeps the previous ones; [] means the default
    assert await bot.set_webhook("https://bot.example.org/other")
    assert (await bot.get_webhook_info()).allowed_updates == ["message"]
    assert await bot.set_webhook("https://bot.example.org/other", allowed_updates=[])
    assert (await bot.get_webhook_info()).allowed_updates is None


async def test_files_users_sent_are_sent_again_by_file_id_as_telegram_does(
    telegram: FakeTelegram, bot: Bot, alice: SimulatedUser, bob: SimulatedUser
) -> None:
    """A photo or document a user sent is known by its file id: the bot may send
    it (to anyone) by that id, with a caption of at most 1,024 characters; an id
    Telegram never gave, or a photo's id sent as a document, is refused."""
    photo = (await alice.send_photo("the crack")).update.message
    document = (await alice.send_document("receipt.pdf", size=30_000)).update.message
    await bob.send("/start")
    assert photo.caption == "the crack" and len(photo.photo) == 2
    assert document.document.file_name == "receipt.pdf" and document.document.file_size == 30_000
    photo_id, document_id = photo.photo[-1].file_id, document.document.file_id

    sent = await bot.send_photo(bob.id, photo_id, caption="<b>From Alice</b>")
    assert sent.photo[-1].file_id == photo_id and sent.caption == "From Alice"
    assert bob.last.media == ("photo", photo_id) and bob.last.text == "From Alice"
    keyboard = InlineKeyboardBuilder().button(text="Open", callback_data="open").as_markup()
    await bot.send_document(bob.id, document_id, reply_markup=keyboard)
    assert bob.last.media == ("document", document_id) and bob.last.text == ""
    assert bob.buttons() == ["Open"]

    with pytest.raises(TelegramBadRequest, match="type of file mismatch"):
        await bot.send_document(bob.id, photo_id)
    with pytest.raises(TelegramBadRequest, match="type of file mismatch"):
        await bot.send_photo(bob.id, document_id)
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_photo(bob.id, photo_id[:-3] + "xyz")
    with pytest.raises(TelegramBadRequest, match="Wrong string length"):
        await bot.send_photo(bob.id, "abc")
    with pytest.raises(TelegramBadRequest, match="message caption is too long"):
        await bot.send_photo(bob.id, photo_id, caption="&lt;" * 1025)
    await bot.send_photo(bob.id, photo_id, caption="&lt;" * 1024)
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_photo(bob.id, photo_id, caption="5 < 6")
    # its caption is not a text: an edit of the text is refused, of the buttons not
    with pytest.raises(TelegramBadRequest, match="there is no text in the message to edit"):
        await bot.edit_message_text("new", chat_id=bob.id, message_id=bob.last.message_id)
    await bot.edit_message_reply_markup(
        chat_id=bob.id, message_id=bob.last.message_id, reply_markup=keyboard
    )
    assert bob.last.media == ("photo", photo_id) and bob.buttons() == ["Open"]
    bob.block()
    with pytest.raises(TelegramForbiddenError, match="blocked"):
        await bot.send_photo(bob.id, photo_id)
    with pytest.raises(NotImplementedError, match="file id only"):
        await bot.send_photo(alice.id, BufferedInputFile(b"\x89PNG", "x.png"))
