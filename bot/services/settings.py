"""The escrow rules an operator can tune in config.toml ([escrow])."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import msgspec

# The most an operator may allow for what users type. A message holds 4,096
# characters, and the longest ones show these texts whole: a dispute's
# notification shows the deal's description and the reason (under two
# 64-character names and the largest amounts); a withdrawal's confirmation
# shows its destination. Lists shorten them instead (tests/e2e/
# test_message_lengths.py renders every such screen at these maxima).
DESCRIPTION_MAX = 2000
REASON_MAX = 1000
DESTINATION_MAX = 1000
# The admin's dispute screen lists every piece of evidence of both parties.
EVIDENCE_MAX = 20


Hours = Annotated[float, msgspec.Meta(gt=0, le=24 * 365)]


class EscrowSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Telegram user ids that get the admin panel and settle disputes.
    admins: tuple[int, ...] = ()
    deal_deadline_hours: Annotated[float, msgspec.Meta(gt=0, le=24 * 365)] = 72
    invitation_ttl_hours: Annotated[float, msgspec.Meta(gt=0, le=24 * 365)] = 72
    description_max_length: Annotated[int, msgspec.Meta(ge=1, le=DESCRIPTION_MAX)] = 500
    reason_max_length: Annotated[int, msgspec.Meta(ge=1, le=REASON_MAX)] = 500
    withdrawal_destination_max_length: Annotated[int, msgspec.Meta(ge=1, le=DESTINATION_MAX)] = 200
    # The clocks of a funded deal (0: no such clock). The seller must mark it
    # delivered within deliver_within_hours of funding, else the buyer may
    # cancel it for a refund; a delivered deal the buyer neither releases nor
    # disputes within auto_release_after_hours is released to the seller.
    deliver_within_hours: Annotated[float, msgspec.Meta(ge=0, le=24 * 365)] = 168
    auto_release_after_hours: Annotated[float, msgspec.Meta(ge=0, le=24 * 365)] = 72
    # Reminders this many hours before each clock runs out: to the seller
    # before the delivery deadline, to the buyer before the automatic release.
    delivery_reminder_hours: tuple[Hours, ...] = (24,)
    release_reminder_hours: tuple[Hours, ...] = (24, 1)
    # Anti-spam (0: no limit): deals one user may open in an hour, and deals
    # addressed to people they never had a funded deal with in a day.
    deals_per_hour: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 20
    strangers_per_day: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 20
    # Dispute evidence: what one party may send about one dispute (photos,
    # documents and texts together), a text's length, a document's size.
    evidence_per_party: Annotated[int, msgspec.Meta(ge=1, le=EVIDENCE_MAX)] = 10
    evidence_text_max_length: Annotated[int, msgspec.Meta(ge=1, le=REASON_MAX)] = 1000
    evidence_file_max_mb: Annotated[int, msgspec.Meta(ge=1, le=2000)] = 20

    @property
    def deal_deadline(self) -> timedelta:
        return timedelta(hours=self.deal_deadline_hours)

    @property
    def invitation_ttl(self) -> timedelta:
        return timedelta(hours=self.invitation_ttl_hours)

    @property
    def deliver_within(self) -> timedelta | None:
        return timedelta(hours=self.deliver_within_hours) if self.deliver_within_hours else None

    @property
    def auto_release_after(self) -> timedelta | None:
        hours = self.auto_release_after_hours
        return timedelta(hours=hours) if hours else None

    @property
    def paced(self) -> bool:
        return bool(self.deals_per_hour or self.strangers_per_day)
