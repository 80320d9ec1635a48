"""An admin's settlement of a dispute: a release to the seller, a refund, or a
split (part to the seller, the rest refunded to the buyer)."""

from __future__ import annotations

from typing import Any, Literal

from bot.services.base import Actor, Outcome
from bot.services.deals.standing import Standing
from bot.services.deals.steps import (
    DealSteps,
    bounded_text,
    changed_event,
    normalise_code,
)
from bot.services.errors import (
    AlreadyDone,
    InvalidInput,
    NotAllowed,
    Refusal,
    WrongState,
)
from bot.services.views import DealView
from db import UnitOfWork
from db.models import (
    DealStatus,
    NotificationKind,
    UserStatus,
)


class DealSettlement(DealSteps):
    async def resolve(
        self,
        admin: Actor,
        code: str,
        outcome: Literal["release", "refund"],
        note: str | None = None,
    ) -> Outcome[DealView]:
        """Settle a dispute: pay the seller (fee taken) or refund the buyer."""
        if outcome not in ("release", "refund"):
            raise InvalidInput(Refusal.DISPUTE_OUTCOME)
        to_status = DealStatus.RELEASED if outcome == "release" else DealStatus.REFUNDED
        reason = (
            bounded_text(note, self.settings.reason_max_length, "note")
            if note
            else f"resolved by admin: {outcome}"
        )
        code = normalise_code(code)

        async def work(uow: UnitOfWork) -> DealView:
            deal, locked = await self._lock(uow, admin, code)
            self._require_admin(locked)
            if deal.status == to_status and locked.last_actor_id == admin.id:
                # this admin's own settlement, pressed again or delivered again
                raise AlreadyDone(
                    Refusal.NO_DISPUTE, current=deal, deal=deal.code, status=to_status
                )
            if deal.status != DealStatus.DISPUTED:
                raise WrongState(
                    Refusal.NO_DISPUTE,
                    current=deal,
                    deal=deal.code,
                    status=DealStatus(deal.status),
                )
            changed = await self._transition(
                uow, deal, admin.id, to_status, reason, notify=NotificationKind.RESOLVE
            )
            await self._move_money(uow, deal, to_status)
            uow.record(changed_event(changed, admin))
            return changed

        return await self.transaction(work)

    async def split(
        self,
        admin: Actor,
        code: str,
        seller_part: int,
        *,
        expected_version: int | None = None,
    ) -> Outcome[DealView]:
        """Settle a dispute in part: `seller_part` (minor units, more than 0 and
        less than the amount) to the seller, less the fee at the deal's frozen
        rate on that part (`split_fee`), and the rest refunded to the buyer, in
        one ledger movement. `expected_version`: the deal's version when the
        admin was asked to confirm; a deal that moved on since is left alone."""
        code = normalise_code(code)

        async def work(uow: UnitOfWork) -> DealView:
            deal, locked = await self._lock(uow, admin, code)
            self._require_admin(locked)
            status = DealStatus(deal.status)
            if (
                status is DealStatus.SPLIT
                and deal.split_seller == seller_part
                and locked.last_actor_id == admin.id
            ):
                # this admin's own split, pressed again or delivered again
                raise AlreadyDone(Refusal.NO_DISPUTE, current=deal, deal=deal.code, status=status)
            if status is not DealStatus.DISPUTED:
                raise WrongState(Refusal.NO_DISPUTE, current=deal, deal=deal.code, status=status)
            if expected_version is not None and deal.version != expected_version:
                raise WrongState(
                    Refusal.CHANGED_SINCE_ASKED, current=deal, deal=deal.code, status=status
                )
            if not (isinstance(seller_part, int) and 0 < seller_part < deal.amount):
                raise InvalidInput(
                    Refusal.SPLIT_OUT_OF_RANGE, amount=deal.amount, currency=deal.currency
                )
            changed = await self._transition(
                uow,
                deal,
                admin.id,
                DealStatus.SPLIT,
                "resolved by admin: split",
                notify=NotificationKind.RESOLVE,
                split=(seller_part, split_fee(deal.fee_bps, seller_part)),
                # completed for both, the seller's part as volume, lost by neither
                standing=Standing(completes=True, volume=seller_part),
            )
            await self._move_money(uow, changed, DealStatus.SPLIT)
            uow.record(changed_event(changed, admin))
            return changed

        return await self.transaction(work)

    @staticmethod
    def _require_admin(locked: Any) -> None:
        """The actor's own row (read with the lock) is an active admin's."""
        if not locked.actor_is_admin or locked.actor_status != UserStatus.ACTIVE:
            raise NotAllowed(Refusal.ADMIN_SETTLES_DISPUTES)


def split_fee(fee_bps: int, seller_part: int) -> int:
    """The fee on a split's seller part: the deal's frozen rate on that part
    only, rounded down as every fee is (`Currency.fee_for`); the refunded part
    pays none."""
    return seller_part * fee_bps // 10_000
