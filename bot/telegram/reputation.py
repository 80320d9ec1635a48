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

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from bot.services.deals.standing import is_completed
from bot.services.money import Currencies, Currency, format_minor_units
from bot.services.ratings import Rating, Review
from bot.services.rules import Action, allowed_actions, is_party
from bot.services.views import DealView
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
ADD_REVIEW = "✍️ Add a short review"
PROFILE = "⭐ My profile"


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
    return format_minor_units(amount, money.decimals).removesuffix(".00")


def volume_band(volume: int, money: Currency) -> str:
    """ "under 100 USDT", "1,000–10,000 USDT", "over 100,000 USDT"."""
    edges = [money.min_amount * multiple for multiple in BANDS]
    if volume < edges[0]:
        return f"under {_whole(edges[0], money)} {money.code}"
    for low, high in itertools.pairwise(edges):
        if volume < high:
            return f"{_whole(low, money)}–{_whole(high, money)} {money.code}"
    return f"over {_whole(edges[-1], money)} {money.code}"


def display_name(user: UserSnapshot) -> str:
    return escape(f"@{user.username}" if user.username else user.first_name)


def _month(since: int) -> str:
    return datetime.fromtimestamp(since, UTC).strftime("%b %Y")


def _deals(record: ReputationSnapshot, volumes: list[str]) -> str:
    if not record.deals:
        return "🆕 No completed deals yet"
    done = f"✅ {record.deals} completed deal{'s' if record.deals != 1 else ''}"
    return done + (f" · {', '.join(volumes)} traded" if volumes else "")


def _ratings(record: ReputationSnapshot) -> str:
    if record.average is None:
        return "⭐ No ratings yet"
    count = f"{record.ratings} rating{'s' if record.ratings != 1 else ''}"
    return f"⭐ {record.average:.1f} from {count}"


def _disputes(record: ReputationSnapshot) -> str:
    if not record.disputes_opened and not record.disputes_lost:
        return "⚖️ No disputes"
    return f"⚖️ Disputes: {record.disputes_opened} opened, {record.disputes_lost} lost"


def record_lines(user: UserSnapshot, volumes: list[str]) -> list[str]:
    record = user.reputation
    return [
        _deals(record, volumes),
        _ratings(record),
        _disputes(record),
        f"📅 On the bot since {_month(record.since)}",
    ]


def record_block(user: UserSnapshot, money: Currency) -> str:
    """Someone's record on a deal's card, the volume in the deal's currency."""
    volume = user.reputation.volume(money.code)
    volumes = [volume_band(volume, money)] if volume else []
    lines = [f"👤 <b>{display_name(user)}'s record</b>", *record_lines(user, volumes)]
    return "\n".join(lines)


def menu_line(user: UserSnapshot) -> str:
    record = user.reputation
    if not record.deals and record.average is None:
        return "⭐ Your record: no completed deals yet"
    done = f"{record.deals} completed deal{'s' if record.deals != 1 else ''}"
    rated = f" · {record.average:.1f}★ ({record.ratings})" if record.average is not None else ""
    return f"⭐ Your record: {done}{rated}"


def profile(user: UserSnapshot, currencies: Currencies, reviews: list[Review] | None) -> str:
    """The profile screen: the user's record in every currency they traded,
    and the latest reviews they received (None: they can't be read now)."""
    volumes = [
        volume_band(volume, currencies[code])
        for code, volume in user.reputation.volumes
        if code in currencies.codes
    ]
    lines = [
        "⭐ <b>Your profile</b>",
        "",
        *record_lines(user, volumes),
        "",
        "<b>Latest reviews</b>",
    ]
    if reviews is None:
        lines.append("<i>Reviews can't be read just now.</i>")
    elif not reviews:
        lines.append("No reviews yet.")
    for review in reviews or ():
        when = review.created_at.strftime("%d %b %Y")
        lines.append(
            f"{stars(review.stars)} {escape(review.rater_name)}, {when}: "
            f"<i>{escape(review.review)}</i>"
        )
    return "\n".join(lines)


# -- rating a completed deal --------------------------------------------------------


def other_name(deal: DealView, viewer_id: int) -> str:
    name = deal.seller_name if viewer_id == deal.buyer_id else deal.buyer_name
    return escape(name or "the other party")


def may_rate(deal: DealView, viewer_id: int | None) -> bool:
    """A party of a completed deal: its card offers the rating."""
    return viewer_id is not None and is_party(deal, viewer_id) and is_completed(deal)


def rating_lines(deal: DealView, viewer_id: int, given: Rating | None) -> list[str]:
    """What a completed deal's card says about the viewer's rating."""
    name = other_name(deal, viewer_id)
    if given is None:
        return [f"⭐ Rate {name}: 1 (poor) to 5 (excellent), once."]
    lines = [f"⭐ Your rating of {name}: {stars(given.stars)}"]
    if given.review is not None:
        lines.append(f"Your review: <i>{escape(given.review)}</i>")
    return lines


def rated_headline(rating: Rating, viewer_id: int) -> str:
    name = other_name(rating.deal, viewer_id)
    if rating.new:
        return f"⭐ Thank you: you rated {name} {stars(rating.stars)}."
    return f"⭐ You rated {name} {stars(rating.stars)} on {rating.rated_at:%d %b %Y}."


def reviewed_headline(rating: Rating) -> str:
    if rating.new:
        return "✅ Your review is saved."
    return "✍️ You had reviewed this deal already; your review stays as you wrote it."


REVIEW_ASK = (
    "✍️ Send your review of deal #{code} in one message, up to {limit} characters.\n"
    "/cancel leaves your rating as it is."
)


def review_ask(code: str) -> str:
    return REVIEW_ASK.format(code=code, limit=REVIEW_LENGTH)


REVIEW_NOT_TEXT = "Please send your review as a text message, or /cancel."
