"""Who may do what to a deal, and in which status. Pure: no I/O.

The services enforce these rules inside the transaction (on the locked row and
in the guarded UPDATE); the bot uses the same table to show only the buttons a
viewer may press now.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Protocol

from db.models import DealStatus


class Role(enum.Enum):
    BUYER = "buyer"
    SELLER = "seller"
    COUNTERPARTY = "counterparty"  # the party who did not create the deal
    EITHER = "either"  # buyer or seller


class Action(enum.StrEnum):
    ACCEPT = "accept"
    DECLINE = "decline"
    FUND = "fund"
    DELIVER = "deliver"
    RELEASE = "release"
    DISPUTE = "dispute"
    CANCEL = "cancel"
    # The buyer calls off a funded deal the seller did not deliver in time.
    REFUND = "refund"


class DealParties(Protocol):
    creator_id: int
    buyer_id: int | None
    seller_id: int | None
    status: str


# action → {from status: (role, to status)}
RULES: dict[Action, dict[DealStatus, tuple[Role, DealStatus]]] = {
    Action.ACCEPT: {DealStatus.PENDING: (Role.COUNTERPARTY, DealStatus.ACCEPTED)},
    Action.DECLINE: {DealStatus.PENDING: (Role.COUNTERPARTY, DealStatus.DECLINED)},
    Action.FUND: {DealStatus.ACCEPTED: (Role.BUYER, DealStatus.FUNDED)},
    Action.DELIVER: {DealStatus.FUNDED: (Role.SELLER, DealStatus.DELIVERED)},
    Action.RELEASE: {
        DealStatus.FUNDED: (Role.BUYER, DealStatus.RELEASED),
        DealStatus.DELIVERED: (Role.BUYER, DealStatus.RELEASED),
    },
    Action.DISPUTE: {
        DealStatus.FUNDED: (Role.EITHER, DealStatus.DISPUTED),
        DealStatus.DELIVERED: (Role.EITHER, DealStatus.DISPUTED),
    },
    # Before funding either party may call it off; after funding only the
    # seller may, and the buyer is refunded.
    Action.CANCEL: {
        DealStatus.PENDING: (Role.EITHER, DealStatus.CANCELLED),
        DealStatus.ACCEPTED: (Role.EITHER, DealStatus.CANCELLED),
        DealStatus.FUNDED: (Role.SELLER, DealStatus.REFUNDED),
        DealStatus.DELIVERED: (Role.SELLER, DealStatus.REFUNDED),
    },
    # Only past the delivery deadline (AFTER_DEADLINE).
    Action.REFUND: {DealStatus.FUNDED: (Role.BUYER, DealStatus.REFUNDED)},
}

# Actions open only once a clock of the deal has run out: action → the deal's
# field holding that moment (None: the deal has no such clock, never open).
AFTER_DEADLINE: dict[Action, str] = {Action.REFUND: "deliver_due_at"}


class Timer(enum.StrEnum):
    """What the jobs loop does to a deal when one of its clocks runs out."""

    EXPIRE = "expire"  # not accepted and funded by the deal's deadline
    AUTO_RELEASE = "auto_release"  # delivered, neither released nor disputed in time


# timer → {from status: to status}; nobody's action, so no role.
TIMERS: dict[Timer, dict[DealStatus, DealStatus]] = {
    Timer.EXPIRE: {
        DealStatus.PENDING: DealStatus.EXPIRED,
        DealStatus.ACCEPTED: DealStatus.EXPIRED,
    },
    Timer.AUTO_RELEASE: {DealStatus.DELIVERED: DealStatus.RELEASED},
}


# action → the statuses it can leave a deal in (a press finding the deal in one
# of them may be finding its own move, made already)
DESTINATIONS: dict[Action, frozenset[DealStatus]] = {
    action: frozenset(to for _, to in by_status.values()) for action, by_status in RULES.items()
}


def has_role(deal: DealParties, user_id: int, role: Role) -> bool:
    match role:
        case Role.BUYER:
            return deal.buyer_id == user_id
        case Role.SELLER:
            return deal.seller_id == user_id
        case Role.EITHER:
            return user_id in (deal.buyer_id, deal.seller_id)
        case Role.COUNTERPARTY:
            return user_id in (deal.buyer_id, deal.seller_id) and user_id != deal.creator_id


def is_party(deal: DealParties, user_id: int) -> bool:
    return user_id in (deal.buyer_id, deal.seller_id)


def past_deadline(deal: DealParties, action: Action, now: datetime | None = None) -> bool:
    """True unless `action` waits for a clock of `deal` that has not run out
    (by `now`, else this moment): what the bot shows. The service leaves the
    last word to the database's clock, in the guarded statement."""
    field = AFTER_DEADLINE.get(action)
    if field is None:
        return True
    due: datetime | None = getattr(deal, field, None)
    return due is not None and due <= (now or datetime.now(UTC))


def allowed_actions(
    deal: DealParties, user_id: int, now: datetime | None = None
) -> tuple[Action, ...]:
    """The actions `user_id` may take on `deal` right now, in display order."""
    status = DealStatus(deal.status)
    allowed = []
    for action, by_status in RULES.items():
        rule = by_status.get(status)
        if (
            rule is not None
            and has_role(deal, user_id, rule[0])
            and past_deadline(deal, action, now)
        ):
            allowed.append(action)
    return tuple(allowed)
