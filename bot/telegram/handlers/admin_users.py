"""The admin panel's users: one found by Telegram id or @username, blocked with
a reason (told to them) or unblocked, from 👤 Users or by command:

    /block <id|@username> <reason>
    /unblock <id|@username>
"""

from __future__ import annotations

from html import escape

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot.services import Services
from bot.services.base import Outcome
from bot.services.errors import EscrowError, InvalidInput, WrongState
from bot.services.moderation import UserStanding
from bot.services.money import Currencies
from bot.services.settings import EscrowSettings
from bot.services.views import UserView
from bot.telegram import texts
from bot.telegram.filters import NotACommand
from bot.telegram.fsm import enter
from bot.telegram.handlers.admin import (
    AdminForm,
    AdminPanel,
    AdminUser,
    admin_router,
    cancel_keyboard,
)
from bot.telegram.handlers.committed import close_form, read_after_commit, show_result
from bot.telegram.handlers.wallet import edit
from bot.telegram.i18n import N_, _
from bot.telegram.keyboards import Keyboard, Nav
from bot.telegram.notices import NoticeSender
from bot.telegram.refusals import refusal_text
from cache.snapshots import UserSnapshot
from db.models import UserStatus

USAGE = N_(
    "Send <code>/block ID_OR_@USERNAME REASON</code> (the user reads the reason) or "
    "<code>/unblock ID_OR_@USERNAME</code>."
)
LOOKUP = N_(
    "👤 <b>Users</b>\n\nSend a user's Telegram id or @username to see them and block or "
    "unblock them. Or, at any time: {usage}\n\n/cancel to go back."
)


def user_screen(user: UserStanding, headline: str = "") -> tuple[str, InlineKeyboardMarkup]:
    blocked = user.status == UserStatus.BLOCKED
    lines = [headline, ""] if headline else []
    status = _("🚫 blocked") if blocked else _("✅ active")
    lines += [
        _("👤 <b>{name}</b> ({first_name}) · id <code>{telegram_id}</code>").format(
            name=escape(user.name), first_name=escape(user.first_name), telegram_id=user.telegram_id
        ),
        _("Status: {status}").format(status=status) + (_(" · admin") if user.is_admin else ""),
        _("On the bot since {when}").format(when=texts.when(user.created_at)),
        _("Unfinished deals: {count}").format(count=user.open_deals),
    ]
    if user.changed_at is not None:
        what = _("Blocked by {name}, {when}") if blocked else _("Last unblocked by {name}, {when}")
        said = f": <i>{escape(user.reason)}</i>" if user.reason else ""
        by = escape(user.changed_by or _("an admin"))
        lines.append(what.format(name=by, when=texts.when(user.changed_at)) + said)
    if blocked:
        lines.append(
            _(
                "<i>Their deals can't be accepted or funded while they are blocked; disputes "
                "are settled as usual.</i>"
            )
        )
    kb = Keyboard()
    if blocked:
        kb.button(
            text=_("✅ Unblock"),
            callback_data=AdminUser(action="unblock", telegram_id=user.telegram_id),
        )
    elif not user.is_admin:
        kb.button(
            text=_("🚫 Block"),
            callback_data=AdminUser(action="block", telegram_id=user.telegram_id),
        )
    kb.button(
        text=_("⟳ Refresh"), callback_data=AdminUser(action="show", telegram_id=user.telegram_id)
    )
    kb.button(text=_("« Admin"), callback_data=Nav(to="admin"))
    kb.adjust(1)
    return "\n".join(lines), kb.as_markup()


async def users(query: CallbackQuery, state: FSMContext) -> None:
    await enter(state, AdminForm.user_lookup, {"flow": "users"})
    await edit(query.message, _(LOOKUP).format(usage=_(USAGE)), cancel_keyboard())


async def user_lookup(
    message: Message, state: FSMContext, snapshot: UserSnapshot, services: Services,
    currencies: Currencies,
) -> None:  # fmt: skip
    if not snapshot.is_admin:
        await state.clear()
        await message.answer(_(texts.NOT_ADMIN))
        return
    try:
        user = await services.moderation.find(snapshot, message.text or "")
    except (InvalidInput, EscrowError) as refused:  # the step repeats
        await message.answer(
            _("⚠️ {refusal} Send an id or @username, or /cancel.").format(
                refusal=refusal_text(refused, currencies)
            ),
            reply_markup=cancel_keyboard(),
        )
        return
    await state.clear()
    text, markup = user_screen(user)
    await message.answer(text, reply_markup=markup)


async def show_user(
    query: CallbackQuery, callback_data: AdminUser, snapshot: UserSnapshot, services: Services
) -> None:
    user = await services.moderation.find(snapshot, str(callback_data.telegram_id))
    await edit(query.message, *user_screen(user))


