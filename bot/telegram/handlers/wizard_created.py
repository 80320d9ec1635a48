"""What the new-deal wizard shows its creator about the deal it made: the
headline above the deal's card and, for an invitation, the link with a Share
button. The same whether Create made the deal now or is pressed again after
it was made (a double tap, a slow client, the press delivered again after its
commit to a replica that never replied): the success it was, never a warning.
How Create works: bot/telegram/handlers/wizard.py."""

from __future__ import annotations

from html import escape

from aiogram import Bot
from aiogram.utils.deep_linking import create_start_link

from bot.services.money import Currencies
from bot.services.views import CreatedDeal, InvitationView
from bot.telegram import keyboards, texts
from bot.telegram.handlers import wizard_screens as screens
from bot.telegram.handlers.committed import show_result
from bot.telegram.i18n import N_, _
from cache.snapshots import UserSnapshot
from db.models import DealStatus, InvitationStatus

# What Create says above the card, and the invitation's link with who may use it.
CREATED = N_("✅ Deal created. {name} can accept it now.")
# by the side the link is for
CREATED_FOR_LINK = {
    "buyer": N_("✅ Deal created. Send the buyer the invitation link below."),
    "seller": N_("✅ Deal created. Send the seller the invitation link below."),
}
CREATED_FOR_NEWCOMER = N_(
    "✅ Deal created. {name} isn't on the bot yet: send them the invitation link below."
)
INVITATION_FOR = {
    "buyer": N_("🔗 Invitation for the buyer:"),
    "seller": N_("🔗 Invitation for the seller:"),
}
INVITATION_LINK = N_("{invitation}\n{link}\n\nIt works once and expires on {expires}. {who}")
LINK_FOR_ANYONE = {
    "buyer": N_("Whoever opens it first joins the deal as the buyer."),
    "seller": N_("Whoever opens it first joins the deal as the seller."),
}
LINK_FOR_NEWCOMER = N_("Only {name} can use it.")
# Create pressed again once the deal has moved on (accepted, cancelled, ...).
CREATED_SINCE = N_("✅ Deal created. Here it is as it is now.")
# What the Share button puts next to the link in the chat it is shared to (in
# the creator's language: they share it with someone they talk to).
SHARE_TEXT = N_("Escrow deal #{code}: {amount} for “{description}”. Open the link to see it.")
# The other party before they join, where a name would stand.
ROLE_TITLE = {"buyer": N_("The buyer"), "seller": N_("The seller")}
SHARED_DESCRIPTION = 100  # characters of the description the shared text quotes


def _other(made: CreatedDeal, creator_id: int) -> str:
    return screens.OTHER_ROLE["buyer" if made.deal.buyer_id == creator_id else "seller"]


def _invitee(invitation: InvitationView) -> str:
    if invitation.username:
        return f"@{invitation.username}"
    return _(screens.TELEGRAM_ID_LABEL).format(telegram_id=invitation.telegram_id)


def _open_link(invitation: InvitationView) -> bool:
    return invitation.telegram_id is None and invitation.username is None


def created_headline(made: CreatedDeal, creator_id: int, label: str | None = None) -> str:
    """What Create says above the card; `label`: how the wizard named the other party."""
    deal, invitation = made.deal, made.invitation
    other = _other(made, creator_id)
    if deal.version > 1:
        return _(CREATED_SINCE)
    if invitation is None:
        their_name = deal.seller_name if other == "seller" else deal.buyer_name
        name = their_name or label or _(ROLE_TITLE[other])
        return _(CREATED).format(name=escape(name))
    if _open_link(invitation):
        return _(CREATED_FOR_LINK[other])
    return _(CREATED_FOR_NEWCOMER).format(name=escape(label or _invitee(invitation)))


def still_invited(made: CreatedDeal) -> bool:
    """The deal still waits for its invitee, and its link still works."""
    invitation = made.invitation
    return (
        invitation is not None
        and invitation.status == InvitationStatus.ACTIVE
        and made.deal.status == DealStatus.PENDING
    )


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
        _(LINK_FOR_ANYONE[other])
        if _open_link(invitation)
        else _(LINK_FOR_NEWCOMER).format(name=escape(label or _invitee(invitation)))
    )
    text = _(INVITATION_LINK).format(
        invitation=_(INVITATION_FOR[other]),
        link=link,
        expires=texts.when(invitation.expires_at),
        who=who,
    )
    shared = _(SHARE_TEXT).format(
        code=deal.code,
        amount=currencies[deal.currency].format(deal.amount),
        description=texts.shorten(deal.description, SHARED_DESCRIPTION),
    )
    await show_result(bot, creator.telegram_id, text, keyboards.share_keyboard(link, shared))
