"""What Telegram does with a message's content before the user sees it: the text parsed
(parse_mode=HTML) and checked against the Bot API limits, the inline keyboard copied and
checked. What it would refuse raises `Refused`; `bot.sim.telegram` turns that into
aiogram's exception.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

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


# What an inline button does besides showing its text; one of them is required.
BUTTON_ACTIONS = (
    "callback_data",
    "url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "web_app",
    "login_url",
    "callback_game",
    "pay",
    "copy_text",
)


def keyboard_of(markup: InlineKeyboardMarkup | None) -> Keyboard:
    """Snapshot an inline keyboard (the builder's buttons are mutable), or Refused."""
    if markup is None:
        return ()
    for row in markup.inline_keyboard:
        for button in row:
            _check_button(button)
    return tuple(
        tuple(Button(b.text, b.callback_data, b.url) for b in row) for row in markup.inline_keyboard
    )


def _check_button(button: InlineKeyboardButton) -> None:
    # most buttons carry callback data: the full look for any action only without it
    if not button.callback_data and all(
        getattr(button, action, None) in (None, "") for action in BUTTON_ACTIONS
    ):
        raise Refused(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    data = button.callback_data
    if data is not None and len(data.encode()) > MAX_CALLBACK_DATA_BYTES:
        raise Refused("BUTTON_DATA_INVALID")
    problem = url_problem(button.url) if button.url is not None else None
    if problem is not None:
        raise Refused(f"inline keyboard button URL '{button.url}' is invalid: {problem}")


# A URL host's characters, as tdlib allows them (RFC 3986), besides %XX and non-ASCII.
_HOST_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_!$,~*'();&+=")


def url_problem(url: str) -> str | None:
    """Why Telegram refuses `url` for a URL button, in its words, or None.

    The checks of tdlib's LinkManager::check_link and parse_url (td/utils/HttpUrl.cpp),
    which the Bot API runs on every URL button: http, https, tg:, ton: and tonsite:
    links only (no scheme means http), a host that is there and well formed, a port
    that is a port, and a dot in the host of an http(s) link. IPv6 hosts aside."""
    link, special = url, ""
    for scheme in ("tg:", "ton:", "tonsite:"):
        if link.lower().startswith(scheme):
            link, special = link[len(scheme) :], scheme
            break
    if special and link.startswith("//"):
        link = link[2:]
    rest, https = link, False
    scheme_end = re.search(r"[:/?#@\[\]]", link)
    if scheme_end is not None and link.startswith("://", scheme_end.start()):
        scheme = link[: scheme_end.start()].lower()
        if scheme not in ("http", "https"):
            return "Unsupported URL protocol"
        rest, https = link[scheme_end.start() + 3 :], scheme == "https"
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    host, port = authority, ""
    colon = authority.rfind(":")
    if colon > 0 and colon > authority.rfind("]") and colon > authority.rfind("@"):
        host, port = authority[:colon], authority[colon + 1 :]
        if not port.isdigit() or not 0 < int(port) <= 65535:
            return "Wrong port number specified in the URL"
    userinfo, _, host = host.rpartition("@")
    if not host:
        return "URL host is empty"
    if host == ".":
        return "Host is invalid"
    bare = re.sub(r"%[0-9a-f]{2}", "", host.lower())
    if "%" in bare:
        return "Wrong percent-encoded symbol in URL host"
    if any(ord(c) < 128 and c not in _HOST_CHARACTERS for c in bare):
        return "Wrong URL host"
    if special:
        if https or link.lower().startswith("http://") or userinfo or port:
            return "Wrong tg URL" if special == "tg:" else "Wrong ton URL"
        allowed = "-_." if special == "tonsite:" else "-_"
        if any(not (c.isascii() and c.isalnum()) and c not in allowed for c in host):
            return "Unallowed characters in URL host"
        return None
    if "." not in host:
        return "Wrong HTTP URL"
    return None
