"""What a committed transaction changed, for the cache to publish.

Small frozen records, tagged so one union type travels on the invalidation
channel. A use case records them in its unit of work; they are handed out only
after the commit.
"""

from __future__ import annotations

import msgspec


class UserChanged(msgspec.Struct, frozen=True, tag="user", array_like=True):
    """The user's snapshot (profile or any wallet) is now at `version`."""

    user_id: int
    telegram_id: int
    version: int


class DealChanged(msgspec.Struct, frozen=True, tag="deal", array_like=True):
    """The deal is now at `version` with `status`; `telegram_ids` are its parties;
    `mover` the Telegram id of who made this move (None: the system)."""

    deal_id: int
    code: str
    version: int
    status: str
    telegram_ids: tuple[int, ...] = ()
    mover: int | None = None


Event = UserChanged | DealChanged


def latest_per_subject(events: list[Event]) -> tuple[Event, ...]:
    """One event per user or deal, the newest version, in first-seen order."""
    latest: dict[tuple[type, int], Event] = {}
    for event in events:
        key = (type(event), event.user_id if isinstance(event, UserChanged) else event.deal_id)
        previous = latest.get(key)
        if previous is None or event.version >= previous.version:
            latest[key] = event
    return tuple(latest.values())
