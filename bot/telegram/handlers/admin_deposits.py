"""The admin panel's deposits credited by hand: whose (a Telegram id), the
currency, the amount, then its confirmation; the user is told."""

from __future__ import annotations

import logging
from html import escape

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import I18n

from bot.services import Services
from bot.services.money import Currencies
from bot.telegram import texts
from bot.telegram.filters import NotACommand
from bot.telegram.fsm import enter
from bot.telegram.handlers.admin import (
    AdminCredit,
    AdminForm,
    AdminPanel,
    admin_router,
    cancel_keyboard,
    home_keyboard,
    home_text,
)
from bot.telegram.handlers.committed import read_after_commit, show_result
from bot.telegram.handlers.wallet import (
    balances_text,
    bounds,
    edit,
    typed_amount,
    wallet_keyboard,
)
from bot.telegram.i18n import _, locale_of
from bot.telegram.keyboards import Keyboard
from cache.snapshots import UserSnapshot
from cache.store import SnapshotCache

log = logging.getLogger(__name__)


# -- deposits by hand ---------------------------------------------------------------


async def credit(query: CallbackQuery, state: FSMContext) -> None:
    await enter(state, AdminForm.credit_user, {"flow": "credit"})
    await edit(
        query.message,
        _(
            "💰 <b>Credit a deposit by hand</b>\n\n"
            "Whose deposit is it? Send the user's Telegram id (a number; they must have "
            "used the bot). /cancel to go back."
        ),
        cancel_keyboard(),
    )


async def credit_user(
    message: Message,
    state: FSMContext,
    snapshot: UserSnapshot,
    snapshots: SnapshotCache,
    currencies: Currencies,
) -> None:
    if not snapshot.is_admin:
        await state.clear()
        await message.answer(_(texts.NOT_ADMIN))
        return
    typed = (message.text or "").strip()
    if not (typed.isascii() and typed.isdigit() and 0 < int(typed) < 2**63):
        await message.answer(
            _("⚠️ Send the Telegram id as a number, like 123456789, or /cancel."),
            reply_markup=cancel_keyboard(),
        )
        return
    target = await snapshots.get(int(typed))
    if target is None:
        await message.answer(
            _("⚠️ No user with that Telegram id has used the bot. Send another id, or /cancel."),
            reply_markup=cancel_keyboard(),
        )
        return
    await state.clear()
    kb = Keyboard()
    for money in currencies:
        kb.button(
            text=money.code,
            callback_data=AdminCredit(telegram_id=target.telegram_id, currency=money.code),
        )
    kb.adjust(3)
    kb.attach(Keyboard.from_markup(cancel_keyboard()))
    text = _("💰 Credit {name}: which currency?").format(name=who(target))
    await message.answer(text, reply_markup=kb.as_markup())


def who(user: UserSnapshot) -> str:
    return _("{name} (id <code>{telegram_id}</code>)").format(
        name=escape(texts.name_of(user)), telegram_id=user.telegram_id
    )


def user_id(telegram_id: int) -> str:
    return _("user <code>{telegram_id}</code>").format(telegram_id=telegram_id)


async def credit_currency(
    query: CallbackQuery,
    callback_data: AdminCredit,
    currencies: Currencies,
    state: FSMContext,
) -> None:
    money = currencies[callback_data.currency]
    await enter(
        state,
        AdminForm.credit_amount,
        {"flow": "credit", "telegram_id": callback_data.telegram_id, "currency": money.code},
    )
    await edit(
        query.message,
        _(
            "💰 How much {code} to credit to user <code>{telegram_id}</code>? "
            "Send an amount {bounds}, or /cancel."
        ).format(
            code=money.code,
            telegram_id=callback_data.telegram_id,
            bounds=bounds(money, money.max_amount),
        ),
        cancel_keyboard(),
    )


async def credit_amount(
    message: Message,
    state: FSMContext,
    snapshot: UserSnapshot,
    snapshots: SnapshotCache,
    currencies: Currencies,
) -> None:
    data = await state.get_data()
    if not snapshot.is_admin or data.get("flow") != "credit" or "currency" not in data:
        await state.clear()
        await message.answer(_(texts.NOT_ADMIN) if not snapshot.is_admin else _("⚠️ Start again."))
        return
    money = currencies[data["currency"]]
    amount = await typed_amount(message, money)
    if amount is None:
        return
    await state.clear()
    target = await snapshots.get(data["telegram_id"])
    name = who(target) if target else user_id(data["telegram_id"])
    kb = Keyboard()
    kb.button(
        text=_("✅ Credit {amount}").format(amount=money.format(amount)),
        callback_data=AdminCredit(
            telegram_id=data["telegram_id"], currency=money.code, amount=amount
        ),
    )
    kb.button(text=_("✖️ Cancel"), callback_data=AdminPanel(screen="home"))
    kb.adjust(1)
    await message.answer(
        _(
            "❓ Credit <b>{amount}</b> to {name}? It is added to their available balance at once."
        ).format(amount=money.format(amount), name=name),
        reply_markup=kb.as_markup(),
    )


async def credit_confirm(
    query: CallbackQuery,
    callback_data: AdminCredit,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    snapshots: SnapshotCache,
    bot: Bot,
    i18n: I18n,
) -> None:
    money = currencies[callback_data.currency]
    # The confirmation message is the credit's identity: pressing it twice
    # (even at once) credits once.
    reference = f"tg:{query.message.chat.id}:{query.message.message_id}"
    deposit = (
        await services.wallets.admin_credit(
            snapshot,
            callback_data.telegram_id,
            money.code,
            callback_data.amount,
            reference=reference,
        )
    ).value
    if not deposit.credited:
        # Told apart from the confirmation, which shows the first press's result.
        await query.message.answer(_("⚠️ This deposit was already credited; nothing changed."))
        return
    target = await read_after_commit(snapshots.get(deposit.telegram_id))
    name = who(target) if target else user_id(deposit.telegram_id)
    credited = _("✅ Credited {amount} to {name}.")
    await show_result(
        bot,
        snapshot.telegram_id,
        home_text(credited.format(amount=money.format(deposit.amount), name=name)),
        home_keyboard(),
        edit=query.message,
    )
    if target is None:
        return
    # Said to the user in their own language, not the admin's.
    locale = locale_of(target)
    with i18n.use_locale(locale):
        theirs = currencies.in_locale(locale)
        amount = theirs[money.code].format(deposit.amount)
        headline = _("💰 An admin credited {amount}.").format(amount=amount)
        text, markup = balances_text(target, theirs, headline), wallet_keyboard()
    try:
        await bot.send_message(target.telegram_id, text, reply_markup=markup)
    except TelegramAPIError as exc:
        log.info("could not tell %s about a credit: %s", target.telegram_id, exc)


def router() -> Router:
    router = admin_router("admin_deposits")
    router.callback_query.register(credit, AdminPanel.filter(F.screen == "credit"))
    router.message.register(credit_user, StateFilter(AdminForm.credit_user), NotACommand())
    router.callback_query.register(credit_currency, AdminCredit.filter(F.amount == 0))
    router.message.register(credit_amount, StateFilter(AdminForm.credit_amount), NotACommand())
    router.callback_query.register(credit_confirm, AdminCredit.filter(F.amount > 0))
    return router
