"""Which buttons each party sees, status by status."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from bot.services.rules import RULES, TIMERS, Action, Role, Timer, allowed_actions
from db.models import DealStatus

BUYER, SELLER, STRANGER = 1, 2, 3


@dataclass
class Deal:
    status: str
    creator_id: int = BUYER
    buyer_id: int | None = BUYER
    seller_id: int | None = SELLER
    deliver_due_at: datetime | None = None


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


NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("due", "buyer"),
    [
        (None, (A.RELEASE, A.DISPUTE)),  # no delivery clock: never
        (NOW + timedelta(seconds=1), (A.RELEASE, A.DISPUTE)),
        (NOW, (A.RELEASE, A.DISPUTE, A.REFUND)),
        (NOW - timedelta(days=1), (A.RELEASE, A.DISPUTE, A.REFUND)),
    ],
)
def test_the_buyer_may_cancel_for_a_refund_once_the_delivery_deadline_passed(due, buyer):
    deal = Deal(DealStatus.FUNDED, deliver_due_at=due)
    assert allowed_actions(deal, BUYER, NOW) == buyer
    assert allowed_actions(deal, SELLER, NOW) == (A.DELIVER, A.DISPUTE, A.CANCEL)
    # delivered in time, then the deadline passes: nothing to cancel for
    delivered = Deal(DealStatus.DELIVERED, deliver_due_at=due)
    assert A.REFUND not in allowed_actions(delivered, BUYER, NOW)


def test_the_clocks_move_deals_only_where_the_parties_could():
    assert TIMERS[Timer.AUTO_RELEASE] == {DealStatus.DELIVERED: DealStatus.RELEASED}
    assert set(TIMERS[Timer.EXPIRE]) == {DealStatus.PENDING, DealStatus.ACCEPTED}
    # the automatic release ends where the buyer's release from there does
    assert RULES[A.RELEASE][DealStatus.DELIVERED] == (Role.BUYER, DealStatus.RELEASED)
    assert RULES[A.REFUND] == {DealStatus.FUNDED: (Role.BUYER, DealStatus.REFUNDED)}
