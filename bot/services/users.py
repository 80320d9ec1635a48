"""Registering a Telegram user, keeping their profile and wallets current, and
finding who holds an @username."""

from __future__ import annotations

import re
from datetime import datetime

import msgspec

from bot.services.base import Actor, Outcome, Service
from bot.services.errors import InvalidInput, Refusal
from bot.services.views import UserView
from db import UnitOfWork
from db.events import UserChanged
from db.sql.deals import CLAIM_INVITATIONS
from db.sql.ledger import ADD_WALLETS
from db.sql.users import (
    BUMP_VERSION,
    PERSON_BY_TELEGRAM_ID,
    RELEASE_USERNAME,
    SET_LOCALE,
    UPSERT_USER,
    USER_BY_USERNAME,
)

# A language tag as the Telegram face names its catalogs ("en", "ru", "pt-br").
LOCALE = re.compile(r"[a-z]{2,3}(?:[-_][a-z0-9]{2,8})?")

# Telegram usernames: a letter, then letters, digits or underscores; 4-32 in all.
USERNAME = re.compile(r"[a-z][a-z0-9_]{3,31}")


class Person(msgspec.Struct, frozen=True):
    """Someone on the bot found by @username: first name and @username as
    Telegram last reported them, and `profile_at`, when it first reported that
    pair (first contact or the change to it). A deal made with a Person goes
    to that user row, whatever happens to the name since."""

    id: int
    telegram_id: int
    first_name: str
    username: str | None
    status: str
    profile_at: datetime


def parse_username(value: str) -> str:
    """A typed @username, lower-cased (how names are matched), or InvalidInput."""
    username = value.strip().removeprefix("@").lower()
    if not USERNAME.fullmatch(username):
        raise InvalidInput(Refusal.NOT_A_USERNAME)
    return username


class Profile(msgspec.Struct, frozen=True):
    """What Telegram tells us about a user."""

    telegram_id: int
    first_name: str = ""
    username: str | None = None
    last_name: str | None = None
    language_code: str | None = None


class UserService(Service):
    async def find_by_username(self, username: str) -> Person | None:
        """Who holds @username on the bot now (one indexed read), or None."""
        async with self.ctx.db.reader.connect() as conn:
            row = (
                await conn.execute(USER_BY_USERNAME, {"username": parse_username(username)})
            ).first()
        return Person(**row._mapping) if row is not None else None

    async def find_by_telegram_id(self, telegram_id: int) -> Person | None:
        """Who has this Telegram id on the bot (one indexed read), or None."""
        async with self.ctx.db.reader.connect() as conn:
            row = (await conn.execute(PERSON_BY_TELEGRAM_ID, {"telegram_id": telegram_id})).first()
        return Person(**row._mapping) if row is not None else None

    async def register(self, profile: Profile) -> Outcome[UserView]:
        """Create the user on first contact, refresh a changed profile, and make
        sure there is a wallet for every configured currency. On first contact
        or a profile change, invitations to their @username are claimed and
        those waiting for them counted (`UserView.invited`)."""
        params = {
            "telegram_id": profile.telegram_id,
            "username": profile.username,
            "first_name": profile.first_name[:64],
            "last_name": profile.last_name[:64] if profile.last_name else None,
            "language_code": profile.language_code,
            "is_admin": profile.telegram_id in self.settings.admins,
        }

        async def work(uow: UnitOfWork) -> UserView:
            if profile.username:
                released = await uow.execute(RELEASE_USERNAME, params)
                uow.record(*(UserChanged(r.id, r.telegram_id, r.version) for r in released))
            row = (await uow.execute(UPSERT_USER, params)).one()
            version = row.version
            added = (
                await uow.execute(
                    ADD_WALLETS, {"user_id": row.id, "currencies": list(self.currencies.codes)}
                )
            ).all()
            changed = row.changed
            if added and not row.created:
                # a currency configured since the user's last visit
                version = (await uow.execute(BUMP_VERSION, {"user_id": row.id})).scalar_one()
                changed = True
            invited = 0
            if row.changed:  # who they are may have just come to match an invitation
                claim = {
                    "telegram_id": profile.telegram_id,
                    "username": profile.username.lower() if profile.username else None,
                    "user_id": row.id,
                }
                invited = (await uow.execute(CLAIM_INVITATIONS, claim)).scalar_one()
            if changed:
                uow.record(UserChanged(row.id, row.telegram_id, version))
            return UserView(
                id=row.id,
                telegram_id=row.telegram_id,
                username=row.username,
                first_name=row.first_name,
                status=row.status,
                is_admin=row.is_admin,
                version=version,
                created=row.created,
                invited=invited,
            )

        return await self.transaction(work)

    async def set_locale(self, user: Actor, locale: str | None) -> Outcome[bool]:
        """Keep the language `user` chose (None: follow Telegram's language_code
        again); True if it changed. The snapshot changes with it (after commit)."""
        if locale is not None and not LOCALE.fullmatch(locale):
            raise InvalidInput(Refusal.REQUEST_UNUSABLE)

        async def work(uow: UnitOfWork) -> bool:
            row = (await uow.execute(SET_LOCALE, {"user_id": user.id, "locale": locale})).first()
            if row is None:
                return False
            uow.record(UserChanged(row.id, row.telegram_id, row.version))
            return True

        return await self.transaction(work)
