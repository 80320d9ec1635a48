"""Deal use cases: create, accept, decline, fund, deliver, release, dispute,
resolve, cancel, expire, and joining by invitation. Each is one transaction.

Every state change locks the deal row, checks the rule table against what the
deal really is now, then updates it guarded by that status; a double press, a
retry or a race between replicas finds the deal already moved and is told so
(`WrongState` carrying the deal as it is).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy.exc import IntegrityError

from bot.services.base import Actor, Outcome, Service, violated_constraint
from bot.services.deal_sql import (
    CLOSE_INVITATION,
    DEAL_BY_CREATE_KEY,
    EXPIRE_DUE,
    FIND_USER_BY_TELEGRAM_ID,
    INSERT_DEAL,
    INSERT_INVITATION,
    LOCK_DEAL,
    LOCK_INVITATION,
    LOCK_INVITED_DEAL,
    NEARING_DEADLINE,
    READ_INVITATION,
    TRANSITION,
    created_deal,
    deal_view,
)
from bot.services.errors import (
    InvalidInput,
    InvitationUnavailable,
    NotAllowed,
    NotFound,
    SelfDeal,
    UserBlocked,
    WrongState,
)
from bot.services.ledger import Leg, post_movement
from bot.services.reads import read_as_admin
from bot.services.rules import RULES, Action, Role, has_role, is_party
from bot.services.users import Person, parse_username
from bot.services.views import CreatedDeal, DealView, InvitationPreview, InvitationView
from db import UnitOfWork
from db.events import DealChanged
from db.models import (
    DealStatus,
    InvitationStatus,
    LedgerAccount,
    LedgerKind,
    NotificationKind,
    UserStatus,
)
from db.notifications import decode_notices
from db.queries import ADMIN_DEAL_BY_CODE, DEAL_BY_CODE

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L
CODE_LENGTH = 8
CODE_CONSTRAINT = "uq_escrows_code"
CREATE_KEY_CONSTRAINT = "uq_escrows_creator_create_key"
CREATE_KEY_LENGTH = 64  # escrows.create_key


STATUS_WORDS = {
    DealStatus.PENDING: "waiting to be accepted",
    DealStatus.ACCEPTED: "accepted and waiting for funding",
    DealStatus.FUNDED: "funded",
    DealStatus.DELIVERED: "marked as delivered",
    DealStatus.DISPUTED: "in dispute",
    DealStatus.RELEASED: "already released to the seller",
    DealStatus.REFUNDED: "already refunded to the buyer",
    DealStatus.CANCELLED: "cancelled",
    DealStatus.DECLINED: "declined",
    DealStatus.EXPIRED: "expired",
}

ACTION_WORDS = {
    Action.ACCEPT: "accept it",
    Action.DECLINE: "decline it",
    Action.FUND: "fund it",
    Action.DELIVER: "mark it as delivered",
    Action.RELEASE: "release it",
    Action.DISPUTE: "open a dispute",
    Action.CANCEL: "cancel it",
}

ROLE_WORDS = {
    Role.BUYER: "Only the buyer can",
    Role.SELLER: "Only the seller can",
    Role.COUNTERPARTY: "Only the other party can",
    Role.EITHER: "Only a party to this deal can",
}

FINAL = frozenset(
    {
        DealStatus.RELEASED,
        DealStatus.REFUNDED,
        DealStatus.CANCELLED,
        DealStatus.DECLINED,
        DealStatus.EXPIRED,
    }
)


def new_deal_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def new_invitation_code() -> str:
    # 24 URL-safe characters (144 random bits): a valid /start payload, unguessable.
    return secrets.token_urlsafe(18)


def normalise_code(code: str) -> str:
    return code.strip().upper().removeprefix("#")


def _changed(deal: DealView) -> DealChanged:
    return DealChanged(deal.id, deal.code, deal.version, deal.status, deal.telegram_ids)


def bounded_text(value: str, limit: int, what: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidInput(f"The {what} can't be empty.")
    if len(value) > limit:
        raise InvalidInput(f"The {what} is too long: {len(value)} characters, at most {limit}.")
    return value


class DealService(Service):
    # -- reads --------------------------------------------------------------

    async def get(self, viewer: Actor, code: str, *, as_admin: bool = False) -> DealView:
        """A deal its viewer is a party to; with `as_admin`, any deal, if the
        viewer's own row is an active admin (checked in the same statement)."""
        params = {"code": normalise_code(code)}
        async with self.ctx.db.reader.connect() as conn:
            if as_admin:
                rows = await read_as_admin(conn, ADMIN_DEAL_BY_CODE, viewer, params)
            else:
                rows = (await conn.execute(DEAL_BY_CODE, params)).all()
        if not rows:
            raise NotFound("No such deal.")
        deal = deal_view(rows[0])
        if not as_admin and not is_party(deal, viewer.id):
            raise NotFound("No such deal.")
        return deal

    async def created_with(self, creator: Actor, create_key: str) -> CreatedDeal | None:
        """The deal `creator` made with this idempotency key, if any (one read)."""
        async with self.ctx.db.reader.connect() as conn:
            row = (
                await conn.execute(
                    DEAL_BY_CREATE_KEY, {"creator_id": creator.id, "create_key": create_key}
                )
            ).first()
        return created_deal(row) if row is not None else None

    async def preview_invitation(self, viewer: Actor, code: str) -> InvitationPreview:
        """The deal behind an invitation link, if `viewer` may take it up."""
        async with self.ctx.db.reader.connect() as conn:
            invitation = (await conn.execute(READ_INVITATION, {"code": code})).first()
            if invitation is None:
                raise InvitationUnavailable("This invitation link is not valid.")
            row = (await conn.execute(DEAL_BY_CODE, {"code": invitation.deal_code})).one()
        deal = deal_view(row)
        self._check_invitation(invitation, deal, viewer, getattr(viewer, "username", None))
        addressed = invitation.telegram_id is not None or invitation.username is not None
        return InvitationPreview(deal, addressed)

    # -- creating -----------------------------------------------------------

    async def create(
        self,
        creator: Actor,
        *,
        role: Literal["buyer", "seller"],
        currency: str,
        amount: int,
        description: str,
        counterparty: Person | int | str | None,
        create_key: str | None = None,
    ) -> Outcome[CreatedDeal]:
        """Open a deal with `counterparty`:

        - a `Person` the creator was shown (`UserService.find_by_username`):
          bound to that user row, checked again here (still the same user,
          still active), whoever holds their old @username by now;
        - a Telegram id: whoever has it on the bot, or an invitation for it;
        - an @username: an invitation addressed to that name, never the name's
          holder on the bot (who was not shown to the creator): they join
          through the link like anyone not on the bot yet;
        - None: an invitation link anyone can take up.

        `create_key` (the wizard's id) makes the request idempotent: made again,
        by a retry after an unknown outcome or a second press even without the
        user's lock, it returns the deal (and invitation) the first one made,
        changing nothing and telling nobody again."""
        if create_key is not None and not 0 < len(create_key) <= CREATE_KEY_LENGTH:
            raise InvalidInput("That request can't be used: start the deal again with /new.")
        if role not in ("buyer", "seller"):
            raise InvalidInput("Choose whether you are the buyer or the seller.")
        money = self.currencies[currency]
        if not isinstance(amount, int) or not money.min_amount <= amount <= money.max_amount:
            raise InvalidInput(
                f"The amount must be between {money.format(money.min_amount)} "
                f"and {money.format(money.max_amount)}."
            )
        description = bounded_text(description, self.settings.description_max_length, "description")
        person = counterparty if isinstance(counterparty, Person) else None
        telegram_id = (
            person.telegram_id
            if person is not None
            else counterparty
            if isinstance(counterparty, int)
            else None
        )
        username = parse_username(counterparty) if isinstance(counterparty, str) else None
        if telegram_id == creator.telegram_id:
            raise SelfDeal("You can't open a deal with yourself.")

        async def work(uow: UnitOfWork) -> CreatedDeal:
            if create_key is not None:
                # Before any check that could now refuse (the counterparty
                # blocked since, a name changing hands): made is made.
                made = (
                    await uow.execute(
                        DEAL_BY_CREATE_KEY, {"creator_id": creator.id, "create_key": create_key}
                    )
                ).first()
                if made is not None:
                    return created_deal(made)
            creator_row = await self._require_active(uow, creator)
            if username is not None and username == (creator_row.username or "").lower():
                raise SelfDeal("You can't open a deal with yourself.")
            other = None
            if telegram_id is not None:
                other = (
                    await uow.execute(FIND_USER_BY_TELEGRAM_ID, {"telegram_id": telegram_id})
                ).first()
            if person is not None and (other is None or other.id != person.id):
                # never someone else in place of the person the summary named
                raise NotFound("The person you chose is no longer on the bot.")
            if other is not None:
                if other.id == creator_row.id:
                    raise SelfDeal("You can't open a deal with yourself.")
                if other.status != UserStatus.ACTIVE:
                    raise NotAllowed("That user can't take part in deals.")
            other_id = other.id if other is not None else None
            buyer_id, seller_id = (
                (creator.id, other_id) if role == "buyer" else (other_id, creator.id)
            )
            created = (
                await uow.execute(
                    INSERT_DEAL,
                    {
                        "code": new_deal_code(),
                        "creator_id": creator.id,
                        "buyer_id": buyer_id,
                        "seller_id": seller_id,
                        "amount": amount,
                        "fee": money.fee_for(amount),
                        "fee_bps": money.fee_bps,
                        "currency": money.code,
                        "description": description,
                        "deadline": self.settings.deal_deadline,
                        "create_key": create_key,
                        **self._notify(NotificationKind.INVITED, creator.id),
                    },
                )
            ).one()
            deal = deal_view(created)
            uow.outbox(*decode_notices(created.notices))
            invitation = None
            if other is None:
                row = (
                    await uow.execute(
                        INSERT_INVITATION,
                        {
                            "code": new_invitation_code(),
                            "escrow_id": deal.id,
                            "deal_code": deal.code,
                            "inviter_id": creator.id,
                            "telegram_id": telegram_id,
                            "username": username,
                            "ttl": self.settings.invitation_ttl,
                        },
                    )
                ).one()
                invitation = InvitationView(**row._mapping)
            uow.record(_changed(deal))
            return CreatedDeal(deal=deal, invitation=invitation)

        for attempt in range(3):
            try:
                return await self.transaction(work)
            except IntegrityError as exc:
                constraint = violated_constraint(exc)
                # The same key committed by a concurrent request: the next
                # attempt finds its deal. A deal code drawn twice (1 in 10^12
                # per pair): draw again.
                if constraint not in (CREATE_KEY_CONSTRAINT, CODE_CONSTRAINT) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # -- the parties' actions ----------------------------------------------

    async def accept(self, actor: Actor, code: str) -> Outcome[DealView]:
        return await self._act(actor, code, Action.ACCEPT)

    async def decline(self, actor: Actor, code: str) -> Outcome[DealView]:
        return await self._act(actor, code, Action.DECLINE)

    async def fund(self, actor: Actor, code: str) -> Outcome[DealView]:
        return await self._act(actor, code, Action.FUND)

    async def deliver(self, actor: Actor, code: str) -> Outcome[DealView]:
        return await self._act(actor, code, Action.DELIVER)

    async def release(
        self, actor: Actor, code: str, *, expected_version: int | None = None
    ) -> Outcome[DealView]:
        """Pay the seller. `expected_version`: the deal's version when the buyer
        was asked to confirm; a deal that has moved on since is left alone."""
        return await self._act(actor, code, Action.RELEASE, expected_version=expected_version)

    async def dispute(self, actor: Actor, code: str, reason: str) -> Outcome[DealView]:
        reason = bounded_text(reason, self.settings.reason_max_length, "reason")
        return await self._act(actor, code, Action.DISPUTE, reason=reason)

    async def cancel(
        self, actor: Actor, code: str, *, expected_version: int | None = None
    ) -> Outcome[DealView]:
        """Call the deal off (refunding the buyer once it is funded).
        `expected_version`: as for `release`; a cancel confirmed before funding
        must not become a refund."""
        return await self._act(actor, code, Action.CANCEL, expected_version=expected_version)

    async def _act(
        self,
        actor: Actor,
        code: str,
        action: Action,
        reason: str | None = None,
        *,
        expected_version: int | None = None,
    ) -> Outcome[DealView]:
        code = normalise_code(code)

        async def work(uow: UnitOfWork) -> DealView:
            deal, locked = await self._lock(uow, actor, code)
            if not is_party(deal, actor.id):
                raise NotFound("No such deal.")
            if locked.actor_status != UserStatus.ACTIVE:
                raise UserBlocked("Your account is blocked.")
            if expected_version is not None and deal.version != expected_version:
                # The question was asked about another deal than this one now
                # (a cancel asked before funding would now refund).
                raise WrongState(
                    f"Deal {deal.code} has changed since you were asked: it is "
                    f"{STATUS_WORDS[DealStatus(deal.status)]} now, so nothing was done.",
                    current=deal,
                )
            rule = RULES[action].get(DealStatus(deal.status))
            if rule is None:
                raise WrongState(
                    f"Deal {deal.code} is {STATUS_WORDS[DealStatus(deal.status)]}; "
                    f"you can't {ACTION_WORDS[action]} now.",
                    current=deal,
                )
            role, to_status = rule
            if not has_role(deal, actor.id, role):
                raise NotAllowed(f"{ROLE_WORDS[role]} {ACTION_WORDS[action]}.")
            changed = await self._transition(
                uow,
                deal,
                actor.id,
                to_status,
                reason,
                notify=NotificationKind(action.value),
                admins=self.settings.admins if action is Action.DISPUTE else (),
            )
            await self._move_money(uow, deal, to_status)
            uow.record(_changed(changed))
            return changed

        return await self.transaction(work)

    # -- admin --------------------------------------------------------------

    async def resolve(
        self,
        admin: Actor,
        code: str,
        outcome: Literal["release", "refund"],
        note: str | None = None,
    ) -> Outcome[DealView]:
        """Settle a dispute: pay the seller (fee taken) or refund the buyer."""
        if outcome not in ("release", "refund"):
            raise InvalidInput("A dispute ends in a release or a refund.")
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
                raise NotAllowed("Only an admin can settle disputes.")
            if deal.status != DealStatus.DISPUTED:
                raise WrongState(
                    f"Deal {deal.code} is {STATUS_WORDS[DealStatus(deal.status)]}; "
                    "there is no dispute to settle.",
                    current=deal,
                )
            changed = await self._transition(
                uow, deal, admin.id, to_status, reason, notify=NotificationKind.RESOLVE
            )
            await self._move_money(uow, deal, to_status)
            uow.record(_changed(changed))
            return changed

        return await self.transaction(work)

    async def expire_due(self, limit: int = 500) -> Outcome[list[DealView]]:
        """Expire deals not accepted and funded by their deadline (one batch).

        Safe to run on every replica at once: rows another replica is expiring
        are skipped, not waited for."""

        async def work(uow: UnitOfWork) -> list[DealView]:
            rows = (
                await uow.execute(
                    EXPIRE_DUE, {"limit": limit, **self._notify(NotificationKind.EXPIRE, None)}
                )
            ).all()
            deals = [deal_view(row) for row in rows]
            if rows:  # every row carries all the batch's notifications
                uow.outbox(*decode_notices(rows[0].notices))
            uow.record(*(_changed(deal) for deal in deals))
            return deals

        return await self.transaction(work)

    async def nearing_deadline(self, within_seconds: float, limit: int = 500) -> list[DealView]:
        """Deals still waiting to be accepted or funded whose deadline is within
        `within_seconds` (for reminders; one read, no transaction)."""
        async with self.ctx.db.reader.connect() as conn:
            rows = await conn.execute(
                NEARING_DEADLINE, {"within": timedelta(seconds=within_seconds), "limit": limit}
            )
            return [deal_view(row) for row in rows]

    # -- invitations --------------------------------------------------------

    async def accept_invitation(
        self, actor: Actor, invitation_code: str, username: str | None = None
    ) -> Outcome[DealView]:
        """Join the deal behind an invitation as its other party, and accept it."""

        async def work(uow: UnitOfWork) -> DealView:
            invitation, deal, locked = await self._lock_invitation(uow, actor, invitation_code)
            self._check_invitation(invitation, deal, actor, username)
            if locked.actor_status != UserStatus.ACTIVE:
                raise UserBlocked("Your account is blocked.")
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
            uow.record(_changed(changed))
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
                raise NotAllowed(
                    "This link is open to anyone; if you don't want the deal, just ignore it."
                )
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
            uow.record(_changed(changed))
            return changed

        return await self.transaction(work)

    # -- the steps ----------------------------------------------------------

    async def _lock(self, uow: UnitOfWork, actor: Actor, code: str) -> tuple[DealView, Any]:
        row = (await uow.execute(LOCK_DEAL, {"code": code, "actor_id": actor.id})).first()
        if row is None:
            raise NotFound("No such deal.")
        return deal_view(row), row

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
            raise InvitationUnavailable("This invitation link is not valid.")
        return invitation, deal_view(locked), locked

    @staticmethod
    def _check_invitation(
        invitation: Any, deal: DealView, viewer: Actor, username: str | None
    ) -> None:
        if deal.creator_id == viewer.id:
            raise SelfDeal("This is your own deal's invitation: send the link to the other party.")
        if is_party(deal, viewer.id):
            raise InvitationUnavailable("You are already a party to this deal.")
        if invitation.status != InvitationStatus.ACTIVE or deal.status != DealStatus.PENDING:
            raise InvitationUnavailable("This invitation has already been used or withdrawn.")
        if invitation.expired:
            raise InvitationUnavailable("This invitation has expired.")
        addressed_to = invitation.telegram_id is not None or invitation.username is not None
        if addressed_to and not (
            invitation.telegram_id == viewer.telegram_id
            or (invitation.username and username and invitation.username == username.lower())
        ):
            raise InvitationUnavailable("This invitation is addressed to someone else.")

    async def _require_active(self, uow: UnitOfWork, actor: Actor) -> Any:
        """The actor's row (id, telegram_id, username, status), if active."""
        row = (
            await uow.execute(FIND_USER_BY_TELEGRAM_ID, {"telegram_id": actor.telegram_id})
        ).first()
        if row is None or row.id != actor.id:
            raise NotFound("Send /start first.")
        if row.status != UserStatus.ACTIVE:
            raise UserBlocked("Your account is blocked.")
        return row

    async def _transition(
        self,
        uow: UnitOfWork,
        deal: DealView,
        actor_id: int | None,
        to_status: DealStatus,
        reason: str | None,
        joiner: int | None = None,
        *,
        notify: NotificationKind,
        admins: tuple[int, ...] = (),
    ) -> DealView:
        """Move the locked deal to `to_status`, write its history and tell the
        other party (and `admins`) in the outbox, all in one statement."""
        row = (
            await uow.execute(
                TRANSITION,
                {
                    "deal_id": deal.id,
                    "from_status": deal.status,
                    "from_version": deal.version,
                    "to_status": to_status.value,
                    "final": to_status in FINAL,
                    "actor_id": actor_id,
                    "reason": reason,
                    "joiner_id": joiner,
                    **self._notify(
                        notify, actor_id, reason if notify is NotificationKind.DISPUTE else None
                    ),
                    "admin_chats": list(admins),
                },
            )
        ).first()
        if row is None:  # cannot happen while we hold the row lock; refuse loudly
            raise WrongState(f"Deal {deal.code} changed meanwhile; try again.", current=deal)
        uow.outbox(*decode_notices(row.notices))
        return deal_view(row)

    def _notify(
        self, kind: NotificationKind, actor_id: int | None, note: str | None = None
    ) -> dict[str, Any]:
        """The parameters of a statement's `notified` CTE (`db.notifications.notify_parties`)."""
        return {
            "notify": kind.value,
            "actor_id": actor_id,
            "note": note,
            "grace": self.ctx.notify_grace,
            "admin_chats": [],
        }

    async def _move_money(self, uow: UnitOfWork, deal: DealView, to_status: DealStatus) -> None:
        buyer, seller = deal.buyer_id, deal.seller_id
        match to_status:
            case DealStatus.FUNDED:
                legs = [
                    Leg(LedgerKind.HOLD, LedgerAccount.AVAILABLE, -deal.amount, buyer),
                    Leg(LedgerKind.HOLD, LedgerAccount.HELD, deal.amount, buyer),
                ]
                shortfall = (
                    f"Not enough funds: funding needs "
                    f"{self.currencies[deal.currency].format(deal.amount)} available."
                )
            case DealStatus.RELEASED:
                legs = [
                    Leg(LedgerKind.RELEASE, LedgerAccount.HELD, -deal.amount, buyer),
                    Leg(LedgerKind.RELEASE, LedgerAccount.AVAILABLE, deal.payout, seller),
                    Leg(LedgerKind.FEE, LedgerAccount.FEES, deal.fee),
                ]
                shortfall = "The held funds are missing."
            case DealStatus.REFUNDED:
                legs = [
                    Leg(LedgerKind.REFUND, LedgerAccount.HELD, -deal.amount, buyer),
                    Leg(LedgerKind.REFUND, LedgerAccount.AVAILABLE, deal.amount, buyer),
                ]
                shortfall = "The held funds are missing."
            case _:
                return
        await post_movement(
            uow,
            key=f"deal:{deal.id}:{to_status.value}",
            currency=deal.currency,
            legs=legs,
            escrow_id=deal.id,
            shortfall=shortfall,
        )
