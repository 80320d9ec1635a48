"""A dispute's file: the evidence its parties send while it is open (Telegram
keeps the files; their file ids are stored, and relayed to the admins through
the outbox), and the dispute as an admin sees it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from bot.services.base import Actor, Outcome
from bot.services.deals.steps import DealSteps, bounded_text, normalise_code
from bot.services.errors import InvalidInput, NotFound, Refusal, WrongState
from bot.services.reads import read_as_admin
from bot.services.rules import is_party
from bot.services.views import DealView, deal_view
from db import UnitOfWork
from db.models import DealStatus, EvidenceKind
from db.sql.disputes import ADMIN_DISPUTE, INSERT_EVIDENCE
from db.sql.notifications import decode_notices

MEGABYTE = 1024 * 1024
FILE_ID_LENGTH = 256  # dispute_evidence.file_id
FILE_NAME_LENGTH = 256  # dispute_evidence.file_name


class EvidenceView(msgspec.Struct, frozen=True):
    """A photo, document or text a party sent about a dispute."""

    id: int
    escrow_id: int
    sender_id: int
    kind: str
    file_id: str | None
    file_name: str | None
    file_size: int | None
    text: str | None  # the text, or the file's caption
    created_at: datetime


class AddedEvidence(msgspec.Struct, frozen=True):
    deal: DealView
    evidence: EvidenceView
    sent: int  # how many pieces this party has sent about this dispute, this one included
    limit: int  # how many one party may send


class DisputeFile(msgspec.Struct, frozen=True):
    """A disputed (or settled) deal as an admin sees it."""

    deal: DealView
    opened_by: int | None  # None: never disputed
    opened_by_name: str | None
    reason: str | None
    opened_at: datetime | None
    evidence: tuple[EvidenceView, ...] = ()


def evidence_view(row: Any) -> EvidenceView:
    mapping = row._mapping
    return EvidenceView(**{name: mapping[name] for name in EvidenceView.__struct_fields__})


class DealEvidence(DealSteps):
    async def add_evidence(
        self,
        sender: Actor,
        code: str,
        kind: EvidenceKind,
        *,
        file_id: str | None = None,
        file_name: str | None = None,
        file_size: int | None = None,
        text: str | None = None,
    ) -> Outcome[AddedEvidence]:
        """Add a photo or document (by Telegram's file id, with an optional
        caption in `text`) or a text to the open dispute of deal `code`, by one
        of its parties; the admins are told in the outbox. A blocked party may
        still add evidence: it informs the admins and moves nothing."""
        settings = self.settings
        if kind is EvidenceKind.TEXT:
            text = bounded_text(text or "", settings.evidence_text_max_length, "evidence")
            file_id = file_name = file_size = None
        elif kind in (EvidenceKind.PHOTO, EvidenceKind.DOCUMENT):
            if not file_id or len(file_id) > FILE_ID_LENGTH:
                raise InvalidInput(Refusal.EVIDENCE_KIND)
            if file_size is not None and file_size > settings.evidence_file_max_mb * MEGABYTE:
                raise InvalidInput(
                    Refusal.EVIDENCE_TOO_LARGE, megabytes=settings.evidence_file_max_mb
                )
            text = text.strip() if text else None
            if text:
                text = bounded_text(text, settings.evidence_text_max_length, "evidence")
            file_name = file_name[:FILE_NAME_LENGTH] if file_name else None
        else:
            raise InvalidInput(Refusal.EVIDENCE_KIND)
        code = normalise_code(code)

        async def work(uow: UnitOfWork) -> AddedEvidence:
            deal, _ = await self._lock(uow, sender, code)
            if not is_party(deal, sender.id):
                raise NotFound(Refusal.NO_SUCH_DEAL)
            if deal.status != DealStatus.DISPUTED:
                raise WrongState(
                    Refusal.DISPUTE_CLOSED,
                    current=deal,
                    deal=deal.code,
                    status=DealStatus(deal.status),
                )
            row = (
                await uow.execute(
                    INSERT_EVIDENCE,
                    {
                        "deal_id": deal.id,
                        "sender_id": sender.id,
                        "kind": kind.value,
                        "file_id": file_id,
                        "file_name": file_name,
                        "file_size": file_size,
                        "text": text,
                        "per_party": settings.evidence_per_party,
                        "grace": self.ctx.notify_grace,
                        "admin_chats": list(settings.admins),
                    },
                )
            ).first()
            if row is None:  # the deal is locked and disputed: the party's limit
                raise InvalidInput(Refusal.EVIDENCE_LIMIT, limit=settings.evidence_per_party)
            uow.outbox(*decode_notices(row.notices))
            return AddedEvidence(deal, evidence_view(row), row.sent, settings.evidence_per_party)

        return await self.transaction(work)

    async def dispute_file(self, admin: Actor, code: str) -> DisputeFile:
        """Deal `code` with who opened its dispute, why, and its evidence
        (one statement), if `admin`'s own row is an active admin."""
        async with self.ctx.db.reader.connect() as conn:
            rows = await read_as_admin(conn, ADMIN_DISPUTE, admin, {"code": normalise_code(code)})
        if not rows:
            raise NotFound(Refusal.NO_SUCH_DEAL)
        row = rows[0]
        return DisputeFile(
            deal=deal_view(row),
            opened_by=row.opened_by,
            opened_by_name=row.opened_by_name,
            reason=row.reason,
            opened_at=row.opened_at,
            evidence=msgspec.convert(row.evidence or [], tuple[EvidenceView, ...], strict=False),
        )
