"""An admin's settlement of a dispute: a release to the seller or a refund."""

from __future__ import annotations

from typing import Literal

from bot.services.base import Actor, Outcome
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
            if not locked.actor_is_admin or locked.actor_status != UserStatus.ACTIVE:
                raise NotAllowed(Refusal.ADMIN_SETTLES_DISPUTES)
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
