"""A deal's status speaks to its viewer: every status, for its buyer, its
seller and anyone else (an admin), on a card and in a list."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bot.services.rules import allowed_actions
from bot.telegram.statuses import NEXT_MOVE, card_status, list_status
from db.models import DealStatus

BUYER, SELLER, ADMIN = 1, 2, None


@dataclass(frozen=True)
class Deal:
    status: str
    creator_id: int = BUYER
    buyer_id: int | None = BUYER
    seller_id: int | None = SELLER


# status, creator -> (buyer's card, seller's card, admin's card)
CARDS = {
    (DealStatus.PENDING, BUYER): (
        "⏳ waiting for the seller to accept",
        "⏳ waiting for you to accept",
        "⏳ waiting for the seller to accept",
    ),
    (DealStatus.PENDING, SELLER): (
        "⏳ waiting for you to accept",
        "⏳ waiting for the buyer to accept",
        "⏳ waiting for the buyer to accept",
    ),
    (DealStatus.ACCEPTED, BUYER): (
        "🤝 accepted — waiting for you to fund",
        "🤝 accepted — waiting for the buyer to fund",
        "🤝 accepted — waiting for the buyer to fund",
    ),
    (DealStatus.FUNDED, BUYER): (
        "🔒 funded — the money is held in escrow; waiting for the seller to deliver",
        "🔒 funded — the money is held in escrow; waiting for you to deliver",
        "🔒 funded — the money is held in escrow; waiting for the seller to deliver",
    ),
    (DealStatus.DELIVERED, BUYER): (
        "📦 delivered — waiting for you to release the payment",
        "📦 delivered — waiting for the buyer to release the payment",
        "📦 delivered — waiting for the buyer to release the payment",
    ),
    (DealStatus.DISPUTED, BUYER): ("⚠️ in dispute — waiting for an admin to decide",) * 3,
    (DealStatus.RELEASED, BUYER): (
        "✅ released to the seller",
        "✅ released — the payment is in your wallet",
        "✅ released to the seller",
    ),
    (DealStatus.REFUNDED, BUYER): (
        "↩️ refunded — the money is back in your wallet",
        "↩️ refunded to the buyer",
        "↩️ refunded to the buyer",
    ),
    (DealStatus.CANCELLED, BUYER): ("✖️ cancelled",) * 3,
    (DealStatus.DECLINED, BUYER): (
        "✖️ declined by the seller",
        "✖️ you declined it",
        "✖️ declined by the seller",
    ),
    (DealStatus.DECLINED, SELLER): (
        "✖️ you declined it",
        "✖️ declined by the buyer",
        "✖️ declined by the buyer",
    ),
    (DealStatus.EXPIRED, BUYER): ("⌛ expired — it was not accepted and funded in time",) * 3,
    (DealStatus.SPLIT, BUYER): (
        "✂️ split by an admin — part refunded to you",
        "✂️ split by an admin — part paid to you",
        "✂️ split by an admin — part to the seller, the rest refunded",
    ),
}

LISTS = {
    (DealStatus.PENDING, BUYER): (
        "waiting for the seller to accept",
        "waiting for you to accept",
        "waiting for the seller to accept",
    ),
    (DealStatus.PENDING, SELLER): (
        "waiting for you to accept",
        "waiting for the buyer to accept",
        "waiting for the buyer to accept",
    ),
    (DealStatus.ACCEPTED, BUYER): (
        "waiting for you to fund",
        "waiting for the buyer to fund",
        "waiting for the buyer to fund",
    ),
    (DealStatus.FUNDED, BUYER): (
        "waiting for the seller to deliver",
        "waiting for you to deliver",
        "waiting for the seller to deliver",
    ),
    (DealStatus.DELIVERED, BUYER): (
        "waiting for you to release",
        "waiting for the buyer to release",
        "waiting for the buyer to release",
    ),
    (DealStatus.DISPUTED, BUYER): ("in dispute",) * 3,
    (DealStatus.RELEASED, BUYER): ("released", "released to you", "released"),
    (DealStatus.REFUNDED, BUYER): ("refunded to you", "refunded", "refunded"),
    (DealStatus.CANCELLED, BUYER): ("cancelled",) * 3,
    (DealStatus.DECLINED, BUYER): ("declined", "declined by you", "declined"),
    (DealStatus.DECLINED, SELLER): ("declined by you", "declined", "declined"),
    (DealStatus.EXPIRED, BUYER): ("expired",) * 3,
    (DealStatus.SPLIT, BUYER): ("split",) * 3,
}


def test_every_status_is_worded():
    assert {status for status, _ in CARDS} == set(DealStatus)
    assert set(LISTS) == set(CARDS)


@pytest.mark.parametrize(("status", "creator"), list(CARDS), ids=str)
def test_each_viewer_reads_their_own_card_and_list_wording(status, creator):
    deal = Deal(status, creator_id=creator)
    said = tuple(card_status(deal, viewer) for viewer in (BUYER, SELLER, ADMIN))
    listed = tuple(list_status(deal, viewer) for viewer in (BUYER, SELLER, ADMIN))
    assert said == CARDS[status, creator]
    assert listed == LISTS[status, creator]


@pytest.mark.parametrize("status", list(NEXT_MOVE), ids=str)
def test_you_are_waited_for_exactly_when_the_rules_let_you_move_it_on(status):
    # the words never promise a button the card does not show, nor hide one
    action, _ = NEXT_MOVE[status]
    for creator in (BUYER, SELLER):
        deal = Deal(status, creator_id=creator)
        for viewer in (BUYER, SELLER):
            told = "waiting for you" in card_status(deal, viewer)
            assert told == (action in allowed_actions(deal, viewer)), (status, creator, viewer)


@pytest.mark.parametrize(
    ("deal", "viewer", "said"),
    [
        # the seller was invited by a link and has not joined yet
        (
            Deal(DealStatus.PENDING, seller_id=None),
            BUYER,
            "⏳ waiting for the seller to join and accept",
        ),
        (
            Deal(DealStatus.PENDING, seller_id=None),
            ADMIN,
            "⏳ waiting for the seller to join and accept",
        ),
        # the buyer was invited by a link, the seller made the deal
        (
            Deal(DealStatus.PENDING, creator_id=SELLER, buyer_id=None),
            SELLER,
            "⏳ waiting for the buyer to join and accept",
        ),
        # someone who is neither party (an admin, a stranger) reads it as an admin does
        (Deal(DealStatus.ACCEPTED), 99, "🤝 accepted — waiting for the buyer to fund"),
    ],
)
def test_a_party_not_joined_yet_and_a_stranger(deal, viewer, said):
    assert card_status(deal, viewer) == said
