"""A party's evidence on an open dispute: "📎 Add evidence" on the disputed
deal's card opens a form that takes photos, documents and text messages, each
sent to the admins at once, until "✅ Done" (or /cancel, which keeps what was
sent)."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from babel.numbers import format_decimal

from bot.services import Services
from bot.services.errors import InvalidInput, Refusal, WrongState
from bot.services.money import Currencies
from bot.services.settings import EscrowSettings
from bot.services.views import DealView
from bot.telegram.filters import NotACommand
from bot.telegram.fsm import enter
from bot.telegram.handlers.committed import close_form
from bot.telegram.handlers.deals import show_card
from bot.telegram.i18n import N_, _, current_locale
from bot.telegram.keyboards import EvidenceAdd, Keyboard, Signer
from bot.telegram.notices import NoticeSender
from bot.telegram.refusals import refusal_text
from cache.snapshots import UserSnapshot
from db.models import DealStatus, EvidenceKind


class EvidenceForm(StatesGroup):
    collect = State()


PROMPT = N_(
    "📎 <b>Evidence for the dispute over deal #{code}</b>\n\n"
    "Send photos, documents (up to {megabytes} MB each) or text messages (up to {length} "
    "characters), one per message: each goes to the admins at once. You may send {limit} "
    "pieces about this dispute. Press ✅ Done when you have finished."
)
NOT_EVIDENCE = N_("⚠️ Send a photo, a document or a text message, or press ✅ Done.")
THANKS = N_("📎 Thank you: the admins have your evidence.")


def done_keyboard(code: str) -> InlineKeyboardMarkup:
    kb = Keyboard()
    kb.button(text=_("✅ Done"), callback_data=EvidenceAdd(code=code, done=True))
    return kb.as_markup()


async def add_evidence(
    query: CallbackQuery,
    callback_data: EvidenceAdd,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    signer: Signer,
    settings: EscrowSettings,
    state: FSMContext,
) -> None:
    if not isinstance(query.message, Message):
        return
    deal = await services.deals.get(snapshot, callback_data.code)  # a party's, or NotFound
    if callback_data.done:
        if await state.get_state() == EvidenceForm.collect.state:
            await state.clear()
        await show_card(query.message, deal, snapshot, currencies, signer, _(THANKS), edit=False)
        return
    if deal.status != DealStatus.DISPUTED:
        refused = WrongState(Refusal.DISPUTE_CLOSED, deal=deal.code, status=DealStatus(deal.status))
        headline = f"⚠️ {refusal_text(refused, currencies)}"
        await show_card(query.message, deal, snapshot, currencies, signer, headline, edit=True)
        return
    await enter(state, EvidenceForm.collect, {"flow": "evidence", "code": deal.code})
    text = _(PROMPT).format(
        code=deal.code,
        megabytes=settings.evidence_file_max_mb,
        length=format_decimal(settings.evidence_text_max_length, locale=current_locale()),
        limit=settings.evidence_per_party,
    )
    await query.message.answer(text, reply_markup=done_keyboard(deal.code))


async def evidence_message(
    message: Message,
    state: FSMContext,
    snapshot: UserSnapshot,
    services: Services,
    currencies: Currencies,
    signer: Signer,
    outbox: NoticeSender,
) -> None:
    code = (await state.get_data()).get("code")
    if not code:
        await state.clear()
        await message.answer(_("⚠️ That form has expired. Open the deal and try again."))
        return
    if message.photo:
        photo = message.photo[-1]  # the largest size
        piece = dict(file_id=photo.file_id, file_size=photo.file_size, text=message.caption)
        kind = EvidenceKind.PHOTO
    elif message.document:
        document = message.document
        piece = dict(
            file_id=document.file_id,
            file_name=document.file_name,
            file_size=document.file_size,
            text=message.caption,
        )
        kind = EvidenceKind.DOCUMENT
    elif message.text:
        piece, kind = dict(text=message.text), EvidenceKind.TEXT
    else:
        await message.answer(_(NOT_EVIDENCE), reply_markup=done_keyboard(code))
        return
    try:
        added = await services.deals.add_evidence(snapshot, code, kind, **piece)  # type: ignore[arg-type]
    except InvalidInput as bad:
        if bad.code is not Refusal.EVIDENCE_LIMIT:  # this piece is refused: send another
            await message.answer(
                f"⚠️ {refusal_text(bad, currencies)}", reply_markup=done_keyboard(code)
            )
            return
        await state.clear()
        await message.answer(f"⚠️ {refusal_text(bad, currencies)}")
        return
    except WrongState as closed:  # settled meanwhile: the form is over
        await state.clear()
        if isinstance(closed.current, DealView):
            headline = f"⚠️ {refusal_text(closed, currencies)}"
            await show_card(
                message, closed.current, snapshot, currencies, signer, headline, edit=False
            )
            return
        raise
    piece_sent = added.value
    if piece_sent.sent >= piece_sent.limit:  # nothing more may be sent: the form is done
        await close_form(state)
        await message.answer(
            _(
                "✅ Sent to the admins ({sent} of {limit}). That was the last "
                "piece you may send about this dispute."
            ).format(sent=piece_sent.sent, limit=piece_sent.limit)
        )
    else:
        await message.answer(
            _("✅ Sent to the admins ({sent} of {limit}). Send more, or press ✅ Done.").format(
                sent=piece_sent.sent, limit=piece_sent.limit
            ),
            reply_markup=done_keyboard(code),
        )
    await outbox.send(added.notices, piece_sent.deal, piece_sent.evidence, actor=snapshot)


async def cancel_evidence(message: Message, state: FSMContext) -> None:
    """/cancel in the form: it ends, and what was sent stays with the admins."""
    await state.clear()
    await message.answer(_("The form is closed. Evidence you already sent stays with the admins."))


def router() -> Router:
    router = Router(name="evidence")
    router.callback_query.register(add_evidence, EvidenceAdd.filter())
    # before the general /cancel (start.py), which would say nothing was changed
    router.message.register(
        cancel_evidence, StateFilter(EvidenceForm.collect), Command("cancel", ignore_case=True)
    )
    router.message.register(evidence_message, StateFilter(EvidenceForm.collect), NotACommand())
    return router
