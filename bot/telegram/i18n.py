"""The user's language: which one an update is in, and the catalogs it is read from.

aiogram's gettext `I18n` over Babel catalogs (`bot/telegram/locales/<locale>/
LC_MESSAGES/messages.po`; English is the source language and needs none).
The catalogs are compiled when the bot starts (Babel, in memory), so no
compiled file is kept beside them and none can be out of date.

Which language: the one the user chose in the menu (`UserSnapshot.locale`),
else Telegram's `language_code` ("ru", "ru-RU": Russian; anything else:
English). `LocaleMiddleware` reads it from the snapshot the update already
holds (no I/O); before the snapshot is read (a press's answer, the filters) and
for an error, from the snapshot this replica holds in memory, else from
`language_code`. A notification is rendered in its recipient's language
(`bot/telegram/notices.py`), outside any update.

Texts call `_()` where they are built; tables built at import mark their
entries with `N_()` and are read through `_()` (gettext's deferred idiom).
Outside an update and a notification (tests, tools) texts are English.
"""

from __future__ import annotations

import gettext
from collections.abc import Callable
from functools import cache, wraps
from io import BytesIO
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from aiogram import Bot, Dispatcher
from aiogram.types import BotCommand, TelegramObject, User
from aiogram.utils.i18n import I18n, I18nMiddleware
from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from bot.services.money import Currencies
from cache.snapshots import UserSnapshot
from cache.store import SnapshotCache

CATALOGS = Path(__file__).with_name("locales")
DEFAULT_LOCALE = "en"
# The languages a user may choose: English, then one per catalog under CATALOGS
# (tests/unit/test_catalogs.py holds them to it).
LANGUAGES = ("en", "ru")
DOMAIN = "messages"

P = ParamSpec("P")
T = TypeVar("T")


def locale_for(code: str | None) -> str:
    """The catalog for a language tag (a chosen locale or Telegram's
    language_code): its primary language if there is a catalog for it, else
    English. "ru-RU" → "ru", "uk" → "en", None → "en"."""
    if not code:
        return DEFAULT_LOCALE
    primary = code.replace("_", "-").split("-")[0].lower()
    return primary if primary in LANGUAGES else DEFAULT_LOCALE


def locale_of(user: UserSnapshot) -> str:
    """The language `user` reads: the one chosen, else Telegram's language_code."""
    return locale_for(user.locale or user.language_code)


# -- reading texts ----------------------------------------------------------------


def _(message: str) -> str:
    """`message` in the current language (English outside an update)."""
    i18n = Catalogs.get_current(no_error=True)
    return message if i18n is None else i18n.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form of `singular`/`plural` for the count `n` in the current
    language (Russian has three)."""
    i18n = Catalogs.get_current(no_error=True)
    if i18n is None:
        return singular if n == 1 else plural
    return i18n.gettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks `message` for the catalog where it can't be translated yet (a
    table built at import); it is read through `_()` where it is used."""
    return message


def current_locale() -> str:
    i18n = Catalogs.get_current(no_error=True)
    return DEFAULT_LOCALE if i18n is None else i18n.current_locale


def per_locale(build: Callable[P, T]) -> Callable[P, T]:
    """`functools.cache` for what never changes within one language (keyboards,
    fixed screens): built once per language and arguments."""

    @cache
    def built(locale: str, *args: Any) -> T:
        return build(*args)  # type: ignore[call-arg]

    @wraps(build)
    def cached(*args: P.args, **kwargs: P.kwargs) -> T:
        return built(current_locale(), *args)

    cached.cache_clear = built.cache_clear  # type: ignore[attr-defined]
    return cached


# -- the catalogs -----------------------------------------------------------------


@cache
def compiled(path: Path, domain: str) -> dict[str, gettext.GNUTranslations]:
    """Every catalog under `path`, compiled by Babel (fuzzy entries left out),
    once per process."""
    found = {}
    for po in sorted(path.glob(f"*/LC_MESSAGES/{domain}.po")):
        locale = po.parents[1].name
        with po.open("rb") as file:
            catalog = read_po(file, locale=locale, domain=domain)
        mo = BytesIO()
        write_mo(mo, catalog)
        mo.seek(0)
        found[locale] = gettext.GNUTranslations(mo)
    return found


class Catalogs(I18n):
    """aiogram's I18n, reading the .po catalogs themselves (compiled at start)."""

    def __init__(self, path: Path = CATALOGS) -> None:
        super().__init__(path=path, default_locale=DEFAULT_LOCALE, domain=DOMAIN)

    def find_locales(self) -> dict[str, gettext.GNUTranslations]:
        return compiled(self.path, self.domain)


def language_name(locale: str) -> str:
    """A language's name in itself, as Babel's CLDR data writes it: "English", "Русский"."""
    name = Locale.parse(locale).get_display_name(locale) or locale
    return name[:1].upper() + name[1:]


class LocaleMiddleware(I18nMiddleware):
    """Sets the update's language, and its amounts' format (`currencies` in the
    handler data is the configured one, written as that language writes numbers).

    Registered as an outer middleware of every event (before the filters and a
    press's answer: the language from the replica's memory or Telegram's) and
    again as an inner one of messages and presses after `SnapshotMiddleware`
    (the language of the snapshot the update holds)."""

    def __init__(self, i18n: Catalogs, snapshots: SnapshotCache, currencies: Currencies) -> None:
        super().__init__(i18n)
        self.snapshots = snapshots
        self.currencies = currencies

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        snapshot: UserSnapshot | None = data.get("snapshot")
        user: User | None = data.get("event_from_user")
        if snapshot is None and user is not None:
            snapshot = self.snapshots.cached_locally(user.id)  # memory only: no I/O
        if snapshot is not None:
            chosen = snapshot.locale or snapshot.language_code
        else:
            chosen = user.language_code if user is not None else None
        locale = locale_for(chosen)
        # Amounts are written the way the language writes numbers.
        data["currencies"] = self.currencies.in_locale(locale)
        return locale


def install_i18n(dispatcher: Dispatcher, snapshots: SnapshotCache, currencies: Currencies) -> None:
    """The catalogs (kept as `dispatcher["i18n"]`) and the language of every
    update; call after `SnapshotMiddleware` is registered."""
    i18n = Catalogs()
    dispatcher["i18n"] = i18n
    locale = LocaleMiddleware(i18n, snapshots, currencies)
    locale.setup(dispatcher)  # outer: every event type, errors included
    dispatcher.message.middleware(locale)
    dispatcher.callback_query.middleware(locale)


async def set_command_menus(
    bot: Bot, i18n: Catalogs, commands: tuple[tuple[str, str], ...]
) -> None:
    """The command menu: English by default, and one per other language for
    users whose Telegram speaks it (Telegram picks by language_code)."""
    for locale in LANGUAGES:
        menu = [
            BotCommand(command=name, description=i18n.gettext(said, locale=locale))
            for name, said in commands
        ]
        language = None if locale == DEFAULT_LOCALE else locale
        await bot.set_my_commands(menu, language_code=language)
