"""Time in words, as the reader's language says it: a moment, a span, how long ago."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from babel.dates import format_datetime

from bot.telegram.i18n import _, current_locale, ngettext


def when(moment: datetime) -> str:
    """A moment as the reader's language writes it, in UTC: "06 Dec 2026, 14:00 UTC"."""
    return format_datetime(moment, "dd MMM y, HH:mm 'UTC'", tzinfo=UTC, locale=current_locale())


def ago(moment: datetime, now: datetime) -> str:
    """How long before `now`, in the largest whole unit: "3 days ago"."""
    seconds = max(0, int((now - moment).total_seconds()))
    for size, said in AGO:
        if seconds >= size:
            count = seconds // size
            return said(count).format(count=count)
    return _("just now")


# Each unit with its plural forms (Russian has three: 1 день, 3 дня, 5 дней).
AGO: tuple[tuple[int, Callable[[int], str]], ...] = (
    (365 * 86400, lambda n: ngettext("{count} year ago", "{count} years ago", n)),
    (30 * 86400, lambda n: ngettext("{count} month ago", "{count} months ago", n)),
    (86400, lambda n: ngettext("{count} day ago", "{count} days ago", n)),
    (3600, lambda n: ngettext("{count} hour ago", "{count} hours ago", n)),
    (60, lambda n: ngettext("{count} minute ago", "{count} minutes ago", n)),
)


def duration(value: timedelta) -> str:
    """A span in words, rounded up to the minute: "1 min", "2 h 5 min", "3 h"."""
    minutes = max(1, math.ceil(value.total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return _("{minutes} min").format(minutes=minutes)
    if minutes:
        return _("{hours} h {minutes} min").format(hours=hours, minutes=minutes)
    return _("{hours} h").format(hours=hours)
