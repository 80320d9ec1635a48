"""Which buttons each party sees, status by status."""

from dataclasses import dataclass

import pytest

from bot.services.rules import Action, allowed_actions
from db.models import DealStatus

BUYER, SELLER, STRANGER = 1, 2, 3


@dataclass
class Deal:
    status: str
    creator_id: int = BUYER
    buyer_id: int | None = BUYER
    seller_id: int | None = SELLER


A = Action


@pytest.mark.parametrize(
    ("status", "buyer", "seller"),
    [
        (DealStatus.PENDING, (A.CANCEL,), (A.ACCEPT, A.DECLINE, A.CANCEL)),
        (DealStatus.ACCEPTED, (A.FUND, A.CANCEL), (A.CANCEL,)),
        (DealStatus.FUNDED, (A.RELEASE, A.DISPUTE), (A.DELIVER, A.DISPUTE, A.CANCEL)),
        (DealStatus.DELIVERED, (A.RELEASE, A.DISPUTE), (A.DISPUTE, A.CANCEL)),
        (DealStatus.DISPUTED, (), ()),
        (DealStatus.RELEASED, (), ()),
        (DealStatus.REFUNDED, (), ()),
        (DealStatus.CANCELLED, (), ()),
        (DealStatus.DECLINED, (), ()),
        (DealStatus.EXPIRED, (), ()),
    ],
)
def test_each_party_sees_only_what_it_may_do(status, buyer, seller):
    deal = Deal(status)
    assert allowed_actions(deal, BUYER) == buyer
    assert allowed_actions(deal, SELLER) == seller
    assert allowed_actions(deal, STRANGER) == ()


def test_the_invited_side_accepts_whoever_created_the_deal():
    deal = Deal(DealStatus.PENDING, creator_id=SELLER)
    assert allowed_actions(deal, BUYER) == (A.ACCEPT, A.DECLINE, A.CANCEL)
    assert allowed_actions(deal, SELLER) == (A.CANCEL,)


def test_an_open_invitation_has_nobody_on_the_other_side():
    deal = Deal(DealStatus.PENDING, creator_id=SELLER, buyer_id=None)
    assert allowed_actions(deal, SELLER) == (A.CANCEL,)
    assert allowed_actions(deal, STRANGER) == ()
