"""The new-deal wizard: role, counterparty, currency, amount, description, confirm.

The steps live in the FSM (aiogram's RedisStorage), so any replica can take the
next message. Typed steps are routed by state; a button press does not preload
the state (see `ButtonsSkipStateMiddleware`), so each wizard button names its
step in its callback data and checks the stored state itself: a button from an
earlier screen, or from a wizard that has ended, changes nothing.

A wizard has an id (`key`, drawn at its first step), the idempotency key of
its Create: the wizard stays at its last step until the deal is committed, so
a Create whose outcome is unknown (the connection died at COMMIT) can be
pressed again and finds the deal instead of making a second one. A finished
wizard keeps its id in the FSM data, so a Cancel pressed later shows the deal
it made.
"""

from __future__ import annotations

import logging
import secrets
from html import escape
from typing import NamedTuple

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardMarkup,
    Message,
)
from aiogram.utils.deep_linking import create_start_link
from sqlalchemy.exc import SQLAlchemyError

from bot.services import Services
from bot.services.errors import EscrowError
from bot.services.money import Currencies
from bot.services.settings import EscrowSettings
from bot.services.views import DealView
from bot.telegram import keyboards, texts
from bot.telegram.freshness import DealVersions
from bot.telegram.fsm import enter
from bot.telegram.handlers import wizard_screens as screens
from bot.telegram.handlers.committed import (
    close_form,
    pressed_message,
    show_and_notify,
    show_result,
)
from bot.telegram.handlers.deals import show_committed_card
from bot.telegram.i18n import _
from bot.telegram.keyboards import Nav, Signer
from bot.telegram.notices import NoticeSender
from bot.telegram.refusals import refusal_keyboard, refusal_text
from cache.snapshots import UserSnapshot

log = logging.getLogger(__name__)

# A create that fails with these may or may not have committed (the
# connection died at COMMIT, a timeout): its outcome is unknown.
UNKNOWN_OUTCOME = (SQLAlchemyError, OSError)


def new_wizard_key() -> str:
    return secrets.token_urlsafe(16)


class WizardDeal(NamedTuple):
    key: str
    deal: DealView


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
    return WizardDeal(key, made.deal) if made is not None else None


async def _show(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> None:
    """The next screen in place of the pressed message (a new one if it is too old)."""
    if isinstance(query.message, Message):
        await query.message.edit_text(text, reply_markup=markup)
    elif query.bot is not None:
        await query.bot.send_message(query.from_user.id, text, reply_markup=markup)


async def _at_step(
    query: CallbackQuery,
    state: FSMContext,
    step: State,
    currencies: Currencies,
    settings: EscrowSettings,
) -> bool:
    """True when the wizard waits for this button; otherwise say why it does nothing."""
    current = await state.get_state()
    if current == step.state:
        return True
    await _not_at_step(query, state, current, currencies, settings)
    return False


async def _not_at_step(
    query: CallbackQuery,
    state: FSMContext,
    current: str | None,
    currencies: Currencies,
    settings: EscrowSettings,
) -> None:
    """A button of another step, or of a wizard that ended. At another step, the
    step the wizard is at is shown again: this very press may have moved it
    there on a replica that died before showing it (Telegram posts it again)."""
    if query.bot is None:
        return
    if current not in screens.NewDeal:
        await query.bot.send_message(
            query.from_user.id, _(screens.EXPIRED), reply_markup=screens.expired_keyboard()
        )
        return
    screen = screens.step_screen(
        current, await state.get_data(), currencies, settings.description_max_length
    )
    if screen is None:
        await query.bot.send_message(query.from_user.id, _(screens.EARLIER_STEP))
        return
    text, markup = screen
    await query.bot.send_message(
        query.from_user.id, f"{_(screens.EARLIER_STEP)}\n\n{text}", reply_markup=markup
    )


# -- entry and leaving --------------------------------------------------------------


async def new_command(message: Message, state: FSMContext) -> None:
    await enter(state, screens.NewDeal.role, {})
    text, markup = screens.role_screen()
    await message.answer(text, reply_markup=markup)


async def new_button(query: CallbackQuery, state: FSMContext) -> None:
    await enter(state, screens.NewDeal.role, {})
    await _show(query, *screens.role_screen())


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
            query.from_user.id, _(screens.EXPIRED), reply_markup=screens.expired_keyboard()
        )
        return
    await state.clear()
    await _show(query, _(texts.CANCELLED), keyboards.back_to_menu())


async def show_made(
    state: FSMContext,
    current: str | None,
    made: WizardDeal,
    viewer: UserSnapshot,
    currencies: Currencies,
    signer: Signer,
    bot: Bot,
    query: CallbackQuery | None = None,
) -> None:
    """A cancel of a wizard that had made its deal: it had finished, and the
    deal as it is now (never "nothing was changed")."""
    if current is not None:
        await close_form(state, remember={"key": made.key})
    edit = pressed_message(query) if query is not None else None
    headline = _(texts.WIZARD_FINISHED)
    await show_committed_card(bot, made.deal, viewer, currencies, signer, headline, edit=edit)


# -- 6. confirm ---------------------------------------------------------------------


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
        if made is not None:
            await show_made(state, current, made, snapshot, currencies, signer, bot, query)
        else:
            await _not_at_step(query, state, current, currencies, settings)
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
            query,
            _(screens.NOT_CREATED).format(message=escape(refusal_text(refused, currencies))),
            refusal_keyboard(refused),
        )
        return
    except UNKNOWN_OUTCOME as exc:
        log.warning("create of wizard %s: outcome unknown: %r", data["key"], exc)
        text, markup = screens.summary_screen(data, currencies)
        unconfirmed = f"{_(texts.CREATE_UNCONFIRMED)}\n\n{text}"
        await show_result(bot, snapshot.telegram_id, unconfirmed, markup, edit=summary)
        return
    # Committed. The wizard's id is kept, for a Cancel pressed later.
    await close_form(state, remember={"key": data["key"]})
    deal, invitation = outcome.value.deal, outcome.value.invitation
    deals_seen.note(deal.code, deal.version)
    role = data["role"]
    other = screens.OTHER_ROLE[role]
    label = escape(data["counterparty_label"])
    if invitation is None:
        their_name = deal.seller_name if role == "buyer" else deal.buyer_name
        headline = _(screens.CREATED).format(name=escape(their_name or label))
    elif data["counterparty"] is None:
        headline = _(screens.CREATED_FOR_LINK[other])
    else:
        headline = _(screens.CREATED_FOR_NEWCOMER).format(name=label)
    shown = show_committed_card(bot, deal, snapshot, currencies, signer, headline, edit=summary)
    if invitation is None:
        await show_and_notify(shown, outbox.send(outcome.notices, deal, actor=snapshot))
        return
    await shown
    link = await create_start_link(bot, invitation.code)
    who = (
        _(screens.LINK_FOR_ANYONE[other])
        if data["counterparty"] is None
        else _(screens.LINK_FOR_NEWCOMER).format(name=label)
    )
    text = _(screens.INVITATION_LINK).format(
        invitation=_(screens.INVITATION_FOR[other]),
        link=link,
        expires=texts.when(invitation.expires_at),
        who=who,
    )
    await show_result(bot, snapshot.telegram_id, text)


def router() -> Router:
    router = Router(name="wizard")
    router.message.register(new_command, Command("new", ignore_case=True))
    router.callback_query.register(new_button, Nav.filter(F.to == "new"))
    router.callback_query.register(cancel_button, screens.WizardAct.filter(F.act == "cancel"))
    router.callback_query.register(create, screens.WizardAct.filter(F.act == "create"))
    return router
