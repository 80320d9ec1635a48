"""The newest version of each deal this replica has heard of.

Fed by the invalidation listener (every replica hears every DealChanged) and
by this replica's own writes, so a press on an outdated card is recognised by
a filter, with no I/O, and answered with an alert before anything else.
"""

from __future__ import annotations

from collections import OrderedDict

from db.events import DealChanged


class DealVersions:
    def __init__(self, size: int = 100_000) -> None:
        self._size = size
        self._versions: OrderedDict[str, int] = OrderedDict()

    def heard(self, message: object) -> None:
        """An invalidation-listener hook."""
        if isinstance(message, DealChanged):
            self.note(message.code, message.version)

    def note(self, code: str, version: int) -> None:
        versions = self._versions
        if versions.get(code, 0) >= version:
            return
        versions[code] = version
        versions.move_to_end(code)
        if len(versions) > self._size:
            versions.popitem(last=False)

    def outdated(self, code: str, version: int) -> bool:
        """True only if a newer version is known; unknown deals are not outdated."""
        return self._versions.get(code, 0) > version
