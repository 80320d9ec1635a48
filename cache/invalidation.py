"""Invalidation after commit: the publisher, the services' EventSink.

Publishing, right after a commit (never before):

1. drop the users from this replica's L1 (read-your-writes on this replica);
2. in one pipelined round trip: a version tombstone per changed user through
   the set-if-newer script, then one PUBLISH of the events (a msgpack tuple of
   the tagged `db.events` structs); on Redis Cluster, each slot group's
   tombstones with one SPUBLISH on that group's channel (cache/channels.py),
   one round trip per master touched, sent in parallel;
3. drop them locally once more, for reads that got the old L2 entry meanwhile.

If Redis is failing, the events are kept (latest per subject, up to
`pending_limit`) and sent with the next publish or when the listener is back
or idle; past the limit the cache generation is reset instead. Publishing
never raises: the change is committed, and a failed invalidation is bounded
as described in docs/cache.md ("Staleness bounds").

The other half, every replica's listener, is in cache/listener.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cache.channels import queue_publish
from cache.messages import Message
from cache.scripts import FILL_SCRIPT, pipelined
from cache.store import REDIS_ERRORS, SnapshotCache
from db.events import DealChanged, Event, UserChanged

log = logging.getLogger(__name__)


def _subject(event: Message) -> tuple[str, int]:
    if isinstance(event, UserChanged):
        return ("user", event.user_id)
    if isinstance(event, DealChanged):
        return ("deal", event.deal_id)
    return ("reset", 0)


class InvalidationPublisher:
    """Implements the services' EventSink: `ServiceContext(events=publisher)`."""

    def __init__(self, cache: SnapshotCache) -> None:
        self._cache = cache
        self._limit = cache.settings.pending_limit
        self._pending: dict[tuple[str, int], Event] = {}
        self._overflowed = False
        self._drained = asyncio.Event()
        self._drained.set()

    @property
    def pending(self) -> int:
        return len(self._pending) + self._overflowed

    async def wait_drained(self) -> None:
        """Until nothing is held back (wrap it in `asyncio.timeout`); e.g. before
        a graceful shutdown."""
        await self._drained.wait()

    async def publish(self, events: tuple[Event, ...]) -> None:
        self._drop_locally(events)
        batch = self._take_pending(events)
        if batch or self._overflowed:
            await self._send(batch)
        self._drop_locally(events)

    async def flush_pending(self) -> None:
        """Send what an outage held back (the listener calls this)."""
        if self._pending or self._overflowed:
            await self._send(self._take_pending(()))

    def _drop_locally(self, events: tuple[Event, ...]) -> None:
        for event in events:
            if isinstance(event, UserChanged):
                self._cache.drop_local(event.telegram_id, event.version)

    def _take_pending(self, events: tuple[Event, ...]) -> tuple[Event, ...]:
        if not self._pending:
            return events
        merged, self._pending = self._pending, {}
        for event in events:
            self._merge(merged, event)
        return tuple(merged.values())

    @staticmethod
    def _merge(into: dict[tuple[str, int], Event], event: Event) -> None:
        subject = _subject(event)
        previous = into.get(subject)
        if previous is None or event.version >= previous.version:
            into[subject] = event

    def _park(self, batch: tuple[Event, ...], overflowed: bool) -> None:
        self._overflowed = self._overflowed or overflowed
        for event in batch:
            if _subject(event) in self._pending or len(self._pending) < self._limit:
                self._merge(self._pending, event)
            else:
                self._overflowed = True
                self._cache.counters.invalidations_overflowed += 1
        self._note_pending()

    def _note_pending(self) -> None:
        self._cache.counters.invalidations_pending = pending = self.pending
        if pending:
            self._drained.clear()
        else:
            self._drained.set()

    async def _send(self, batch: tuple[Event, ...]) -> None:
        cache = self._cache
        overflowed, self._overflowed = self._overflowed, False
        if not cache.breaker.allow():
            self._park(batch, overflowed)
            return
        try:
            messages: tuple[Message, ...] = batch
            if overflowed:
                # Lost track of who changed: void every entry instead.
                messages = (*await cache.reset_generation(), *batch)
            await self._apply(batch, messages)
        except REDIS_ERRORS as exc:
            cache.redis_failed(exc)
            cache.counters.publish_failures += 1
            self._park(batch, overflowed)
            log.warning("invalidation of %d events deferred: %r", len(batch), exc)
            return
        except BaseException:
            # Cancelled mid-send (shutdown, a cancelled update): the change is
            # committed, so its invalidation must stay owed, not vanish.
            self._park(batch, overflowed)
            raise
        cache.redis_succeeded()
        cache.counters.invalidations_sent += sum(isinstance(e, UserChanged) for e in batch)
        self._note_pending()

    async def _apply(self, batch: tuple[Event, ...], messages: tuple[Message, ...]) -> None:
        """Tombstones, then the publish, in one pipeline (on a cluster, each
        slot group's with its channel's SPUBLISH: one round trip per master)."""
        cache = self._cache

        def queue(pipe: Any) -> None:
            for event in batch:
                if isinstance(event, UserChanged):
                    pipe.evalsha(*cache.script.tombstone_args(event.telegram_id, event.version))
            queue_publish(pipe, cache.keys, cache.sharded, messages)

        await pipelined(cache.redis, queue, FILL_SCRIPT)
