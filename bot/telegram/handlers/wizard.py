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
wizard keeps its id in the FSM data, so a Create pressed later shows the deal
it made as created (wizard_created.py), and a Cancel says it had finished.
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
from sqlalchemy.exc import SQLAlchemyError

from bot.services import Services
from bot.services.errors import EscrowError, Paced
from bot.services.money import Currencies
from bot.services.settings import EscrowSettings
from bot.services.views import CreatedDeal, DealView, InvitationView
from bot.telegram import keyboards, texts
from bot.telegram.freshness import DealVersions
from bot.telegram.fsm import enter
from bot.telegram.handlers import wizard_screens as screens
from bot.telegram.handlers.blocked import told_blocked
from bot.telegram.handlers.committed import (
    close_form,
    pressed_message,
    show_and_notify,
    show_result,
)
from bot.telegram.handlers.deals import show_committed_card
from bot.telegram.handlers.wizard_created import created_headline, send_invitation, still_invited
from bot.telegram.i18n import _
from bot.telegram.keyboards import Nav, Signer
from bot.telegram.notices import NoticeSender
from bot.telegram.refusals import refusal_text
from bot.telegram.resolutions import refusal_keyboard
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
    invitation: InvitationView | None = None


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
    return WizardDeal(key, made.deal, made.invitation) if made is not None else None


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


async def new_command(message: Message, state: FSMContext, snapshot: UserSnapshot) -> None:
    if await told_blocked(message, snapshot):
        return
    await enter(state, screens.NewDeal.role, {})
    text, markup = screens.role_screen()
    await message.answer(text, reply_markup=markup)


async def new_button(query: CallbackQuery, state: FSMContext, snapshot: UserSnapshot) -> None:
    if await told_blocked(pressed_message(query), snapshot):
        return
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
    headline: str | None = None,
) -> None:
    """The deal a wizard that had finished made, as it is now (never "nothing
    was changed"): for a cancel, it had finished; for a Create, `headline`."""
    if current is not None:
        await close_form(state, remember={"key": made.key})
    edit = pressed_message(query) if query is not None else None
    headline = headline or _(texts.WIZARD_FINISHED)
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
        if made is None:
            await _not_at_step(query, state, current, currencies, settings)
            return
        created = CreatedDeal(made.deal, made.invitation)  # shown as the success it was
        headline = created_headline(created, snapshot.id)
        await show_made(state, current, made, snapshot, currencies, signer, bot, query, headline)
        if still_invited(created):  # its first reply may never have arrived
            await send_invitation(bot, snapshot, created, currencies)
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
    except Paced as refused:
        # Over a limit for a while only: the form stays, to be created then.
        text, markup = screens.summary_screen(data, currencies)
        said = escape(refusal_text(refused, currencies))
        await _show(query, f"⚠️ {said}\n\n{_(texts.FORM_KEPT)}\n\n{text}", markup)
        return
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
    router = Router(name="wizard")
    router.message.register(new_command, Command("new", ignore_case=True))
    router.callback_query.register(new_button, Nav.filter(F.to == "new"))
    router.callback_query.register(cancel_button, screens.WizardAct.filter(F.act == "cancel"))
    router.callback_query.register(create, screens.WizardAct.filter(F.act == "create"))
    return router
