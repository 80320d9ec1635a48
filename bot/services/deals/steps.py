"""The steps every deal use case is made of: lock the deal, check the actor,
move it with its history and notifications in one statement, move the money.

Every state change locks the deal row, checks the rule table against what the
deal really is now, then updates it guarded by that status; a double press, a
retry or a race between replicas finds the deal already moved and is told so
(`WrongState` carrying the deal as it is).
"""

from __future__ import annotations

import secrets
from typing import Any

from bot.services.base import Actor, Service
from bot.services.deals.standing import Standing, standing_change
from bot.services.errors import (
    AlreadyDone,
    EscrowError,
    InsufficientFunds,
    InvalidInput,
    NotAllowed,
    NotFound,
    Refusal,
    TextField,
    UserBlocked,
    WrongState,
)
from bot.services.ledger import Leg, post_movement
from bot.services.rules import AFTER_DEADLINE, DESTINATIONS, Action
from bot.services.views import DealView, deal_view
from db import UnitOfWork
from db.events import DealChanged, UserChanged
from db.models import DealStatus, LedgerAccount, LedgerKind, NotificationKind, UserStatus
from db.sql.deals import LOCK_DEAL, TRANSITION
from db.sql.notifications import decode_notices
from db.sql.users import LOCK_USER_BY_TELEGRAM_ID, USER_BY_TELEGRAM_ID

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L
CODE_LENGTH = 8
CODE_CONSTRAINT = "uq_escrows_code"
CREATE_KEY_CONSTRAINT = "uq_escrows_creator_create_key"
CREATE_KEY_LENGTH = 64  # escrows.create_key


# What the other party is told of an action, where it is not the action's own kind.
NOTIFIED_AS = {Action.REFUND: NotificationKind.CANCEL}

FINAL = frozenset(
    {
        DealStatus.RELEASED,
        DealStatus.REFUNDED,
        DealStatus.CANCELLED,
        DealStatus.DECLINED,
        DealStatus.EXPIRED,
        DealStatus.SPLIT,
    }
)
# Moves that take a deal forward, which a blocked party stops (guarded in
# TRANSITION too), and which its deadline passed stops (the expiry job's then).
NEEDS_ACTIVE_PARTIES = frozenset({DealStatus.ACCEPTED, DealStatus.FUNDED})


def new_deal_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def new_invitation_code() -> str:
    # 24 URL-safe characters (144 random bits): a valid /start payload, unguessable.
    return secrets.token_urlsafe(18)


def normalise_code(code: str) -> str:
    return code.strip().upper().removeprefix("#")


def changed_event(deal: DealView, mover: Actor | None = None) -> DealChanged:
    """What changed, for every replica; `mover`: who made the move, if a person."""
    return DealChanged(
        deal.id,
        deal.code,
        deal.version,
        deal.status,
        deal.telegram_ids,
        mover.telegram_id if mover is not None else None,
    )


def bounded_text(value: str, limit: int, what: str) -> str:
    """`value` stripped, if not empty and at most `limit` characters; `what` is
    a `TextField` ("description", "reason", ...)."""
    value = value.strip()
    if not value:
        raise InvalidInput(Refusal.TEXT_EMPTY, field=TextField(what))
    if len(value) > limit:
        raise InvalidInput(
            Refusal.TEXT_TOO_LONG, field=TextField(what), length=len(value), limit=limit
        )
    return value


def money_moves_for(deal: DealView, to_status: DealStatus) -> frozenset[int]:
    """Whose wallets `DealSteps._move_money` changes on a move to `to_status`
    (its statement bumps their snapshots' versions)."""
    match to_status:
        case DealStatus.FUNDED | DealStatus.REFUNDED:
            return frozenset(u for u in (deal.buyer_id,) if u is not None)
        case DealStatus.RELEASED | DealStatus.SPLIT:
            return frozenset(u for u in (deal.buyer_id, deal.seller_id) if u is not None)
    return frozenset()


