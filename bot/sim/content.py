"""What Telegram does with a message's content before the user sees it: the text parsed
(parse_mode=HTML) and checked against the Bot API limits, the inline keyboard copied and
checked. What it would refuse raises `Refused`; `bot.sim.telegram` turns that into
aiogram's exception.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from aiogram.types import InlineKeyboardMarkup

# Bot API limits the double enforces, so an oversized reply fails in tests, not in production:
# characters once entities are parsed (code points, as telegram-bot-api counts them),
# bytes of the text as sent (before parsing), bytes of a button's callback data.
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
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


def render_caption(text: str | None, parse_mode: str | None) -> str:
    """The plain caption Telegram would show under a photo or document (it may
    be empty), or Refused."""
    if not text:
        return ""
    if len(text.encode()) > MAX_RAW_TEXT_BYTES:
        raise Refused("message caption is too long")
    try:
        plain = html_to_plain(text) if (parse_mode or "").upper() == "HTML" else text
    except ValueError as exc:
        raise Refused(f"can't parse entities: {exc}") from None
    if len(plain) > MAX_CAPTION_LENGTH:
        raise Refused("message caption is too long")
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
