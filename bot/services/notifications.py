"""The outbox's side of the database: claiming due notifications, reading
what they are about, recording what became of them.

Every statement here is one autocommitted statement on the reader engine: a
claim leases its rows (moves them into the future) as it takes them, so no
transaction stays open while Telegram is called.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import msgspec

from bot.services.base import Service
from bot.services.deals.evidence import EvidenceView, evidence_view
from bot.services.deposits import DepositView, deposit_view
from bot.services.views import DealView, WithdrawalView, deal_view
from bot.services.withdrawals import withdrawal_view
from db.models import NotificationStatus
from db.sql.deals import DEALS_BY_ID
from db.sql.deposits import DEPOSITS_BY_ID
from db.sql.disputes import EVIDENCE_BY_ID
from db.sql.notifications import CLAIM_DUE, DEFERRED, MARK, PRUNE, REMIND, Notice
from db.sql.users import ACTORS_BY_ID
from db.sql.withdrawals import WITHDRAWALS_BY_ID


class Who(msgspec.Struct, frozen=True):
    """Whoever caused a notification, as the message names them."""

    name: str
    telegram_id: int


class Subjects(msgspec.Struct, frozen=True):
    """What a batch of notifications is about, by id."""

    deals: Mapping[int, DealView]
    withdrawals: Mapping[int, WithdrawalView]
    actors: Mapping[int, Who]
    deposits: Mapping[int, DepositView] = msgspec.field(default_factory=dict)
    evidence: Mapping[int, EvidenceView] = msgspec.field(default_factory=dict)


def _ids(values: Iterable[int | None]) -> list[int]:
    return sorted({value for value in values if value is not None})


class OutboxService(Service):
    async def claim_due(self, limit: int, lease: timedelta) -> list[Notice]:
        """Take up to `limit` due notifications, each leased for `lease`: due
        again then, unless it is marked first."""
        async with self.ctx.db.reader.connect() as conn:
            rows = await conn.execute(CLAIM_DUE, {"limit": limit, "lease": lease})
            return [msgspec.convert(dict(row._mapping), Notice) for row in rows]

    async def subjects(self, notices: Iterable[Notice]) -> Subjects:
        """The deals, withdrawals, deposits, evidence and actors `notices` are
        about, as they are now."""
        notices = list(notices)
        deal_ids = _ids(n.escrow_id for n in notices)
        withdrawal_ids = _ids(n.withdrawal_id for n in notices)
        deposit_ids = _ids(n.deposit_id for n in notices)
        actor_ids = _ids(n.actor_id for n in notices)
        evidence_ids = _ids(n.evidence_id for n in notices)
        deals: dict[int, DealView] = {}
        withdrawals: dict[int, WithdrawalView] = {}
        actors: dict[int, Who] = {}
        async with self.ctx.db.reader.connect() as conn:
            if deal_ids:
                for row in await conn.execute(DEALS_BY_ID, {"ids": deal_ids}):
                    deals[row.id] = deal_view(row)
            if withdrawal_ids:
                for row in await conn.execute(WITHDRAWALS_BY_ID, {"ids": withdrawal_ids}):
                    withdrawals[row.id] = withdrawal_view(row)
            if actor_ids:
                for row in await conn.execute(ACTORS_BY_ID, {"ids": actor_ids}):
                    actors[row.id] = Who(row.name, row.telegram_id)
            deposits: dict[int, DepositView] = {}
            if deposit_ids:
                for row in await conn.execute(DEPOSITS_BY_ID, {"ids": deposit_ids}):
                    deposits[row.id] = deposit_view(row)
            evidence: dict[int, EvidenceView] = {}
            if evidence_ids:
                for row in await conn.execute(EVIDENCE_BY_ID, {"ids": evidence_ids}):
                    evidence[row.id] = evidence_view(row)
        return Subjects(deals, withdrawals, actors, deposits, evidence)

    async def remind(self, due: Iterable[tuple[int, int, DealView]]) -> list[Notice]:
        """Write a deadline reminder for each (chat, user, deal) not reminded of
        the deal in its current status yet; the new ones (one statement)."""
        return await self.remind_of((chat, user, deal, deal.status) for chat, user, deal in due)

    async def remind_of(self, due: Iterable[tuple[int, int, DealView, str]]) -> list[Notice]:
        """Write a reminder for each (chat, user, deal, note) not written yet
        (one per deal, user and note); the new ones (one statement)."""
        due = list(due)
        if not due:
            return []
        params = {
            "chat_ids": [chat for chat, _, _, _ in due],
            "user_ids": [user for _, user, _, _ in due],
            "escrow_ids": [deal.id for _, _, deal, _ in due],
            "statuses": [note for _, _, _, note in due],
            "grace": self.ctx.notify_grace,
        }
        async with self.ctx.db.reader.connect() as conn:
            rows = await conn.execute(REMIND, params)
            return [msgspec.convert(dict(row._mapping), Notice) for row in rows]

    async def prune(self, keep: timedelta, limit: int = 5000) -> int:
        """Delete up to `limit` notifications done with and older than `keep`."""
        async with self.ctx.db.reader.connect() as conn:
            return (await conn.execute(PRUNE, {"keep": keep, "limit": limit})).rowcount

    async def mark(
        self,
        results: Mapping[int, tuple[NotificationStatus, str | None]],
        retry_after: timedelta,
        retry_max: timedelta,
    ) -> None:
        """Record each notification's result (one statement for the batch). A
        pending result keeps the row pending with its error noted, due again
        `retry_after` doubled per worker attempt so far (at most `retry_max`)."""
        if not results:
            return
        ids = list(results)
        params: dict[str, Any] = {
            "ids": ids,
            "statuses": [results[i][0].value for i in ids],
            "errors": [results[i][1] for i in ids],
            "base": retry_after,
            "most": retry_max,
            "deferred": DEFERRED,
        }
        async with self.ctx.db.reader.connect() as conn:
            await conn.execute(MARK, params)
