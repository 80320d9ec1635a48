"""A user's record as the bot shows it, and what a completed deal's rating says.

The record is shown before the viewer accepts or funds a deal (its card, the
invitation, the notifications that ask them to), as one line in the menu and
on the profile screen. It comes from the user's snapshot
(`cache.snapshots.ReputationSnapshot`), read through the cache like the
caller's own: no SQL on a cache hit. A record that can't be read just now is
left out, never guessed.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from html import escape
from typing import Protocol

from babel.dates import format_date
from babel.numbers import format_decimal
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from bot.services.deals.standing import is_completed
from bot.services.money import Currencies, Currency, format_minor_units, number_symbols
from bot.services.ratings import Rating, Review
from bot.services.rules import Action, allowed_actions, is_party
from bot.services.views import DealView
from bot.telegram.i18n import N_, _, current_locale, ngettext
from cache.snapshots import ReputationSnapshot, UserSnapshot
from db.models import REVIEW_LENGTH
from db.sql.notifications import Notice

log = logging.getLogger(__name__)

# Volume is shown in bands, never exactly: multiples of the currency's
# smallest deal (for USDT, whose smallest deal is 1.00: under 100, 100–1,000,
# 1,000–10,000, 10,000–100,000 and over 100,000 USDT).
BANDS = (100, 1_000, 10_000, 100_000)
# What a viewer is shown someone's record before doing.
JUDGED_BEFORE = frozenset({Action.ACCEPT, Action.FUND})

STAR_LABELS = {stars: f"{stars}⭐" for stars in range(1, 6)}
ADD_REVIEW = N_("✍️ Add a short review")
PROFILE = N_("⭐ My profile")


class SnapshotReader(Protocol):
    async def get(self, telegram_id: int) -> UserSnapshot | None: ...


# -- whose record, and reading it ------------------------------------------------------


def judged(deal: DealView, viewer_id: int) -> int | None:
    """The Telegram id of the party whose record `viewer_id` sees on `deal`:
    the other party, while the viewer is to accept or fund it."""
    if not JUDGED_BEFORE.intersection(allowed_actions(deal, viewer_id)):
        return None
    return deal.seller_telegram_id if viewer_id == deal.buyer_id else deal.buyer_telegram_id


def creator_telegram_id(deal: DealView) -> int | None:
    """Whom someone invited to `deal` is judging: its creator."""
    if deal.creator_id == deal.buyer_id:
        return deal.buyer_telegram_id
    return deal.seller_telegram_id


async def read_record(
    snapshots: SnapshotReader | None, telegram_id: int | None
) -> UserSnapshot | None:
    """Someone's snapshot for their record, or None (nobody to judge, or it
    can't be read just now: the screen goes without it)."""
    if snapshots is None or telegram_id is None:
        return None
    try:
        return await snapshots.get(telegram_id)
    except (SQLAlchemyError, RedisError, OSError) as exc:
        log.warning("the record of %s was not read: %s", telegram_id, exc)
        return None


async def record_for(
    deal: DealView, viewer_id: int, snapshots: SnapshotReader | None
) -> UserSnapshot | None:
    """The other party's snapshot if `viewer_id` is to accept or fund `deal`."""
    return await read_record(snapshots, judged(deal, viewer_id))


async def records_for(
    notices: Iterable[Notice],
    deals: Mapping[int, DealView],
    snapshots: SnapshotReader | None,
    known: Mapping[int, UserSnapshot],
) -> dict[int, UserSnapshot]:
    """The records `notices` show (by Telegram id): those in `known` (the
    actor's own snapshot, in hand), the others read through the cache."""
    records = dict(known)
    for notice in notices:
        deal = deals.get(notice.escrow_id or 0)
        if deal is None or notice.user_id is None:
            continue
        wanted = judged(deal, notice.user_id)
        if wanted is not None and wanted not in records:
            snapshot = await read_record(snapshots, wanted)
            if snapshot is not None:
                records[wanted] = snapshot
    return records


# -- words ------------------------------------------------------------------------------


def stars(count: int) -> str:
    return "★" * count + "☆" * (5 - count)


def _whole(amount: int, money: Currency) -> str:
    mark = number_symbols(money.locale)[1]
    return format_minor_units(amount, money.decimals, money.locale).removesuffix(mark + "00")


def volume_band(volume: int, money: Currency) -> str:
    """ "under 100 USDT", "1,000–10,000 USDT", "over 100,000 USDT"."""
    edges = [money.min_amount * multiple for multiple in BANDS]
    if volume < edges[0]:
        return _("under {amount} {code}").format(amount=_whole(edges[0], money), code=money.code)
    for low, high in itertools.pairwise(edges):
        if volume < high:
            return f"{_whole(low, money)}–{_whole(high, money)} {money.code}"
    return _("over {amount} {code}").format(amount=_whole(edges[-1], money), code=money.code)


def display_name(user: UserSnapshot) -> str:
    return escape(f"@{user.username}" if user.username else user.first_name)


def _month(since: int) -> str:
    moment = datetime.fromtimestamp(since, UTC)
    return format_date(moment, "LLL y", locale=current_locale())  # "Mar 2026", "март 2026"


