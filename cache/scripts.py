"""Set-if-newer: the one Lua script that writes snapshot entries and tombstones.

Readers fill with it and the publisher writes tombstones with it, so no write
to a snapshot key ever replaces a newer version with an older one, whatever
the interleaving (Redis runs a script atomically). An entry from another
generation counts as absent; a fill read under a stale generation is refused.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from cache.keys import CacheKeys
from cache.snapshots import TOMBSTONE_SCHEMA

# KEYS: snapshot, generation. ARGV: version, schema (0 = tombstone), the
# generation the caller read under ('' = whatever it is now: tombstones always
# apply), payload, ttl in ms. Returns {outcome, generation}.
FILL_SCRIPT = """
local generation = redis.call('GET', KEYS[2]) or '0'
if ARGV[3] ~= '' and ARGV[3] ~= generation then
  return {-2, tonumber(generation)}
end
local current = redis.call('GET', KEYS[1])
if current then
  local g, v, s = string.match(current, '^(%d+):(%d+):(%d+):')
  if g == generation then
    local version, incoming = tonumber(v), tonumber(ARGV[1])
    if version > incoming then
      return {-1, tonumber(generation)}
    end
    if version == incoming and tonumber(s) >= tonumber(ARGV[2]) then
      return {0, tonumber(generation)}
    end
  end
end
redis.call('SET', KEYS[1], generation .. ':' .. ARGV[1] .. ':' .. ARGV[2] .. ':' .. ARGV[4],
           'PX', ARGV[5])
return {1, tonumber(generation)}
"""

WRITTEN = 1
ALREADY_THERE = 0  # this version (with this or a newer schema) is there
NEWER_THERE = -1  # a stale fill, refused
STALE_GENERATION = -2


class FillScript:
    """FILL_SCRIPT registered on one client, with the cache's keys."""

    def __init__(self, redis: Redis, keys: CacheKeys, tombstone_ttl_ms: int) -> None:
        self._script = redis.register_script(FILL_SCRIPT)
        self._keys = keys
        self._tombstone_ttl_ms = tombstone_ttl_ms

    async def fill(
        self,
        telegram_id: int,
        version: int,
        schema: int,
        generation: int,
        payload: bytes,
        ttl_ms: int,
    ) -> tuple[int, int]:
        """One EVALSHA (a SCRIPT LOAD and a retry only if Redis lost its scripts)."""
        keys = (self._keys.snapshot(telegram_id), self._keys.generation)
        outcome, current = await self._script(
            keys=keys, args=(version, schema, generation, payload, ttl_ms)
        )
        return int(outcome), int(current)

    def tombstone_args(self, telegram_id: int, version: int) -> tuple[Any, ...]:
        """EVALSHA arguments (for a pipeline) recording `version` as the newest."""
        return (
            self._script.sha,
            2,
            self._keys.snapshot(telegram_id),
            self._keys.generation,
            version,
            TOMBSTONE_SCHEMA,
            "",
            b"",
            self._tombstone_ttl_ms,
        )

    async def load(self, client: Redis) -> None:
        sha = await client.script_load(FILL_SCRIPT)
        self._script.sha = sha.decode() if isinstance(sha, bytes) else sha
