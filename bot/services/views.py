"""Plain read models the services hand back (no ORM objects leave a transaction)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Row


class DealView(msgspec.Struct, frozen=True):
    id: int
    code: str
    creator_id: int
    buyer_id: int | None
    seller_id: int | None
    amount: int
    fee: int
    fee_bps: int
    currency: str
    description: str
    status: str
    status_before_dispute: str | None
    created_at: datetime
    funded_at: datetime | None
    deadline_at: datetime
    version: int
    buyer_telegram_id: int | None
    seller_telegram_id: int | None
    buyer_name: str | None
    seller_name: str | None
    # The clocks: delivery due (funded), automatic release due (delivered).
    deliver_due_at: datetime | None = None
    release_due_at: datetime | None = None
    # Set once an admin split the deal: the seller's part and the fee taken from it.
    split_seller: int | None = None
    split_fee: int | None = None

    @property
    def telegram_ids(self) -> tuple[int, ...]:
        return tuple(t for t in (self.buyer_telegram_id, self.seller_telegram_id) if t is not None)

    @property
    def payout(self) -> int:
        """What the seller receives on release."""
        return self.amount - self.fee

    @property
    def refund(self) -> int:
        """What a split returned to the buyer (0 unless split)."""
        return self.amount - self.split_seller if self.split_seller is not None else 0

    def role_of(self, user_id: int | None) -> str | None:
        """Which party `user_id` is: "buyer", "seller", or None for anyone else."""
        if user_id is not None and user_id == self.buyer_id:
            return "buyer"
        if user_id is not None and user_id == self.seller_id:
            return "seller"
        return None


class InvitationView(msgspec.Struct, frozen=True):
    code: str
    deal_code: str
    telegram_id: int | None
    username: str | None
    status: str
    expires_at: datetime


class InvitationPreview(msgspec.Struct, frozen=True):
    deal: DealView
    # Sent to someone in particular (who may decline), or an open link.
    addressed: bool


class CreatedDeal(msgspec.Struct, frozen=True):
    deal: DealView
    # Set when the counterparty is not on the bot yet or the deal is open to a link.
    invitation: InvitationView | None = None


class UserView(msgspec.Struct, frozen=True):
    id: int
    telegram_id: int
    username: str | None
    first_name: str
    status: str
    is_admin: bool
    version: int
    created: bool = False
    # Invitations waiting for them, counted on first contact or a profile change.
    invited: int = 0


class WithdrawalView(msgspec.Struct, frozen=True):
    id: int
    user_id: int
    currency: str
    amount: int
    destination: str
    status: str
    created_at: datetime
    decided_at: datetime | None
    note: str | None
    telegram_id: int | None = None


def deal_view(row: Row[Any]) -> DealView:
    """A row of a statement that reads a deal as `DealView` (db.sql.deals)."""
    mapping = row._mapping
    return DealView(**{name: mapping[name] for name in DealView.__struct_fields__})


def created_deal(row: Row[Any]) -> CreatedDeal:
    """A DEAL_BY_CREATE_KEY row."""
    mapping = row._mapping
    invitation = None
    if mapping["invitation_code"] is not None:
        invitation = InvitationView(
            code=mapping["invitation_code"],
            deal_code=mapping["code"],
            telegram_id=mapping["invitation_telegram_id"],
            username=mapping["invitation_username"],
            status=mapping["invitation_status"],
            expires_at=mapping["invitation_expires_at"],
        )
    return CreatedDeal(deal=deal_view(row), invitation=invitation)
