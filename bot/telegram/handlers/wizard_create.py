"""The new-deal wizard's last step: ✅ Create, and what a finished wizard shows.

Create is idempotent by the wizard's id (wizard.py). A Create pressed again
after its deal was made (a double tap, a slow client's second press, the
press delivered again after its commit to a replica that never replied) is
shown the success it was: the same headline while the deal is as it was
made, and an invitation's link again while it can still be used, as the
first reply may never have arrived. A Cancel pressed after the wizard
finished says so and shows the deal it made.
"""

from __future__ import annotations

import logging
from html import escape
from typing import NamedTuple

from aiogram import Bot, F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery
from aiogram.utils.deep_linking import create_start_link
from sqlalchemy.exc import SQLAlchemyError

from bot.services import Services
from bot.services.errors import EscrowError
from bot.services.money import Currencies
from bot.services.settings import EscrowSettings
from bot.services.views import CreatedDeal, InvitationView
from bot.telegram import keyboards, texts
from bot.telegram.freshness import DealVersions
from bot.telegram.handlers import wizard_screens as screens
from bot.telegram.handlers.committed import (
    close_form,
    pressed_message,
    show_and_notify,
    show_result,
)
from bot.telegram.handlers.deals import show_committed_card
from bot.telegram.handlers.wizard import _not_at_step, _show, new_wizard_key
from bot.telegram.keyboards import Signer
from bot.telegram.notices import NoticeSender
from bot.telegram.refusals import refusal_text
from cache.snapshots import UserSnapshot
from db.models import DealStatus, InvitationStatus

log = logging.getLogger(__name__)

CREATED = "✅ Deal created. {name} can accept it now."
CREATED_FOR_LINK = "✅ Deal created. Send the {other} the invitation link below."
CREATED_FOR_NEWCOMER = (
    "✅ Deal created. {name} isn't on the bot yet: send them the invitation link below."
)
# Create pressed again once the deal has moved on (accepted, cancelled, ...).
CREATED_SINCE = "✅ Deal created. Here it is as it is now."
INVITATION_LINK = (
    "🔗 Invitation for the {other}:\n{link}\n\nIt works once and expires on {expires}. {who}"
)
LINK_FOR_ANYONE = "Whoever opens it first joins the deal as the {other}."
LINK_FOR_NEWCOMER = "Only {name} can use it."
# What the Share button puts next to the link in the chat it is shared to.
SHARE_TEXT = "Escrow deal #{code}: {amount} for “{description}”. Open the link to see it."
SHARED_DESCRIPTION = 100  # characters of the description the shared text quotes
NOT_CREATED = "⚠️ {message}\n\nNo deal was created. Send /new to start again."

# A create that fails with these may or may not have committed (the
# connection died at COMMIT, a timeout): its outcome is unknown.
UNKNOWN_OUTCOME = (SQLAlchemyError, OSError)


class WizardDeal(NamedTuple):
    key: str
    made: CreatedDeal


async def wizard_deal(
    state: FSMContext, current: str | None, creator: UserSnapshot, services: Services
) -> WizardDeal | None:
    """The deal this user's wizard made, if its Create may have been pressed:
    at its last step (an unknown outcome, or Redis failed to forget it) or
    finished (its id is kept). One Redis read, and one SQL read if it has an id."""
    if current is not None and current != screens.NewDeal.confirm.state:
        return None  # before its last step a wizard has made nothing
    key = (await state.get_data()).get("key")
    if not key:
        return None
    made = await services.deals.created_with(creator, key)
    return WizardDeal(key, made) if made is not None else None


def _other(made: CreatedDeal, creator_id: int) -> str:
    return screens.OTHER_ROLE["buyer" if made.deal.buyer_id == creator_id else "seller"]


def _invitee(invitation: InvitationView) -> str:
    if invitation.username:
        return f"@{invitation.username}"
    return screens.TELEGRAM_ID_LABEL.format(telegram_id=invitation.telegram_id)


def _open_link(invitation: InvitationView) -> bool:
    return invitation.telegram_id is None and invitation.username is None


def created_headline(made: CreatedDeal, creator_id: int, label: str | None = None) -> str:
    """What Create says above the card; `label`: how the wizard named the other party."""
    deal, invitation = made.deal, made.invitation
    other = _other(made, creator_id)
    if deal.version > 1:
        return CREATED_SINCE
    if invitation is None:
        their_name = deal.seller_name if other == "seller" else deal.buyer_name
        return CREATED.format(name=escape(their_name or label or other))
    if _open_link(invitation):
        return CREATED_FOR_LINK.format(other=other)
    return CREATED_FOR_NEWCOMER.format(name=escape(label or _invitee(invitation)))


