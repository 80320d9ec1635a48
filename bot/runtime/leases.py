"""Leases in Redis: a key held by one update for a few seconds and renewed
while held, so that a replica that dies (or cannot give it back) frees it
soon. `UpdateLease` is what an update holds in webhook mode, its update_id
and its user's lock, taken and given back in one round trip each; `Lease` is
one key (a user's lock taken on its own).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from cache.client import REDIS_ERRORS
from cache.scripts import UpdateLeaseScripts

log = logging.getLogger(__name__)

# An update handled: what its key holds after its lease.
DONE = b"done"


class TokenLock(Lock):
    """redis-py's Lock, taking a key that holds its own token as taken."""

    async def do_acquire(self, token: str | bytes) -> bool:
        if await super().do_acquire(token):
            return True
        # A SET NX whose reply was lost is retried on a fresh connection
        # (cache/client.py) and finds the key set: by us, if it holds our token.
        return bool(await self.redis.get(self.name) == token)


class Lease:
    """A Redis key held by one update for `seconds` and renewed while held
    (redis-py's `Lock`, token and all): if its holder dies, or cannot release
    it (Redis away, a dead connection), it is free again within `seconds`."""

    def __init__(self, redis: Redis, name: str, seconds: float) -> None:
        self.name = name
        self.seconds = seconds
        self.token = secrets.token_hex(8).encode()
        self._lock = TokenLock(redis, name, timeout=seconds, sleep=0.05, thread_local=False)
        self._renewer: asyncio.Task[None] | None = None

    async def acquire(self, wait: float = 0) -> bool:
        """Take the key, waiting up to `wait` seconds for it; renewed from then on."""
        taken = await self._lock.acquire(
            blocking=wait > 0, blocking_timeout=wait or None, token=self.token
        )
        if taken:
            self._renewer = asyncio.get_running_loop().create_task(self._renew())
        return bool(taken)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                await self._lock.reacquire()
            except LockError:  # expired and taken by someone else (or gone)
                log.warning("%s: lease lost while held", self.name)
                return
            except REDIS_ERRORS as exc:  # tried again at the next third
                log.info("%s: lease not renewed: %r", self.name, exc)

    def _stop_renewing(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None

    async def release(self) -> None:
        """Free the key (best effort: a lease not released expires by itself)."""
        self._stop_renewing()
        try:
            await self._lock.release()
        except (LockError, *REDIS_ERRORS) as exc:
            log.info("%s: lease not released (%r); it expires by itself", self.name, exc)


class UpdateLease:
    """What one update holds in webhook mode: its update_id's lease and, with a
    user, that user's lock, under one token, taken in one round trip
    (`cache.scripts.TAKE_SCRIPT`, which also reads the user's form), renewed
    together while held, and given back in one (`RELEASE_SCRIPT`: the update
    marked done, or freed if it failed, and the lock freed)."""

    def __init__(
        self, scripts: UpdateLeaseScripts, update: str, lock: str | None, seconds: float
    ) -> None:
        self.scripts = scripts
        self.update = update
        self.lock = lock
        self.seconds = seconds
        self.token = secrets.token_hex(8).encode()
        self.held: list[str] = []
        self._renewer: asyncio.Task[None] | None = None

    async def take(self, form: tuple[str, str] | None) -> list[Any]:
        """TAKE_SCRIPT's answer; what it took is renewed from now on."""
        keys = [self.update] if self.lock is None else [self.update, self.lock, *(form or ())]
        taken = await self.scripts.take(keys, self.token, int(self.seconds * 1000))
        if taken[0] == 1:
            self.hold(self.update)
            if taken[1] == 1 and self.lock is not None:
                self.hold(self.lock)
        return taken

    def hold(self, key: str) -> None:
        self.held.append(key)
        if self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        lost = False
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                renewed = await self.scripts.renew(self.held, self.token, int(self.seconds * 1000))
            except REDIS_ERRORS as exc:  # tried again at the next third
                log.info("%s: lease not renewed: %r", self.update, exc)
                continue
            if renewed < len(self.held) and not lost:  # expired, maybe taken by someone else
                lost = True
                log.warning("%s: a lease was lost while held", self.update)

    async def release(self, done: bool, done_seconds: int) -> None:
        """Mark the update done (or, if it failed, free it) and free the user's
        lock (best effort: a lease not released expires by itself)."""
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None
        keys = [self.update] + ([self.lock] if self.lock in self.held else [])
        try:
            await self.scripts.release(keys, self.token, DONE, done_seconds if done else 0)
        except REDIS_ERRORS as exc:  # a redelivery is guarded in the database
            log.warning("%s: not released (%r); its leases expire by themselves", keys, exc)
