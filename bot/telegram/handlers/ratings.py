"""Rating a completed deal, and the profile.

A completed deal's card (and the message or notification that completed it)
carries 1 to 5 stars for each party: a press rates the other party at once
(one statement), and offers a short review, typed as one message. Star
buttons are signed for their viewer like a deal's actions: a forged or
someone else's button gets an alert before any I/O. A rating made already
(a double press, a second rating, a press delivered again) is shown as the
success it was. The profile shows the user's record from their snapshot and
the reviews they received (one indexed read).
"""

from __future__ import annotations

import logging

from aiogram import Bot, F, Router
from aiogram.filters import Filter, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot.services import Services
from bot.services.errors import NotAllowed, NotFound, WrongState
from bot.services.money import Currencies
from bot.telegram import keyboards, reputation, texts
from bot.telegram.filters import NotACommand
from bot.telegram.fsm import enter
from bot.telegram.handlers.committed import close_form, pressed_message
from bot.telegram.handlers.deals import show_committed_card
from bot.telegram.handlers.wallet import edit
from bot.telegram.i18n import _
from bot.telegram.keyboards import Nav, RateDeal, Signer
from cache.snapshots import UserSnapshot

log = logging.getLogger(__name__)


class RatingForm(StatesGroup):
    review = State()


class SignedRating(Filter):
    """The star button was made by this bot for this very viewer."""

    async def __call__(self, query: CallbackQuery, callback_data: RateDeal, signer: Signer) -> bool:
        return signer.valid_rating(query.from_user.id, callback_data)


async def rate(
    query: CallbackQuery,
    callback_data: RateDeal,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    signer: Signer,
    state: FSMContext,
    bot: Bot,
) -> None:
    card = pressed_message(query)
    if callback_data.stars == 0:  # a review of the rating given
        await enter(state, RatingForm.review, {"code": callback_data.code})
        if card is not None:
            await card.answer(reputation.review_ask(callback_data.code))
        return
    outcome = await services.ratings.rate(snapshot, callback_data.code, callback_data.stars)
    # Committed, or given before: either way the rating as it stands.
    rating = outcome.value
    headline = reputation.rated_headline(rating, snapshot.id)
    await show_committed_card(
        bot, rating.deal, snapshot, currencies, signer, headline, edit=card, given=rating
    )


async def forged_rating(query: CallbackQuery, callback_data: RateDeal) -> None:
    log.warning("refused a forged rating button from %s: %s", query.from_user.id, query.data)


async def review(
    message: Message,
    state: FSMContext,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    signer: Signer,
    bot: Bot,
) -> None:
    if not message.text:
        await message.answer(_(reputation.REVIEW_NOT_TEXT))
        return
    code = (await state.get_data())["code"]
    try:
        # Too long or empty raises InvalidInput: the user is told, nothing is
        # stored and the form stays, so the next message is tried again.
        outcome = await services.ratings.review(snapshot, code, message.text)
    except (NotFound, NotAllowed, WrongState):
        await close_form(state)  # nothing to review here: the form is done
        raise
    rating = outcome.value
    headline = reputation.reviewed_headline(rating)
    reply = texts.deal_card(rating.deal, snapshot.id, currencies, headline, given=rating)
    await close_form(state, finished_by=message, reply=reply)
    await show_committed_card(
        bot, rating.deal, snapshot, currencies, signer, headline, edit=None, given=rating
    )


async def profile(
    query: CallbackQuery, snapshot: UserSnapshot, services: Services, currencies: Currencies
) -> None:
    # the record is the snapshot's (no SQL); the reviews are one indexed read
    reviews = await services.ratings.reviews_of(snapshot)
    if isinstance(query.message, Message):
        text = reputation.profile(snapshot, currencies, reviews)
        await edit(query.message, text, keyboards.back_to_menu())


def router() -> Router:
    router = Router(name="ratings")
    router.callback_query.register(rate, RateDeal.filter(), SignedRating())
    router.callback_query.register(
        forged_rating,
        RateDeal.filter(),
        flags={"callback_answer": {"text": texts.FORGED_BUTTON, "show_alert": True}},
    )
    router.message.register(review, StateFilter(RatingForm.review), NotACommand())
    router.callback_query.register(profile, Nav.filter(F.to == "profile"))
    return router