class DealSteps(Service):
    async def _lock(self, uow: UnitOfWork, actor: Actor, code: str) -> tuple[DealView, Any]:
        row = (await uow.execute(LOCK_DEAL, {"code": code, "actor_id": actor.id})).first()
        if row is None:
            raise NotFound(Refusal.NO_SUCH_DEAL)
        return deal_view(row), row

    @staticmethod
    def _refuse_if_done(deal: DealView, locked: Any, actor: Actor, action: Action) -> None:
        """Raise `AlreadyDone` if the deal is where `action` takes it and the
        actor made that move (`locked.last_actor_id`, read with the lock)."""
        status = DealStatus(deal.status)
        if status in DESTINATIONS[action] and locked.last_actor_id == actor.id:
            raise AlreadyDone(
                Refusal.ACTION_NOT_NOW, current=deal, deal=deal.code, status=status, action=action
            )

    @staticmethod
    def _refuse_forward(deal: DealView, locked: Any, to_status: DealStatus) -> None:
        """Before a move to `to_status` that takes the deal forward, by what was
        read with its lock: NotAllowed while a party is blocked (the transition
        checks again); WrongState once its deadline has passed by the
        database's clock (the expiry job's deal, even before the job has run)."""
        if to_status not in NEEDS_ACTIVE_PARTIES:
            return
        if UserStatus.BLOCKED in (locked.buyer_status, locked.seller_status):
            raise NotAllowed(Refusal.PARTY_BLOCKED)
        if locked.past_deadline:
            raise WrongState(
                Refusal.PAST_DEADLINE, current=deal, deal=deal.code, due_at=deal.deadline_at
            )

    async def _require_active(self, uow: UnitOfWork, actor: Actor, *, lock: bool = False) -> Any:
        """The actor's row (id, telegram_id, username, status), if active;
        with `lock`, locked until commit."""
        statement = LOCK_USER_BY_TELEGRAM_ID if lock else USER_BY_TELEGRAM_ID
        row = (await uow.execute(statement, {"telegram_id": actor.telegram_id})).first()
        if row is None or row.id != actor.id:
            raise NotFound(Refusal.START_FIRST)
        if row.status != UserStatus.ACTIVE:
            raise UserBlocked(Refusal.ACCOUNT_BLOCKED)
        return row

    @staticmethod
    def _deadline(action: Action, deal: DealView) -> dict[str, Any]:
        """`_transition`'s guard for an action open only past a deadline
        (`rules.AFTER_DEADLINE`): the database's clock decides, under the lock."""
        if action not in AFTER_DEADLINE:
            return {}
        status = DealStatus(deal.status)
        due = getattr(deal, AFTER_DEADLINE[action])
        refused = (
            WrongState(Refusal.NOT_OVERDUE, current=deal, deal=deal.code, due_at=due)
            if due is not None
            else WrongState(
                Refusal.ACTION_NOT_NOW, current=deal, deal=deal.code, status=status, action=action
            )
        )
        return {"overdue_only": True, "refused": refused}

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
        overdue_only: bool = False,
        refused: EscrowError | None = None,
        split: tuple[int, int] | None = None,
        standing: Standing | None = None,
    ) -> DealView:
        """Move the locked deal to `to_status`, write its history, count what the
        move does to the parties' records (`standing`, by default the rules of
        `standing_change`) and tell the other party (and `admins`), in one
        statement. `overdue_only`: only past the delivery deadline, else raise
        `refused`. `split`: the seller's part and its fee."""
        if standing is None:
            standing = standing_change(deal, to_status, actor_id)
        # A party whose money moves too is bumped by that movement, which takes
        # the wallets' locks before the users' (db/sql/reputation.py).
        bump = standing.users(deal) - money_moves_for(deal, to_status)
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
                    "overdue_only": overdue_only,
                    "deliver_within": self.settings.deliver_within,
                    "release_after": self.settings.auto_release_after,
                    "completes": standing.completes,
                    "volume": standing.volume,
                    "opener_id": standing.opener,
                    "loser_id": standing.loser,
                    "bump_ids": sorted(bump),
                    **self._notify(
                        notify, actor_id, reason if notify is NotificationKind.DISPUTE else None
                    ),
                    "admin_chats": list(admins),
                    "split_seller": split[0] if split else None,
                    "split_fee": split[1] if split else None,
                },
            )
        ).first()
        if row is None and refused is not None:  # the deadline had not passed
            raise refused
        if row is None and to_status in NEEDS_ACTIVE_PARTIES:
            # a party blocked since the lock read their standing
            raise NotAllowed(Refusal.PARTY_BLOCKED)
        if row is None:  # cannot happen while we hold the row lock; refuse loudly
            raise WrongState(Refusal.CHANGED_MEANWHILE, current=deal, deal=deal.code)
        uow.outbox(*decode_notices(row.notices))
        uow.record(
            *(UserChanged(u["id"], u["telegram_id"], u["version"]) for u in row.reputed or ())
        )
        return deal_view(row)

    def _notify(
        self, kind: NotificationKind, actor_id: int | None, note: str | None = None
    ) -> dict[str, Any]:
        """The parameters of a statement's `notified` CTE
        (`db.sql.notifications.notify_parties`)."""
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
                shortfall = InsufficientFunds(
                    Refusal.FUNDING_SHORT, amount=deal.amount, currency=deal.currency
                )
            case DealStatus.RELEASED:
                legs = [
                    Leg(LedgerKind.RELEASE, LedgerAccount.HELD, -deal.amount, buyer),
                    Leg(LedgerKind.RELEASE, LedgerAccount.AVAILABLE, deal.payout, seller),
                    Leg(LedgerKind.FEE, LedgerAccount.FEES, deal.fee),
                ]
                shortfall = InsufficientFunds(Refusal.HELD_FUNDS_MISSING)
            case DealStatus.REFUNDED:
                legs = [
                    Leg(LedgerKind.REFUND, LedgerAccount.HELD, -deal.amount, buyer),
                    Leg(LedgerKind.REFUND, LedgerAccount.AVAILABLE, deal.amount, buyer),
                ]
                shortfall = InsufficientFunds(Refusal.HELD_FUNDS_MISSING)
            case DealStatus.SPLIT:
                # One movement: the held amount leaves as a release of the
                # seller's part (less its fee) and a refund of the rest.
                part, fee = deal.split_seller or 0, deal.split_fee or 0
                legs = [
                    Leg(LedgerKind.RELEASE, LedgerAccount.HELD, -part, buyer),
                    Leg(LedgerKind.RELEASE, LedgerAccount.AVAILABLE, part - fee, seller),
                    Leg(LedgerKind.FEE, LedgerAccount.FEES, fee),
                    Leg(LedgerKind.REFUND, LedgerAccount.HELD, part - deal.amount, buyer),
                    Leg(LedgerKind.REFUND, LedgerAccount.AVAILABLE, deal.amount - part, buyer),
                ]
                shortfall = InsufficientFunds(Refusal.HELD_FUNDS_MISSING)
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