def _average(record: ReputationSnapshot) -> str:
    return format_decimal(record.average or 0, format="0.0", locale=current_locale())


def _deals(record: ReputationSnapshot, volumes: list[str]) -> str:
    if not record.deals:
        return _("🆕 No completed deals yet")
    done = ngettext("✅ {count} completed deal", "✅ {count} completed deals", record.deals)
    done = done.format(count=record.deals)
    if not volumes:
        return done
    return done + _(" · {volumes} traded").format(volumes=", ".join(volumes))


def _ratings(record: ReputationSnapshot) -> str:
    if record.average is None:
        return _("⭐ No ratings yet")
    return ngettext(
        "⭐ {average} from {count} rating", "⭐ {average} from {count} ratings", record.ratings
    ).format(average=_average(record), count=record.ratings)


def _disputes(record: ReputationSnapshot) -> str:
    if not record.disputes_opened and not record.disputes_lost:
        return _("⚖️ No disputes")
    return _("⚖️ Disputes: {opened} opened, {lost} lost").format(
        opened=record.disputes_opened, lost=record.disputes_lost
    )


def record_lines(user: UserSnapshot, volumes: list[str]) -> list[str]:
    record = user.reputation
    return [
        _deals(record, volumes),
        _ratings(record),
        _disputes(record),
        _("📅 On the bot since {month}").format(month=_month(record.since)),
    ]


def record_block(user: UserSnapshot, money: Currency) -> str:
    """Someone's record on a deal's card, the volume in the deal's currency."""
    volume = user.reputation.volume(money.code)
    volumes = [volume_band(volume, money)] if volume else []
    title = _("👤 <b>{name}'s record</b>").format(name=display_name(user))
    lines = [title, *record_lines(user, volumes)]
    return "\n".join(lines)


def menu_line(user: UserSnapshot) -> str:
    record = user.reputation
    if not record.deals and record.average is None:
        return _("⭐ Your record: no completed deals yet")
    done = ngettext("{count} completed deal", "{count} completed deals", record.deals)
    rated = f" · {_average(record)}★ ({record.ratings})" if record.average is not None else ""
    return _("⭐ Your record: {deals}").format(deals=done.format(count=record.deals)) + rated


def profile(user: UserSnapshot, currencies: Currencies, reviews: list[Review] | None) -> str:
    """The profile screen: the user's record in every currency they traded,
    and the latest reviews they received (None: they can't be read now)."""
    volumes = [
        volume_band(volume, currencies[code])
        for code, volume in user.reputation.volumes
        if code in currencies.codes
    ]
    lines = [
        _("⭐ <b>Your profile</b>"),
        "",
        *record_lines(user, volumes),
        "",
        _("<b>Latest reviews</b>"),
    ]
    if reviews is None:
        lines.append(_("<i>Reviews can't be read just now.</i>"))
    elif not reviews:
        lines.append(_("No reviews yet."))
    for review in reviews or ():
        when = _day(review.created_at)
        lines.append(
            f"{stars(review.stars)} {escape(review.rater_name)}, {when}: "
            f"<i>{escape(review.review)}</i>"
        )
    return "\n".join(lines)


# -- rating a completed deal --------------------------------------------------------


def other_name(deal: DealView, viewer_id: int) -> str:
    name = deal.seller_name if viewer_id == deal.buyer_id else deal.buyer_name
    return escape(name or _("the other party"))


def may_rate(deal: DealView, viewer_id: int | None) -> bool:
    """A party of a completed deal: its card offers the rating."""
    return viewer_id is not None and is_party(deal, viewer_id) and is_completed(deal)


def rating_lines(deal: DealView, viewer_id: int, given: Rating | None) -> list[str]:
    """What a completed deal's card says about the viewer's rating."""
    name = other_name(deal, viewer_id)
    if given is None:
        return [_("⭐ Rate {name}: 1 (poor) to 5 (excellent), once.").format(name=name)]
    lines = [_("⭐ Your rating of {name}: {stars}").format(name=name, stars=stars(given.stars))]
    if given.review is not None:
        lines.append(_("Your review: <i>{review}</i>").format(review=escape(given.review)))
    return lines


def rated_headline(rating: Rating, viewer_id: int) -> str:
    name = other_name(rating.deal, viewer_id)
    if rating.new:
        return _("⭐ Thank you: you rated {name} {stars}.").format(
            name=name, stars=stars(rating.stars)
        )
    return _("⭐ You rated {name} {stars} on {day}.").format(
        name=name, stars=stars(rating.stars), day=_day(rating.rated_at)
    )


def reviewed_headline(rating: Rating) -> str:
    if rating.new:
        return _("✅ Your review is saved.")
    return _("✍️ You had reviewed this deal already; your review stays as you wrote it.")


REVIEW_ASK = N_(
    "✍️ Send your review of deal #{code} in one message, up to {limit} characters.\n"
    "/cancel leaves your rating as it is."
)


def review_ask(code: str) -> str:
    return _(REVIEW_ASK).format(code=code, limit=REVIEW_LENGTH)


REVIEW_NOT_TEXT = N_("Please send your review as a text message, or /cancel.")


def _day(moment: datetime) -> str:
    return format_date(moment, "dd MMM y", locale=current_locale())  # "06 Dec 2026"
