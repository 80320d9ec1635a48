"""The newest version of each deal this replica has heard of, and who made it.

Fed by the invalidation listener (every replica hears every DealChanged) and
by this replica's own writes, so a press on an outdated card is recognised by
a filter, with no I/O, and answered with an alert before anything else; but a
press whose card is outdated only by that same person's move (a double tap, or
the press delivered again after its commit) goes on, to be shown its success.
"""

from __future__ import annotations

from collections import OrderedDict

from db.events import DealChanged


class DealVersions:
    def __init__(self, size: int = 100_000) -> None:
        self._size = size
        # code -> (version, status, mover's Telegram id) of the newest move heard
        self._versions: OrderedDict[str, tuple[int, str, int | None]] = OrderedDict()

    def heard(self, message: object) -> None:
        """An invalidation-listener hook."""
        if isinstance(message, DealChanged):
            self.note(message.code, message.version, message.status, message.mover)

    def note(self, code: str, version: int, status: str = "", mover: int | None = None) -> None:
        versions = self._versions
        known = versions.get(code)
        # a newer move, or this one already known with who made it, stays
        if known is not None and (known[0] > version or (known[0] == version and known[1])):
            return
        versions[code] = (version, status, mover)
        versions.move_to_end(code)
        if len(versions) > self._size:
            versions.popitem(last=False)

    def outdated(self, code: str, version: int) -> bool:
        """True only if a newer version is known; unknown deals are not outdated."""
        known = self._versions.get(code)
        return known is not None and known[0] > version

    def moved_on_by(self, code: str, version: int, telegram_id: int) -> str | None:
        """The status the deal moved to, if its one move since `version` was
        made by `telegram_id`; else None."""
        known = self._versions.get(code)
        if known is None or known[0] != version + 1 or known[2] != telegram_id:
            return None
        return known[1]
