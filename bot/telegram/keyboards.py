"""Every button of the bot: CallbackData factories and keyboard builders.

Deal buttons are signed: the callback data carries an HMAC over the viewer,
the action, the deal and its version, so a forged or edited callback is
recognised by a filter (no I/O) and answered with an alert before anything
else happens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import quote, urlencode

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.services.ratings import Rating
from bot.services.rules import Action, allowed_actions
from bot.services.views import DealView
from bot.telegram import reputation
from bot.telegram.i18n import N_, _, per_locale

SIGNATURE_LENGTH = 10  # base64url characters: 60 bits


class Keyboard(InlineKeyboardBuilder):
    """aiogram's builder without its deep copy of every button on export (~5%
    of a press's CPU): ours are built for one message; no button is changed."""

    def export(self) -> list[list[InlineKeyboardButton]]:
        return [list(row) for row in self._markup]


class WalletMenu(CallbackData, prefix="w"):
    """A wallet screen: home, deposit, withdraw, withdrawals, confirm, cancel."""

    screen: str
    currency: str = ""


class Nav(CallbackData, prefix="nav"):
    """Go to a screen: menu, wallet, new, help, language, admin."""

    to: str


class DealCard(CallbackData, prefix="dc"):
    """Show (or refresh) a deal's card."""

    code: str


class DealList(CallbackData, prefix="dl"):
    """A page of "my deals": kind is active, action or finished."""

    kind: str = "active"
    before: int = 0


class DealAct(CallbackData, prefix="da"):
    """A party's action on a deal, at the version the card showed."""

    action: str
    code: str
    v: int
    ok: bool = False  # the confirmation step was passed
    sig: str = ""


class Invite(CallbackData, prefix="iv"):
    """An invitation, by its code: show its deal, accept it or decline it."""

    action: str
    code: str


class RateDeal(CallbackData, prefix="rt"):
    """A party's stars for the other party of a completed deal (0: write a
    review of the rating given), signed like a deal action."""

    code: str
    stars: int
    sig: str = ""


class AdminDeal(CallbackData, prefix="ad"):
    """An admin's resolution of a disputed deal: release, refund or split."""

    outcome: str
    code: str
    v: int
    ok: bool = False


class AdminCard(CallbackData, prefix="ac"):
    """A deal's dispute as an admin sees it: who opened it, why, its evidence."""

    code: str


class AdminEvidence(CallbackData, prefix="ae"):
    """Send a piece of a dispute's evidence to the admin again (id 0: all of it)."""

    code: str
    id: int


class AdminWithdrawal(CallbackData, prefix="aw"):
    """Approve (after a confirmation) or reject a pending withdrawal."""

    action: str
    id: int
    ok: bool = False


class EvidenceAdd(CallbackData, prefix="ea"):
    """A party adds evidence to a disputed deal (a form), or is done adding."""

    code: str
    done: bool = False


