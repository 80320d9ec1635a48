"""Ratings: after a completed deal each party rates the other once, 1 to 5
stars, and may add one short review; and the reviews a user received.

A rating is one statement (`db.sql.ratings.RATE_DEAL`): the rating, the rated
user's counters and their snapshot's version, guarded by the unique index on
(deal, rater); a second rating, a double press or a press delivered again,
finds the first and changes nothing, and is handed back as the success it was
(`Rating.new` false), never as a refusal. The record the counters make is
read from the user's snapshot (`cache.snapshots.ReputationSnapshot`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from bot.services.base import Actor, Outcome, Service
from bot.services.deals import bounded_text, normalise_code
from bot.services.errors import InvalidInput, NotFound, Refusal, UserBlocked, WrongState
from bot.services.views import DealView, deal_view
from db import UnitOfWork
from db.events import UserChanged
from db.models import REVIEW_LENGTH, DealStatus, UserStatus
from db.sql.ratings import ADD_REVIEW, RATE_DEAL, REVIEWS_OF

STARS = range(1, 6)
REVIEWS_SHOWN = 3


class Rating(msgspec.Struct, frozen=True):
    """A party's rating of the other party of `deal`, as it is stored."""

    deal: DealView
    rated_id: int
    stars: int
    review: str | None
    rated_at: datetime
    new: bool  # given by this request; False: given before, found now

    @property
    def rated_name(self) -> str | None:
        deal = self.deal
        return deal.seller_name if self.rated_id == deal.seller_id else deal.buyer_name


class Review(msgspec.Struct, frozen=True):
    """A review someone received."""

    stars: int
    review: str
    created_at: datetime
    rater_name: str


class RatingService(Service):
    async def rate(self, rater: Actor, code: str, stars: int) -> Outcome[Rating]:
        """Rate the other party of the completed deal `code` with `stars`."""
        if not isinstance(stars, int) or stars not in STARS:
            raise InvalidInput(Refusal.RATING_STARS)
        params = {"code": normalise_code(code), "rater_id": rater.id, "stars": stars}

        async def work(uow: UnitOfWork) -> Rating:
            # A rating committed by a concurrent request after this statement's
            # snapshot is neither inserted nor seen: the next statement sees it.
            for _ in range(2):
                row = (await uow.execute(RATE_DEAL, params)).first()
                rating = self._found(row, params["code"])
                if rating is not None:
                    if row.bumped_id is not None:  # the rated user's record changed
                        rated = UserChanged(
                            row.bumped_id, row.bumped_telegram_id, row.bumped_version
                        )
                        uow.record(rated)
                    return rating
            raise WrongState(Refusal.CHANGED_MEANWHILE, deal=params["code"])

        return await self.transaction(work)

    async def review(self, rater: Actor, code: str, review: str) -> Outcome[Rating]:
        """Add a short review to the rating `rater` gave the deal `code`, once.
        Too long or empty: refused, nothing stored."""
        review = bounded_text(review, REVIEW_LENGTH, "review")
        params = {"code": normalise_code(code), "rater_id": rater.id, "review": review}

        async def work(uow: UnitOfWork) -> Rating:
            for _ in range(2):
                row = (await uow.execute(ADD_REVIEW, params)).first()
                rating = self._found(row, params["code"])
                if rating is None:
                    current = deal_view(row)
                    raise WrongState(Refusal.NOT_RATED, current=current, deal=params["code"])
                if rating.new or rating.review is not None:
                    return rating
                # reviewed by a concurrent request this statement could not see
            raise WrongState(Refusal.CHANGED_MEANWHILE, deal=params["code"])

        return await self.transaction(work)

    async def reviews_of(self, user: Actor, limit: int = REVIEWS_SHOWN) -> list[Review]:
        """The latest reviews `user` received, newest first (one indexed read)."""
        async with self.ctx.db.reader.connect() as conn:
            rows = await conn.execute(REVIEWS_OF, {"user_id": user.id, "limit": limit})
            return [Review(**row._mapping) for row in rows]

    @staticmethod
    def _found(row: Any, code: str) -> Rating | None:
        """The rating a RATE_DEAL or ADD_REVIEW row shows, None if there is
        none to see; refuses what may not be rated."""
        if row is None:
            raise NotFound(Refusal.NO_SUCH_DEAL)
        if row.rater_status != UserStatus.ACTIVE:
            raise UserBlocked(Refusal.ACCOUNT_BLOCKED)
        deal = deal_view(row)
        if not row.completed:
            raise WrongState(
                Refusal.NOT_COMPLETED, current=deal, deal=code, status=DealStatus(deal.status)
            )
        if row.stars is None:
            return None
        return Rating(deal, row.rated_id, row.stars, row.review, row.rated_at, row.new)
