"""A deal's status in words, as its viewer reads it: "waiting for you to fund"
to the buyer, "waiting for the buyer to fund" to the seller, and the neutral
"waiting for the buyer to fund" to anyone else (an admin, someone shown an
invitation). Cards (`texts.deal_card`) and lists ("My deals") both say it.

Who moves a deal on from each status is the rule table's
(`bot/services/rules.py`); the viewer is a user id from their snapshot, so the
wording costs no read.
"""

from __future__ import annotations

from typing import Literal, Protocol

from bot.services.rules import RULES, Action, Role, has_role
from bot.telegram.i18n import N_, _
from db.models import DealStatus

Side = Literal["buyer", "seller"]


class Deal(Protocol):
    """What the wording needs of a deal: `DealView`, or a row of "My deals"."""

    @property
    def creator_id(self) -> int: ...
    @property
    def buyer_id(self) -> int | None: ...
    @property
    def seller_id(self) -> int | None: ...
    @property
    def status(self) -> str: ...


# The move a deal waits for in each open status, and its verb on a card (a
# list says the action's own name); who makes it is the rule table's.
NEXT_MOVE: dict[DealStatus, tuple[Action, str]] = {
    DealStatus.PENDING: (Action.ACCEPT, "accept"),
    DealStatus.ACCEPTED: (Action.FUND, "fund"),
    DealStatus.FUNDED: (Action.DELIVER, "deliver"),
    DealStatus.DELIVERED: (Action.RELEASE, "release_payment"),
}
# Who is waited for, to do what: (who, verb, joined yet) -> the words. Whole
# phrases, so each language says them its own way.
WAITING: dict[tuple[str, str, bool], str] = {
    ("you", "accept", True): N_("waiting for you to accept"),
    ("you", "fund", True): N_("waiting for you to fund"),
    ("you", "deliver", True): N_("waiting for you to deliver"),
    ("you", "release", True): N_("waiting for you to release"),
    ("you", "release_payment", True): N_("waiting for you to release the payment"),
    ("buyer", "accept", True): N_("waiting for the buyer to accept"),
    ("buyer", "fund", True): N_("waiting for the buyer to fund"),
    ("buyer", "deliver", True): N_("waiting for the buyer to deliver"),
    ("buyer", "release", True): N_("waiting for the buyer to release"),
    ("buyer", "release_payment", True): N_("waiting for the buyer to release the payment"),
    ("seller", "accept", True): N_("waiting for the seller to accept"),
    ("seller", "fund", True): N_("waiting for the seller to fund"),
    ("seller", "deliver", True): N_("waiting for the seller to deliver"),
    ("seller", "release", True): N_("waiting for the seller to release"),
    ("seller", "release_payment", True): N_("waiting for the seller to release the payment"),
    ("buyer", "accept", False): N_("waiting for the buyer to join and accept"),
    ("buyer", "fund", False): N_("waiting for the buyer to join and fund"),
    ("buyer", "deliver", False): N_("waiting for the buyer to join and deliver"),
    ("buyer", "release", False): N_("waiting for the buyer to join and release"),
    ("buyer", "release_payment", False): N_(
        "waiting for the buyer to join and release the payment"
    ),
    ("seller", "accept", False): N_("waiting for the seller to join and accept"),
    ("seller", "fund", False): N_("waiting for the seller to join and fund"),
    ("seller", "deliver", False): N_("waiting for the seller to join and deliver"),
    ("seller", "release", False): N_("waiting for the seller to join and release"),
    ("seller", "release_payment", False): N_(
        "waiting for the seller to join and release the payment"
    ),
}
# What the card says before the move it waits for.
CARD_OPEN = {
    DealStatus.PENDING: N_("⏳ {waiting}"),
    DealStatus.ACCEPTED: N_("🤝 accepted — {waiting}"),
    DealStatus.FUNDED: N_("🔒 funded — the money is held in escrow; {waiting}"),
    DealStatus.DELIVERED: N_("📦 delivered — {waiting}"),
}
# Statuses no party moves on: (everyone, the buyer, the seller); None: as everyone.
CARD_CLOSED: dict[DealStatus, tuple[str, str | None, str | None]] = {
    DealStatus.DISPUTED: (N_("⚠️ in dispute — waiting for an admin to decide"), None, None),
    DealStatus.RELEASED: (
        N_("✅ released to the seller"),
        None,
        N_("✅ released — the payment is in your wallet"),
    ),
    DealStatus.REFUNDED: (
        N_("↩️ refunded to the buyer"),
        N_("↩️ refunded — the money is back in your wallet"),
        None,
    ),
    DealStatus.CANCELLED: (N_("✖️ cancelled"), None, None),
    DealStatus.DECLINED: (N_("✖️ declined"), None, None),  # said with who: DECLINED_BY
    DealStatus.EXPIRED: (N_("⌛ expired — it was not accepted and funded in time"), None, None),
    DealStatus.SPLIT: (
        N_("✂️ split by an admin — part to the seller, the rest refunded"),
        N_("✂️ split by an admin — part refunded to you"),
        N_("✂️ split by an admin — part paid to you"),
    ),
}
LIST_CLOSED: dict[DealStatus, tuple[str, str | None, str | None]] = {
    DealStatus.DISPUTED: (N_("in dispute"), None, None),
    DealStatus.RELEASED: (N_("released"), None, N_("released to you")),
    DealStatus.REFUNDED: (N_("refunded"), N_("refunded to you"), None),
    DealStatus.CANCELLED: (N_("cancelled"), None, None),
    DealStatus.DECLINED: (N_("declined"), None, None),
    DealStatus.EXPIRED: (N_("expired"), None, None),
    DealStatus.SPLIT: (N_("split"), None, None),
}
# A declined card names who declined it.
DECLINED_BY = {"buyer": N_("✖️ declined by the buyer"), "seller": N_("✖️ declined by the seller")}
DECLINED_BY_YOU = (N_("✖️ you declined it"), N_("declined by you"))