class Signer:
    """Signs and checks deal buttons for one viewer."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def for_token(cls, token: str, secret: str = "") -> Signer:
        """The configured secret, else one derived from the bot token, else (no
        token: local mode, one process) a random one."""
        if secret:
            return cls(secret.encode())
        if token:
            return cls(hashlib.sha256(b"escrow-bot/callbacks/" + token.encode()).digest())
        return cls(secrets.token_bytes(32))

    def _signature(self, viewer: int, action: str, code: str, version: int, ok: bool) -> str:
        message = f"{viewer}:{action}:{code}:{version}:{int(ok)}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode()[:SIGNATURE_LENGTH]

    def act(self, viewer: int, action: str, deal: DealView, *, ok: bool = False) -> DealAct:
        signature = self._signature(viewer, action, deal.code, deal.version, ok)
        return DealAct(action=action, code=deal.code, v=deal.version, ok=ok, sig=signature)

    def valid(self, viewer: int, data: DealAct) -> bool:
        expected = self._signature(viewer, data.action, data.code, data.v, data.ok)
        return hmac.compare_digest(expected, data.sig)

    def rate(self, viewer: int, code: str, stars: int) -> RateDeal:
        signature = self._signature(viewer, f"rate{stars}", code, 0, False)
        return RateDeal(code=code, stars=stars, sig=signature)

    def valid_rating(self, viewer: int, data: RateDeal) -> bool:
        expected = self._signature(viewer, f"rate{data.stars}", data.code, 0, False)
        return hmac.compare_digest(expected, data.sig)


MY_DEALS = DealList(kind="active").pack()

ACTION_LABELS = {
    Action.ACCEPT: N_("✅ Accept"),
    Action.DECLINE: N_("Decline"),
    Action.FUND: N_("💰 Fund {amount}"),
    Action.DELIVER: N_("📦 Mark as delivered"),
    Action.RELEASE: N_("✅ Release payment"),
    Action.DISPUTE: N_("⚠️ Open a dispute"),
    Action.CANCEL: N_("Cancel deal"),
    Action.REFUND: N_("↩️ Cancel and get a refund"),
}
# Actions that move money for good ask once more.
CONFIRMED = frozenset({Action.RELEASE, Action.CANCEL, Action.REFUND})


def menu_button() -> InlineKeyboardButton:
    return InlineKeyboardButton(text=_("« Menu"), callback_data=Nav(to="menu").pack())


# Keyboards that never change are built once per language (`per_locale`).
@per_locale
def main_menu(is_admin: bool) -> InlineKeyboardMarkup:
    kb = Keyboard()
    kb.button(text=_("➕ New deal"), callback_data=Nav(to="new"))
    kb.button(text=_("📋 My deals"), callback_data=DealList(kind="active"))
    kb.button(text=_("👛 Wallet"), callback_data=Nav(to="wallet"))
    kb.button(text=_(reputation.PROFILE), callback_data=Nav(to="profile"))
    kb.button(text=_("❓ Help"), callback_data=Nav(to="help"))
    kb.button(text=_("🌐 Language"), callback_data=Nav(to="language"))
    if is_admin:
        kb.button(text=_("🛡 Admin"), callback_data=Nav(to="admin"))
    kb.adjust(2)
    return kb.as_markup()


@per_locale
def back_to_menu() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[menu_button()]])


def deal_keyboard(
    deal: DealView,
    viewer_id: int,
    viewer_telegram_id: int,
    signer: Signer,
    amount_text: str,
    given: Rating | None = None,
) -> InlineKeyboardMarkup:
    """The actions the viewer may take now (on a completed deal: its rating,
    or a review of the rating `given`), then navigation (one per row).

    Built from buttons directly: this runs for every card shown and aiogram's
    builder copies every button it is given."""
    rows = []
    for action in allowed_actions(deal, viewer_id):
        label = _(ACTION_LABELS[action]).format(amount=amount_text)
        if action is Action.CANCEL and deal.status in ("funded", "delivered"):
            label = _("↩️ Cancel and refund the buyer")
        data = signer.act(viewer_telegram_id, action, deal).pack()
        rows.append([InlineKeyboardButton(text=label, callback_data=data)])
    if deal.status == "disputed" and viewer_id in (deal.buyer_id, deal.seller_id):
        evidence = EvidenceAdd(code=deal.code).pack()
        rows.append([InlineKeyboardButton(text=_("📎 Add evidence"), callback_data=evidence)])
    if reputation.may_rate(deal, viewer_id) and (
        rating := rating_row(deal.code, viewer_telegram_id, signer, given)
    ):
        rows.append(rating)
    refresh = DealCard(code=deal.code).pack()
    rows.append([InlineKeyboardButton(text=_("⟳ Refresh"), callback_data=refresh)])
    rows.append([InlineKeyboardButton(text=_("📋 My deals"), callback_data=MY_DEALS)])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def rating_row(
    code: str, viewer_telegram_id: int, signer: Signer, given: Rating | None
) -> list[InlineKeyboardButton]:
    """1 to 5 stars; once rated, a review (if none yet)."""
    if given is None:
        return [
            InlineKeyboardButton(
                text=label, callback_data=signer.rate(viewer_telegram_id, code, stars).pack()
            )
            for stars, label in reputation.STAR_LABELS.items()
        ]
    if given.review is not None:
        return []
    review = signer.rate(viewer_telegram_id, code, 0).pack()
    return [InlineKeyboardButton(text=_(reputation.ADD_REVIEW), callback_data=review)]


def confirm_keyboard(
    deal: DealView, action: Action, viewer_telegram_id: int, signer: Signer, label: str
) -> InlineKeyboardMarkup:
    kb = Keyboard()
    kb.button(text=label, callback_data=signer.act(viewer_telegram_id, action, deal, ok=True))
    kb.button(text=_("« Back"), callback_data=DealCard(code=deal.code))
    kb.adjust(1)
    return kb.as_markup()


# An admin's ways to settle a dispute, as their buttons say them.
SETTLE = {
    "release": N_("✅ Release to seller"),
    "refund": N_("↩️ Refund buyer"),
    "split": N_("✂️ Split"),
}


def admin_deal_keyboard(deal: DealView) -> InlineKeyboardMarkup:
    kb = Keyboard()
    if deal.status == "disputed":
        for outcome, label in SETTLE.items():
            kb.button(
                text=_(label),
                callback_data=AdminDeal(outcome=outcome, code=deal.code, v=deal.version),
            )
    kb.button(text=_("🗂 Dispute file"), callback_data=AdminCard(code=deal.code))
    kb.button(text=_("« Admin"), callback_data=Nav(to="admin"))
    kb.adjust(1)
    return kb.as_markup()


# Telegram's share link: the user picks chats, and the link goes there with `text`.
SHARE_URL = "https://t.me/share/url"
SHARE_INVITATION = N_("📤 Share the invitation")


def share_url(link: str, text: str) -> str:
    return f"{SHARE_URL}?{urlencode({'url': link, 'text': text}, quote_via=quote)}"


def share_keyboard(link: str, text: str) -> InlineKeyboardMarkup:
    """An invitation's link as a Share button, instead of copying it by hand."""
    button = InlineKeyboardButton(text=_(SHARE_INVITATION), url=share_url(link, text))
    return InlineKeyboardMarkup(inline_keyboard=[[button]])
