"""Joining a deal by invitation: previewing the link, accepting (the joiner
becomes the other party and accepts) and declining an invitation addressed to
you."""

from __future__ import annotations

from typing import Any

from bot.services.base import Actor, Outcome
from bot.services.deals.steps import (
    DealSteps,
    changed_event,
)
from bot.services.errors import (
    InvitationUnavailable,
    NotAllowed,
    Refusal,
    SelfDeal,
    UserBlocked,
)
from bot.services.rules import is_party
from bot.services.views import DealView, InvitationPreview, deal_view
from db import UnitOfWork
from db.models import (
    DealStatus,
    InvitationStatus,
    NotificationKind,
    UserStatus,
)
from db.sql.deals import (
    CLOSE_INVITATION,
    DEAL_BY_CODE,
    LOCK_INVITATION,
    LOCK_INVITED_DEAL,
    READ_INVITATION,
)


class DealInvitations(DealSteps):
    async def preview_invitation(self, viewer: Actor, code: str) -> InvitationPreview:
        """The deal behind an invitation link, if `viewer` may take it up."""
        async with self.ctx.db.reader.connect() as conn:
            invitation = (await conn.execute(READ_INVITATION, {"code": code})).first()
            if invitation is None:
                raise InvitationUnavailable(Refusal.INVITATION_NOT_VALID)
            row = (await conn.execute(DEAL_BY_CODE, {"code": invitation.deal_code})).one()
        deal = deal_view(row)
        self._check_invitation(invitation, deal, viewer, getattr(viewer, "username", None))
        addressed = invitation.telegram_id is not None or invitation.username is not None
        return InvitationPreview(deal, addressed)

    # -- invitations --------------------------------------------------------

    async def accept_invitation(
        self, actor: Actor, invitation_code: str, username: str | None = None
    ) -> Outcome[DealView]:
        """Join the deal behind an invitation as its other party, and accept it."""

        async def work(uow: UnitOfWork) -> DealView:
            invitation, deal, locked = await self._lock_invitation(uow, actor, invitation_code)
            self._check_invitation(invitation, deal, actor, username)
            if locked.actor_status != UserStatus.ACTIVE:
                raise UserBlocked(Refusal.ACCOUNT_BLOCKED)
            self._refuse_forward(deal, locked, DealStatus.ACCEPTED)
            changed = await self._transition(
                uow,
                deal,
                actor.id,
                DealStatus.ACCEPTED,
                "joined by invitation",
                joiner=actor.id,
                notify=NotificationKind.JOINED,
            )
            await uow.execute(
                CLOSE_INVITATION,
                {
                    "id": invitation.id,
                    "status": InvitationStatus.ACCEPTED.value,
                    "telegram_id": actor.telegram_id,
                },
            )
            uow.record(changed_event(changed, actor))
            return changed

        return await self.transaction(work)

    async def decline_invitation(
        self, actor: Actor, invitation_code: str, username: str | None = None
    ) -> Outcome[DealView]:
        """Turn down an invitation addressed to you; the deal is declined."""

        async def work(uow: UnitOfWork) -> DealView:
            invitation, deal, _ = await self._lock_invitation(uow, actor, invitation_code)
            self._check_invitation(invitation, deal, actor, username)
            if invitation.telegram_id is None and invitation.username is None:
                raise NotAllowed(Refusal.OPEN_INVITATION)
            changed = await self._transition(
                uow,
                deal,
                actor.id,
                DealStatus.DECLINED,
                "invitation declined",
                notify=NotificationKind.INVITATION_DECLINED,
            )
            await uow.execute(
                CLOSE_INVITATION,
                {
                    "id": invitation.id,
                    "status": InvitationStatus.DECLINED.value,
                    "telegram_id": actor.telegram_id,
                },
            )
            uow.record(changed_event(changed, actor))
            return changed

        return await self.transaction(work)

    async def _lock_invitation(
        self, uow: UnitOfWork, actor: Actor, code: str
    ) -> tuple[Any, DealView, Any]:
        """The invitation and its deal, both locked: the deal first, as every
        path that locks both does (see LOCK_INVITED_DEAL)."""
        locked = (
            await uow.execute(LOCK_INVITED_DEAL, {"invitation_code": code, "actor_id": actor.id})
        ).first()
        invitation = (
            (await uow.execute(LOCK_INVITATION, {"code": code})).first()
            if locked is not None
            else None
        )
        if locked is None or invitation is None:
            raise InvitationUnavailable(Refusal.INVITATION_NOT_VALID)
        return invitation, deal_view(locked), locked

    @staticmethod
    def _check_invitation(
        invitation: Any, deal: DealView, viewer: Actor, username: str | None
    ) -> None:
        if deal.creator_id == viewer.id:
            raise SelfDeal(Refusal.OWN_INVITATION)
        if is_party(deal, viewer.id):
            raise InvitationUnavailable(Refusal.ALREADY_A_PARTY)
        if invitation.status != InvitationStatus.ACTIVE or deal.status != DealStatus.PENDING:
            raise InvitationUnavailable(Refusal.INVITATION_USED)
        if invitation.expired:
            raise InvitationUnavailable(Refusal.INVITATION_EXPIRED)
        if not addressed_to(invitation, viewer.telegram_id, username):
            raise InvitationUnavailable(Refusal.INVITATION_FOR_SOMEONE_ELSE)


def addressed_to(invitation: Any, telegram_id: int, username: str | None) -> bool:
    """Whether `invitation` is for whoever has this Telegram id and @username
    now. One to an @username is claimed, bound to their Telegram id, by the
    first to use the bot holding that name (UserService.register): from then on
    it is theirs, even after a rename, and no later holder of the name's."""
    if invitation.telegram_id is None and invitation.username is None:
        return True  # an open link: anyone's
    if invitation.telegram_id is not None:
        return invitation.telegram_id == telegram_id
    return username is not None and invitation.username == username.lower()
