"""Admins blocking and unblocking users.

A blocked user can still look at their deals and wallet; every write refuses
them (`Refusal.ACCOUNT_BLOCKED`, checked on their row inside each use case's
transaction), and no deal of theirs is created, accepted or funded (guarded in
the deal statements themselves). Their funded deals stay as they are: the
other party may still deliver, release or cancel (refunding the buyer), either
may still be in a dispute, and admins settle it as usual. A block is one
transaction: the user's row (its snapshot's version bumped, so every replica
reads it again after the commit), an audit row with the admin and the reason,
and the user told (the outbox).
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from bot.services.base import Actor, Outcome, Service
from bot.services.deals import bounded_text
from bot.services.errors import InvalidInput, NotAllowed, NotFound, Refusal, WrongState
from bot.services.reads import read_as_admin
from bot.services.users import parse_username
from bot.services.views import UserView
from db import UnitOfWork
from db.events import UserChanged
from db.models import UserStatus
from db.sql.moderation import LOCK_USER_FOR_ADMIN, SET_USER_STATUS, USER_FOR_ADMIN
from db.sql.notifications import decode_notices


class UserStanding(msgspec.Struct, frozen=True):
    """A user as an admin sees them."""

    id: int
    telegram_id: int
    username: str | None
    first_name: str
    status: str
    is_admin: bool
    created_at: datetime
    open_deals: int  # unfinished deals, as buyer or seller
    # The latest block or unblock: why, when, by whom (None: never).
    reason: str | None = None
    changed_at: datetime | None = None
    changed_by: str | None = None

    @property
    def name(self) -> str:
        return f"@{self.username}" if self.username else self.first_name


def user_ref(typed: str) -> dict[str, int | str | None]:
    """The lookup parameters of a typed Telegram id or @username."""
    typed = typed.strip()
    if typed.isascii() and typed.isdigit():
        telegram_id = int(typed)
        if not 0 < telegram_id < 2**63:
            raise InvalidInput(Refusal.NOBODY_BY_THAT_NAME)
        return {"telegram_id": telegram_id, "username": None}
    return {"telegram_id": None, "username": parse_username(typed)}


class ModerationService(Service):
    async def find(self, admin: Actor, who: str) -> UserStanding:
        """The user with this Telegram id or @username (one statement), if
        `admin`'s own row is an active admin."""
        params = user_ref(who)
        async with self.ctx.db.reader.connect() as conn:
            rows = await read_as_admin(conn, USER_FOR_ADMIN, admin, params)
        if not rows:
            raise NotFound(Refusal.NOBODY_BY_THAT_NAME)
        mapping = rows[0]._mapping
        return UserStanding(**{name: mapping[name] for name in UserStanding.__struct_fields__})

    async def block(self, admin: Actor, who: str, reason: str) -> Outcome[UserView]:
        """Block the user; `reason` is kept with the admin's id and told to the user."""
        reason = bounded_text(reason, self.settings.reason_max_length, "reason")
        return await self._set_status(admin, who, UserStatus.BLOCKED, reason)

    async def unblock(self, admin: Actor, who: str, note: str | None = None) -> Outcome[UserView]:
        """Let a blocked user use the bot again."""
        if note is not None:
            note = bounded_text(note, self.settings.reason_max_length, "note")
        return await self._set_status(admin, who, UserStatus.ACTIVE, note)

    async def _set_status(
        self, admin: Actor, who: str, status: UserStatus, reason: str | None
    ) -> Outcome[UserView]:
        params = user_ref(who)

        async def work(uow: UnitOfWork) -> UserView:
            target = (
                await uow.execute(LOCK_USER_FOR_ADMIN, {**params, "admin_id": admin.id})
            ).first()
            if target is None:
                raise NotFound(Refusal.NOBODY_BY_THAT_NAME)
            if not target.admin_ok:
                raise NotAllowed(Refusal.ADMINS_ONLY)
            name = f"@{target.username}" if target.username else target.first_name
            if status is UserStatus.BLOCKED and (target.is_admin or target.id == admin.id):
                raise NotAllowed(Refusal.CANT_BLOCK_ADMIN)
            if target.status == status:
                refusal = (
                    Refusal.ALREADY_BLOCKED if status is UserStatus.BLOCKED else Refusal.NOT_BLOCKED
                )
                raise WrongState(refusal, name=name)
            row = (
                await uow.execute(
                    SET_USER_STATUS,
                    {
                        "user_id": target.id,
                        "status": status.value,
                        "admin_id": admin.id,
                        "reason": reason,
                        "grace": self.ctx.notify_grace,
                    },
                )
            ).one()
            uow.outbox(*decode_notices(row.notices))
            uow.record(UserChanged(row.id, row.telegram_id, row.version))
            return UserView(
                id=row.id,
                telegram_id=row.telegram_id,
                username=row.username,
                first_name=row.first_name,
                status=row.status,
                is_admin=row.is_admin,
                version=row.version,
            )

        return await self.transaction(work)
