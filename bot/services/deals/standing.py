"""What a deal's move does to its parties' records. Pure: no I/O.

The counters themselves are moved in SQL by the statement of the move
(`db.sql.reputation`, spliced into `db.sql.deals.TRANSITION`); this says what
that statement counts, so every path that moves a deal through
`DealSteps._transition` (a party, an admin, a job) counts alike.

The rules:

- A deal is **completed** when it is released to the seller (by the buyer, an
  admin's settlement or an automatic release) or refunded by an admin's
  settlement of a dispute; a cancel, a refund the seller grants, a decline or
  an expiry completes nothing. Completed counts for both parties.
- **Volume** is what was released: the deal's amount when released, nothing
  when refunded (no money changed hands). Each party's volume is kept per
  currency.
- **Disputes opened** counts for whoever opened it, when they do.
- **Disputes lost** counts for the party a settlement went against: the buyer
  when an admin releases, the seller when an admin refunds.
- A **split** settlement (part to each side) completes the deal for both, its
  volume is the part released to the seller, and nobody lost:
  `Standing(completes=True, volume=<seller's part>)`.
"""

from __future__ import annotations

from typing import NamedTuple

from bot.services.rules import DealParties
from bot.services.views import DealView
from db.models import DealStatus


class Standing(NamedTuple):
    """The counters one move of a deal changes (none by default)."""

    completes: bool = False
    volume: int = 0  # minor units of the deal's currency, each party
    opener: int | None = None  # opened a dispute
    loser: int | None = None  # a settlement went against them

    def users(self, deal: DealParties) -> frozenset[int]:
        """Whose record changes."""
        if self.completes:
            return frozenset(u for u in (deal.buyer_id, deal.seller_id) if u is not None)
        return frozenset(u for u in (self.opener, self.loser) if u is not None)


UNCHANGED = Standing()


def standing_change(deal: DealView, to_status: DealStatus, actor_id: int | None) -> Standing:
    """What moving `deal` (as it is before the move) to `to_status` counts."""
    settled = deal.status == DealStatus.DISPUTED
    match to_status:
        case DealStatus.DISPUTED:
            return Standing(opener=actor_id)
        case DealStatus.RELEASED:
            return Standing(True, deal.amount, loser=deal.buyer_id if settled else None)
        case DealStatus.REFUNDED if settled:
            return Standing(True, 0, loser=deal.seller_id)
    return UNCHANGED


def is_completed(deal: DealView) -> bool:
    """The deal is completed (see the rules above): its parties may rate each other."""
    return deal.status in (DealStatus.RELEASED, DealStatus.SPLIT) or (
        deal.status == DealStatus.REFUNDED and deal.status_before_dispute is not None
    )
