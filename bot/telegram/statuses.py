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
    DealStatus.DELIVERED: (Action.RELEASE, "release the payment"),
}
# What the card says before the move it waits for.
CARD_OPEN = {
    DealStatus.PENDING: "⏳ {waiting}",
    DealStatus.ACCEPTED: "🤝 accepted — {waiting}",
    DealStatus.FUNDED: "🔒 funded — the money is held in escrow; {waiting}",
    DealStatus.DELIVERED: "📦 delivered — {waiting}",
}
# Statuses no party moves on: (everyone, the buyer, the seller); None: as everyone.
CARD_CLOSED: dict[DealStatus, tuple[str, str | None, str | None]] = {
    DealStatus.DISPUTED: ("⚠️ in dispute — waiting for an admin to decide", None, None),
    DealStatus.RELEASED: (
        "✅ released to the seller",
        None,
        "✅ released — the payment is in your wallet",
    ),
    DealStatus.REFUNDED: (
        "↩️ refunded to the buyer",
        "↩️ refunded — the money is back in your wallet",
        None,
    ),
    DealStatus.CANCELLED: ("✖️ cancelled", None, None),
    DealStatus.DECLINED: ("✖️ declined by the {counterparty}", None, None),
    DealStatus.EXPIRED: ("⌛ expired — it was not accepted and funded in time", None, None),
    DealStatus.SPLIT: (
        "✂️ split by an admin — part to the seller, the rest refunded",
        "✂️ split by an admin — part refunded to you",
        "✂️ split by an admin — part paid to you",
    ),
}
LIST_CLOSED: dict[DealStatus, tuple[str, str | None, str | None]] = {
    DealStatus.DISPUTED: ("in dispute", None, None),
    DealStatus.RELEASED: ("released", None, "released to you"),
    DealStatus.REFUNDED: ("refunded", "refunded to you", None),
    DealStatus.CANCELLED: ("cancelled", None, None),
    DealStatus.DECLINED: ("declined", None, None),
    DealStatus.EXPIRED: ("expired", None, None),
    DealStatus.SPLIT: ("split", None, None),
}
DECLINED_BY_YOU = ("✖️ you declined it", "declined by you")


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
        return f"waiting for you to {verb}"
    side = counterparty(deal) if role is Role.COUNTERPARTY else role.value
    joined = deal.buyer_id if side == "buyer" else deal.seller_id
    if joined is None:  # invited, not joined yet
        return f"waiting for the {side} to join and {verb}"
    return f"waiting for the {side} to {verb}"


def closed(deal: Deal, viewer_id: int | None, short: bool) -> str:
    """The words for a status no party moves on (a list's when `short`)."""
    status = DealStatus(deal.status)
    everyone, buyer, seller = (LIST_CLOSED if short else CARD_CLOSED)[status]
    side = side_of(deal, viewer_id)
    if status is DealStatus.DECLINED and side is not None and side == counterparty(deal):
        return DECLINED_BY_YOU[1 if short else 0]
    said = {"buyer": buyer, "seller": seller}.get(side or "") or everyone
    return said.format(counterparty=counterparty(deal))


def card_status(deal: Deal, viewer_id: int | None) -> str:
    """The card's status line for `viewer_id` (a user id; None: an admin's card)."""
    open_move = waiting(deal, viewer_id, short=False)
    if open_move is not None:
        return CARD_OPEN[DealStatus(deal.status)].format(waiting=open_move)
    return closed(deal, viewer_id, short=False)


def list_status(deal: Deal, viewer_id: int | None) -> str:
    """The status in a list line and its button, for `viewer_id`."""
    return waiting(deal, viewer_id, short=True) or closed(deal, viewer_id, short=True)