def side_of(deal: Deal, viewer_id: int | None) -> Side | None:
    """The viewer's side of `deal`, None for anyone else."""
    if viewer_id is not None and viewer_id == deal.buyer_id:
        return "buyer"
    if viewer_id is not None and viewer_id == deal.seller_id:
        return "seller"
    return None


def counterparty(deal: Deal) -> Side:
    """The side of the party who did not create the deal (joined or not yet)."""
    return "seller" if deal.creator_id == deal.buyer_id else "buyer"


def waiting(deal: Deal, viewer_id: int | None, short: bool) -> str | None:
    """ "waiting for you to fund" / "waiting for the buyer to fund", or None for
    a deal no party moves on now."""
    status = DealStatus(deal.status)
    move = NEXT_MOVE.get(status)
    if move is None:
        return None
    action, verb = move
    role = RULES[action][status][0]
    if short:
        verb = action.value
    if viewer_id is not None and has_role(deal, viewer_id, role):
        return _(WAITING["you", verb, True])
    side = counterparty(deal) if role is Role.COUNTERPARTY else role.value
    joined = deal.buyer_id if side == "buyer" else deal.seller_id
    # not joined: invited, not joined yet
    return _(WAITING[side, verb, joined is not None])


def closed(deal: Deal, viewer_id: int | None, short: bool) -> str:
    """The words for a status no party moves on (a list's when `short`)."""
    status = DealStatus(deal.status)
    everyone, buyer, seller = (LIST_CLOSED if short else CARD_CLOSED)[status]
    side = side_of(deal, viewer_id)
    if status is DealStatus.DECLINED and side is not None and side == counterparty(deal):
        return _(DECLINED_BY_YOU[1 if short else 0])
    if status is DealStatus.DECLINED and not short:
        return _(DECLINED_BY[counterparty(deal)])
    said = {"buyer": buyer, "seller": seller}.get(side or "") or everyone
    return _(said)


def card_status(deal: Deal, viewer_id: int | None) -> str:
    """The card's status line for `viewer_id` (a user id; None: an admin's card)."""
    open_move = waiting(deal, viewer_id, short=False)
    if open_move is not None:
        return _(CARD_OPEN[DealStatus(deal.status)]).format(waiting=open_move)
    return closed(deal, viewer_id, short=False)


def list_status(deal: Deal, viewer_id: int | None) -> str:
    """The status in a list line and its button, for `viewer_id`."""
    return waiting(deal, viewer_id, short=True) or closed(deal, viewer_id, short=True)
