"""A deal's life as its parties see it: reading it, creating it (idempotently,
by the wizard's key), and the parties' actions (accept, decline, fund, deliver,
release, dispute, cancel). Each write is one transaction."""

from __future__ import annotations

from typing import Literal

from sqlalchemy.exc import IntegrityError

from bot.services.base import Actor, Outcome, violated_constraint
from bot.services.deals.pace import DealPace
from bot.services.deals.steps import (
    CODE_CONSTRAINT,
    CREATE_KEY_CONSTRAINT,
    CREATE_KEY_LENGTH,
    NOTIFIED_AS,
    bounded_text,
    changed_event,
    new_deal_code,
    new_invitation_code,
    normalise_code,
)
from bot.services.errors import (
    InvalidInput,
    NotAllowed,
    NotFound,
    Refusal,
    SelfDeal,
    UserBlocked,
    WrongState,
)
from bot.services.reads import admin_rows, rows_of
from bot.services.rules import RULES, Action, has_role, is_party
from bot.services.users import Person, parse_username
from bot.services.views import CreatedDeal, DealView, InvitationView, created_deal, deal_view
from db import UnitOfWork
from db.models import DealStatus, NotificationKind, UserStatus
from db.sql.deals import DEAL_BY_CODE, DEAL_BY_CREATE_KEY, INSERT_DEAL, INSERT_INVITATION
from db.sql.notifications import decode_notices
from db.sql.reads import ADMIN_DEAL_BY_CODE
from db.sql.users import USER_BY_TELEGRAM_ID


class DealLifecycle(DealPace):
    # -- reads --------------------------------------------------------------

    async def get(self, viewer: Actor, code: str, *, as_admin: bool = False) -> DealView:
        """A deal its viewer is a party to; with `as_admin`, any deal, if the
        viewer's own row is an active admin (checked in the same statement)."""
        params = {"code": normalise_code(code)}
        if as_admin:
            read = admin_rows(ADMIN_DEAL_BY_CODE, viewer, params)
        else:
            read = rows_of(DEAL_BY_CODE, params)
        rows = await self.ctx.db.read(read, viewer.telegram_id, retry_empty=True)
        if not rows:
            raise NotFound(Refusal.NO_SUCH_DEAL)
        deal = deal_view(rows[0])
        if not as_admin and not is_party(deal, viewer.id):
            raise NotFound(Refusal.NO_SUCH_DEAL)
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

        `create_key` (the wizard's id) makes the request idempotent: a retry after
        an unknown outcome or a second press, even without the user's lock, returns
        the deal (and invitation) the first one made, telling nobody again."""
        if create_key is not None and not 0 < len(create_key) <= CREATE_KEY_LENGTH:
            raise InvalidInput(Refusal.REQUEST_UNUSABLE)
        if role not in ("buyer", "seller"):
            raise InvalidInput(Refusal.CHOOSE_ROLE)
        money = self._amount(currency, amount)
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
            raise SelfDeal(Refusal.SELF_DEAL)

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
            creator_row = await self._require_active(uow, creator, lock=self.settings.paced)
            if username is not None and username == (creator_row.username or "").lower():
                raise SelfDeal(Refusal.SELF_DEAL)
            other = None
            if telegram_id is not None:
                other = (
                    await uow.execute(USER_BY_TELEGRAM_ID, {"telegram_id": telegram_id})
                ).first()
            if person is not None and (other is None or other.id != person.id):
                # never someone else in place of the person the summary named
                raise NotFound(Refusal.PERSON_GONE)
            if other is not None:
                if other.id == creator_row.id:
                    raise SelfDeal(Refusal.SELF_DEAL)
                if other.status != UserStatus.ACTIVE:
                    raise NotAllowed(Refusal.CANT_TAKE_PART)
            other_id = other.id if other is not None else None
            addressed = counterparty is not None
            stranger = await self._pace(uow, creator.id, other_id, addressed=addressed)
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
                        "to_stranger": stranger,
                        **self._notify(NotificationKind.INVITED, creator.id),
                    },
                )
            ).first()
            if created is None:  # a party blocked since their standing was read
                raise NotAllowed(Refusal.PARTY_BLOCKED)
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
            uow.record(changed_event(deal, creator))
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
        """Call the deal off (refunding the buyer once funded); `expected_version`
        as for `release`: a cancel confirmed before funding must not be a refund."""
        return await self._act(actor, code, Action.CANCEL, expected_version=expected_version)

    async def refund(
        self, actor: Actor, code: str, *, expected_version: int | None = None
    ) -> Outcome[DealView]:
        """The buyer calls off a funded deal not delivered by its deadline."""
        return await self._act(actor, code, Action.REFUND, expected_version=expected_version)

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
                raise NotFound(Refusal.NO_SUCH_DEAL)
            if locked.actor_status != UserStatus.ACTIVE:
                raise UserBlocked(Refusal.ACCOUNT_BLOCKED)
            self._refuse_if_done(deal, locked, actor, action)
            if expected_version is not None and deal.version != expected_version:
                # The question was asked about another deal than this one now
                # (a cancel asked before funding would now refund).
                raise WrongState(
                    Refusal.CHANGED_SINCE_ASKED,
                    current=deal,
                    deal=deal.code,
                    status=DealStatus(deal.status),
                )
            rule = RULES[action].get(DealStatus(deal.status))
            if rule is None:
                raise WrongState(
                    Refusal.ACTION_NOT_NOW,
                    current=deal,
                    deal=deal.code,
                    status=DealStatus(deal.status),
                    action=action,
                )
            role, to_status = rule
            if not has_role(deal, actor.id, role):
                raise NotAllowed(Refusal.NOT_YOUR_ROLE, role=role, action=action)
            self._refuse_forward(deal, locked, to_status)
            changed = await self._transition(
                uow,
                deal,
                actor.id,
                to_status,
                reason,
                notify=NOTIFIED_AS.get(action) or NotificationKind(action.value),
                admins=self.settings.admins if action is Action.DISPUTE else (),
                **self._deadline(action, deal),
            )
            await self._move_money(uow, deal, to_status)
            uow.record(changed_event(changed, actor))
            return changed

        return await self.transaction(work)