async def ask_reason(
    query: CallbackQuery, callback_data: AdminUser, state: FSMContext, settings: EscrowSettings
) -> None:
    await enter(state, AdminForm.block_reason, {"flow": "block", "who": callback_data.telegram_id})
    await edit(
        query.message,
        _(
            "🚫 Why is user <code>{telegram_id}</code> blocked? Send the reason in one message "
            "(at most {limit} characters); they will read it. /cancel to go back."
        ).format(telegram_id=callback_data.telegram_id, limit=settings.reason_max_length),
        cancel_keyboard(),
    )


async def block_reason(
    message: Message, state: FSMContext, snapshot: UserSnapshot, services: Services,
    currencies: Currencies, outbox: NoticeSender, bot: Bot,
) -> None:  # fmt: skip
    data = await state.get_data()
    if not snapshot.is_admin or data.get("flow") != "block":
        await state.clear()
        await message.answer(_(texts.NOT_ADMIN) if not snapshot.is_admin else _("⚠️ Start again."))
        return
    if not message.text:
        await message.answer(_("Please send the reason as text, or /cancel."))
        return
    try:
        blocked = await services.moderation.block(snapshot, str(data["who"]), message.text)
    except InvalidInput as bad:  # the step repeats
        again = _("⚠️ {refusal} Send it again, or /cancel.")
        await message.answer(again.format(refusal=refusal_text(bad, currencies)))
        return
    except EscrowError:
        await state.clear()
        raise
    # A form Redis could not forget is refused by the user's status: blocked now.
    await close_form(state)
    await changed(bot, snapshot, services, blocked, outbox, edit=None)


async def unblock(
    query: CallbackQuery, callback_data: AdminUser, snapshot: UserSnapshot, services: Services,
    currencies: Currencies, outbox: NoticeSender, bot: Bot,
) -> None:  # fmt: skip
    try:
        unblocked = await services.moderation.unblock(snapshot, str(callback_data.telegram_id))
    except WrongState as already:
        user = await services.moderation.find(snapshot, str(callback_data.telegram_id))
        await edit(query.message, *user_screen(user, f"⚠️ {refusal_text(already, currencies)}"))
        return
    await changed(bot, snapshot, services, unblocked, outbox, edit=query.message)


async def changed(
    bot: Bot,
    admin: UserSnapshot,
    services: Services,
    outcome: Outcome[UserView],
    outbox: NoticeSender,
    *,
    edit: Message | None,
) -> None:
    """A committed block or unblock: the user as they are now, and they are told."""
    user = outcome.value
    name = f"@{user.username}" if user.username else user.first_name
    headline = (
        _("🚫 {name} is blocked: they were told why.")
        if user.status == UserStatus.BLOCKED
        else _("✅ {name} is unblocked: they were told.")
    ).format(name=escape(name))
    standing = await read_after_commit(services.moderation.find(admin, str(user.telegram_id)))
    if standing is None:
        await show_result(bot, admin.telegram_id, headline, edit=edit)
    else:
        await show_result(bot, admin.telegram_id, *user_screen(standing, headline), edit=edit)
    await outbox.send(outcome.notices, actor=admin)


async def block_command(
    message: Message, command: CommandObject, snapshot: UserSnapshot, services: Services,
    outbox: NoticeSender, bot: Bot,
) -> None:  # fmt: skip
    who, _space, reason = (command.args or "").strip().partition(" ")
    if not who or not reason.strip():
        await message.answer(f"⚠️ {_(USAGE)}")
        return
    blocked = await services.moderation.block(snapshot, who, reason)
    await changed(bot, snapshot, services, blocked, outbox, edit=None)


async def unblock_command(
    message: Message, command: CommandObject, snapshot: UserSnapshot, services: Services,
    outbox: NoticeSender, bot: Bot,
) -> None:  # fmt: skip
    who, _space, note = (command.args or "").strip().partition(" ")
    if not who:
        await message.answer(f"⚠️ {_(USAGE)}")
        return
    unblocked = await services.moderation.unblock(snapshot, who, note.strip() or None)
    await changed(bot, snapshot, services, unblocked, outbox, edit=None)


def router() -> Router:
    router = admin_router("admin_users")
    router.callback_query.register(users, AdminPanel.filter(F.screen == "users"))
    router.message.register(user_lookup, StateFilter(AdminForm.user_lookup), NotACommand())
    router.callback_query.register(show_user, AdminUser.filter(F.action == "show"))
    router.callback_query.register(ask_reason, AdminUser.filter(F.action == "block"))
    router.message.register(block_reason, StateFilter(AdminForm.block_reason), NotACommand())
    router.callback_query.register(unblock, AdminUser.filter(F.action == "unblock"))
    router.message.register(block_command, Command("block", ignore_case=True))
    router.message.register(unblock_command, Command("unblock", ignore_case=True))
    return router
