"""What resolves each refusal: the buttons shown with its sentence
(`refusals.refusal_text`), so no refusal is a dead end."""

from __future__ import annotations

import enum
from collections.abc import Iterable

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.services.errors import EscrowError, Refusal
from bot.telegram.i18n import _
from bot.telegram.keyboards import MY_DEALS, DealCard, Nav, WalletMenu, menu_button


class Way(enum.Enum):
    """Where a button under a refusal leads: to what resolves it
    (`RESOLVED_BY` says which for each refusal)."""

    DEPOSIT = "deposit"  # the deposit form, in the refusal's currency when it names one
    WALLET = "wallet"
    WITHDRAWALS = "withdrawals"
    DEAL = "deal"  # the card of the deal the refusal names
    MY_DEALS = "my_deals"
    NEW_DEAL = "new_deal"
    ADMIN = "admin"


def way_button(way: Way, currency: str = "", deal: str = "") -> InlineKeyboardButton | None:
    """The button that leads `way`; None for a deal's card when no deal is named."""
    match way:
        case Way.DEPOSIT:
            label = _("➕ Deposit {code}").format(code=currency) if currency else _("➕ Deposit")
            data = WalletMenu(screen="deposit", currency=currency).pack()
        case Way.WALLET:
            label, data = _("👛 Wallet"), Nav(to="wallet").pack()
        case Way.WITHDRAWALS:
            label, data = _("🧾 Withdrawals"), WalletMenu(screen="withdrawals").pack()
        case Way.DEAL:
            if not deal:
                return None
            label, data = _("📄 Deal #{code}").format(code=deal), DealCard(code=deal).pack()
        case Way.MY_DEALS:
            label, data = _("📋 My deals"), MY_DEALS
        case Way.NEW_DEAL:
            label, data = _("➕ New deal"), Nav(to="new").pack()
        case Way.ADMIN:
            label, data = _("🛡 Admin"), Nav(to="admin").pack()
    return InlineKeyboardButton(text=label, callback_data=data)


def resolving_keyboard(
    ways: Iterable[Way], *, currency: str = "", deal: str = ""
) -> InlineKeyboardMarkup:
    """The buttons that resolve a refusal on one row, then « Menu on its own."""
    buttons = [b for way in ways if (b := way_button(way, currency, deal)) is not None]
    rows = [buttons] if buttons else []
    return InlineKeyboardMarkup(inline_keyboard=[*rows, [menu_button()]])


# What resolves each refusal: its buttons, shown above « Menu (which every
# refusal gets; a code not listed gets the menu alone). Refusals inside a form
# (an amount, a name, a text to send again) keep the form's own buttons.
RESOLVED_BY: dict[enum.Enum, tuple[Way, ...]] = {
    # deals
    Refusal.NO_SUCH_DEAL: (Way.MY_DEALS,),
    Refusal.REQUEST_UNUSABLE: (Way.NEW_DEAL,),
    Refusal.CHOOSE_ROLE: (Way.NEW_DEAL,),
    Refusal.SELF_DEAL: (Way.NEW_DEAL,),
    Refusal.PERSON_GONE: (Way.NEW_DEAL,),
    Refusal.CANT_TAKE_PART: (Way.NEW_DEAL,),
    Refusal.NOT_YOUR_ROLE: (Way.MY_DEALS,),
    Refusal.ACTION_NOT_NOW: (Way.DEAL, Way.MY_DEALS),
    Refusal.CHANGED_SINCE_ASKED: (Way.DEAL, Way.MY_DEALS),
    Refusal.CHANGED_MEANWHILE: (Way.DEAL, Way.MY_DEALS),
    Refusal.NO_DISPUTE: (Way.ADMIN,),
    Refusal.DISPUTE_OUTCOME: (Way.ADMIN,),
    Refusal.FUNDING_SHORT: (Way.DEPOSIT,),
    Refusal.NOT_OVERDUE: (Way.DEAL, Way.MY_DEALS),
    Refusal.TOO_MANY_DEALS: (Way.MY_DEALS,),
    Refusal.TOO_MANY_STRANGERS: (Way.MY_DEALS,),
    # invitations
    Refusal.OWN_INVITATION: (Way.MY_DEALS,),
    Refusal.ALREADY_A_PARTY: (Way.MY_DEALS,),
    Refusal.INVITATION_USED: (Way.MY_DEALS,),
    # wallets
    Refusal.NOT_ENOUGH_FUNDS: (Way.DEPOSIT,),
    Refusal.OVER_DEPOSIT_LIMIT: (Way.WALLET,),
    Refusal.OVER_WITHDRAWAL_LIMIT: (Way.WALLET,),
    Refusal.WITHDRAWAL_SHORT: (Way.WALLET,),
    Refusal.WITHDRAWAL_REQUESTED: (Way.WITHDRAWALS,),
    Refusal.WITHDRAWAL_DECIDED: (Way.ADMIN,),
    Refusal.INVOICE_NOT_CREATED: (Way.DEPOSIT,),
    # admins
    Refusal.NO_SUCH_USER: (Way.ADMIN,),
}


def refusal_keyboard(error: EscrowError) -> InlineKeyboardMarkup:
    """The buttons that resolve `error`, then « Menu."""
    data = error.data
    return resolving_keyboard(
        RESOLVED_BY.get(error.code, ()),
        currency=str(data.get("currency") or ""),
        deal=str(data.get("deal") or ""),
    )
