"""Every text a user reads is in the catalogs, and every catalog entry is
translated: a string literal in the Telegram face that a user could read is
inside a gettext call (`_`, `N_`, `ngettext`), and every message extracted from
bot/telegram by Babel has a Russian translation with the same placeholders
and HTML tags, none fuzzy, none left over."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po

from bot.telegram.i18n import CATALOGS, LANGUAGES, Catalogs, locale_for
from tests.unit.test_layout import OPERATOR_ERRORS, OPERATOR_OUTPUT, SENTENCE, docstrings

ROOT = Path(__file__).resolve().parents[2]
FACE = ROOT / "bot/telegram"
GETTEXT = {"_", "N_", "ngettext"}
KEYWORDS = {**DEFAULT_KEYWORDS, "N_": None}

TAG = re.compile(r"<[^>]+>")
PLACEHOLDER = re.compile(r"\{[^{}]*\}")
WORD = re.compile(r"[A-Za-z]{2,}")
# Babel's formatters: their patterns ("dd MMM y") are not words a user reads.
PATTERNS = {"format_date", "format_datetime", "format_decimal"}


def user_facing(text: str) -> bool:
    """A sentence (the layout test's rule), or words a user reads: a label that
    starts with a capital, an emoji or a mark, or words with a space between."""
    text = text.strip()
    if not text:
        return False
    if SENTENCE.match(text):
        return True
    bare = PLACEHOLDER.sub("", TAG.sub("", text)).strip()
    if not WORD.search(bare):
        return False
    first = bare[0]
    return " " in bare or first.isupper() or not first.isascii()


def _skipped(tree: ast.AST) -> set[int]:
    """Nodes no user reads, or that are in a catalog already: docstrings, log
    calls and exceptions, what a comparison compares with (an API's error
    text), Babel's patterns, and the arguments of gettext calls."""
    skip = docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in OPERATOR_ERRORS | OPERATOR_OUTPUT | GETTEXT | PATTERNS:
                skip.update(id(n) for n in ast.walk(node))
        elif isinstance(node, ast.Compare | ast.Raise):  # an exception's text is logged
            skip.update(id(n) for n in ast.walk(node))
    return skip


def uncatalogued(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    skip = _skipped(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.JoinedStr):
            # an f-string can't be a catalog key: its words are looked for alone
            skip.update(id(v) for v in node.values)
            text = "".join(v.value if isinstance(v, ast.Constant) else "{X}" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if user_facing(text):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text.strip()[:60]!r}")
    return found


def test_the_scan_sees_what_a_user_reads() -> None:
    assert user_facing("No such deal.")
    assert user_facing("« Menu") and user_facing("Decline") and user_facing("✅ Accept")
    assert user_facing("{X} · with {X}") and user_facing("<b>Deal #{code}</b> · you are the buyer")
    assert not user_facing("deposit") and not user_facing("<b>#{X}</b> · {X}")
    assert not user_facing("callback_answer") and not user_facing("admin_deposits")


def test_every_text_of_the_telegram_face_is_read_from_the_catalog() -> None:
    found = [hit for path in sorted(FACE.rglob("*.py")) for hit in uncatalogued(path)]
    assert found == []


# -- the catalogs -----------------------------------------------------------------


def extracted() -> dict[str | tuple[str, ...], str]:
    """Every message Babel extracts from the Telegram face (plurals as tuples),
    with where it was found."""
    found: dict[str | tuple[str, ...], str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(FACE), keywords=KEYWORDS
    ):
        key = tuple(message) if isinstance(message, tuple | list) else message
        found.setdefault(key, f"{filename}:{lineno}")
    return found


def catalog(locale: str):
    with (CATALOGS / locale / "LC_MESSAGES" / "messages.po").open("rb") as file:
        return read_po(file, locale=locale)


def singular(key: str | tuple[str, ...]) -> str:
    return key if isinstance(key, str) else key[0]


def tags(text: str) -> Counter[str]:
    return Counter(TAG.findall(text))


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def test_the_languages_are_english_and_one_per_catalog() -> None:
    assert LANGUAGES[0] == "en"
    assert sorted(p.name for p in CATALOGS.iterdir() if p.is_dir()) == sorted(LANGUAGES[1:])


@pytest.mark.parametrize("locale", LANGUAGES[1:])
def test_every_message_has_a_translation_with_its_placeholders_and_tags(locale: str) -> None:
    messages = extracted()
    assert len(messages) > 300  # the scan sees the face
    entries = {singular(message.id): message for message in catalog(locale) if message.id}
    problems = []
    for key, where in messages.items():
        entry = entries.get(singular(key))
        if entry is None:
            problems.append(f"missing: {key!r} ({where})")
            continue
        if entry.fuzzy:
            problems.append(f"fuzzy: {key!r}")
        translations = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        sources = key if isinstance(key, tuple) else (key,)
        if not all(translations):
            problems.append(f"untranslated: {key!r}")
            continue
        for translation in translations:
            if placeholders(translation) != placeholders(sources[-1]):
                problems.append(f"placeholders differ: {key!r} -> {translation!r}")
            if tags(translation) != tags(sources[-1]):
                problems.append(f"HTML tags differ: {key!r} -> {translation!r}")
    left_over = set(entries) - {singular(key) for key in messages}
    problems += [f"not in the code any more: {key!r}" for key in sorted(left_over)]
    assert problems == []


def test_the_catalogs_compile_and_answer_in_their_language() -> None:
    i18n = Catalogs()
    assert set(i18n.available_locales) == set(LANGUAGES[1:])
    assert i18n.gettext("« Menu", locale="ru") == "« Меню"
    assert i18n.gettext("« Menu", locale="en") == "« Menu"
    # Russian has three plural forms
    one, few, many = (
        i18n.gettext("{count} day ago", "{count} days ago", n, locale="ru") for n in (1, 3, 5)
    )
    assert len({one, few, many}) == 3


@pytest.mark.parametrize(
    ("code", "locale"),
    [("ru", "ru"), ("ru-RU", "ru"), ("RU", "ru"), ("en", "en"), ("en-GB", "en"), ("uk", "en"),
     ("de", "en"), ("", "en"), (None, "en")],
)  # fmt: skip
def test_a_language_code_picks_its_catalog_or_english(code: str | None, locale: str) -> None:
    assert locale_for(code) == locale
