"""The escrow rules an operator can tune in config.toml ([escrow])."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import msgspec


class EscrowSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Telegram user ids that get the admin panel and settle disputes.
    admins: tuple[int, ...] = ()
    deal_deadline_hours: Annotated[float, msgspec.Meta(gt=0, le=24 * 365)] = 72
    invitation_ttl_hours: Annotated[float, msgspec.Meta(gt=0, le=24 * 365)] = 72
    description_max_length: Annotated[int, msgspec.Meta(ge=1, le=3000)] = 500
    reason_max_length: Annotated[int, msgspec.Meta(ge=1, le=3000)] = 500
    withdrawal_destination_max_length: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 200

    @property
    def deal_deadline(self) -> timedelta:
        return timedelta(hours=self.deal_deadline_hours)

    @property
    def invitation_ttl(self) -> timedelta:
        return timedelta(hours=self.invitation_ttl_hours)