async def send_invitation(
    bot: Bot,
    creator: UserSnapshot,
    made: CreatedDeal,
    currencies: Currencies,
    label: str | None = None,
) -> None:
    """The invitation's link for the creator, with a Share button."""
    deal, invitation = made.deal, made.invitation
    assert invitation is not None
    other = _other(made, creator.id)
    link = await create_start_link(bot, invitation.code)
    who = (
        LINK_FOR_ANYONE.format(other=other)
        if _open_link(invitation)
        else LINK_FOR_NEWCOMER.format(name=escape(label or _invitee(invitation)))
    )
    text = INVITATION_LINK.format(
        other=other, link=link, expires=texts.when(invitation.expires_at), who=who
    )
    shared = SHARE_TEXT.format(
        code=deal.code,
        amount=currencies[deal.currency].format(deal.amount),
        description=texts.shorten(deal.description, SHARED_DESCRIPTION),
    )
    await show_result(bot, creator.telegram_id, text, keyboards.share_keyboard(link, shared))


def still_invited(made: CreatedDeal) -> bool:
    """The deal still waits for its invitee, and its link still works."""
    invitation = made.invitation
    return (
        invitation is not None
        and invitation.status == InvitationStatus.ACTIVE
        and made.deal.status == DealStatus.PENDING
    )


async def show_made(
    state: FSMContext,
    current: str | None,
    made: WizardDeal,
    viewer: UserSnapshot,
    currencies: Currencies,
    signer: Signer,
    bot: Bot,
    query: CallbackQuery | None = None,
    headline: str = texts.WIZARD_FINISHED,
) -> None:
    """The deal a finished wizard made, as it is now (never "nothing was
    changed"); by default, for a Cancel: the wizard had finished."""
    if current is not None:
        await close_form(state, remember={"key": made.key})
    edit = pressed_message(query) if query is not None else None
    await show_committed_card(bot, made.made.deal, viewer, currencies, signer, headline, edit=edit)


async def cancel_button(
    query: CallbackQuery,
    state: FSMContext,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    signer: Signer,
    bot: Bot,
) -> None:
    current = await state.get_state()
    made = await wizard_deal(state, current, snapshot, services)
    if made is not None:
        await show_made(state, current, made, snapshot, currencies, signer, bot, query)
        return
    if current not in screens.NewDeal:
        await bot.send_message(
            query.from_user.id, screens.EXPIRED, reply_markup=screens.expired_keyboard()
        )
        return
    await state.clear()
    await _show(query, texts.CANCELLED, keyboards.back_to_menu())


async def create(
    query: CallbackQuery,
    state: FSMContext,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    settings: EscrowSettings,
    signer: Signer,
    deals_seen: DealVersions,
    bot: Bot,
    outbox: NoticeSender,
) -> None:
    current = await state.get_state()
    if current != screens.NewDeal.confirm.state:
        # Finished already: by this press on a replica that died before replying
        # (Telegram posts it again), or by a first press of a double one.
        made = await wizard_deal(state, current, snapshot, services)
        if made is None:
            await _not_at_step(query, state, current, currencies, settings)
            return
        headline = created_headline(made.made, snapshot.id)
        await show_made(state, current, made, snapshot, currencies, signer, bot, query, headline)
        if still_invited(made.made):
            await send_invitation(bot, snapshot, made.made, currencies)
        return
    data = await state.get_data()
    if not data.get("key"):  # a wizard started before wizards had ids
        data = {**data, "key": new_wizard_key()}
        await state.set_data(data)
    summary = pressed_message(query)
    # The wizard stays at this step until the deal is committed: a second
    # press runs after this one (one user's updates take the user's lock,
    # PressLock) and the key keeps it from making a second deal even without it.
    try:
        outcome = await services.deals.create(
            snapshot,
            role=data["role"],
            currency=data["currency"],
            amount=data["amount"],
            description=data["description"],
            counterparty=screens.chosen_counterparty(data),
            create_key=data["key"],
        )
    except EscrowError as refused:
        await state.clear()
        await _show(
            query, NOT_CREATED.format(message=escape(refusal_text(refused, currencies))), None
        )
        return
    except UNKNOWN_OUTCOME as exc:
        log.warning("create of wizard %s: outcome unknown: %r", data["key"], exc)
        text, markup = screens.summary_screen(data, currencies)
        unconfirmed = f"{texts.CREATE_UNCONFIRMED}\n\n{text}"
        await show_result(bot, snapshot.telegram_id, unconfirmed, markup, edit=summary)
        return
    # Committed. The wizard's id is kept, for a Create or Cancel pressed later.
    await close_form(state, remember={"key": data["key"]})
    made, label = outcome.value, data["counterparty_label"]
    deal = made.deal
    deals_seen.note(deal.code, deal.version)
    headline = created_headline(made, snapshot.id, label)
    shown = show_committed_card(bot, deal, snapshot, currencies, signer, headline, edit=summary)
    if made.invitation is None:
        await show_and_notify(shown, outbox.send(outcome.notices, deal, actor=snapshot))
        return
    await shown
    if still_invited(made):
        await send_invitation(bot, snapshot, made, currencies, label)


def router() -> Router:
    router = Router(name="wizard_create")
    router.callback_query.register(cancel_button, screens.WizardAct.filter(F.act == "cancel"))
    router.callback_query.register(create, screens.WizardAct.filter(F.act == "create"))
    return router
