"""The cache's Lua scripts.

Set-if-newer: the one script that writes snapshot entries and tombstones.
Readers fill with it and the publisher writes tombstones with it, so no write
to a snapshot key ever replaces a newer version with an older one, whatever
the interleaving (Redis runs a script atomically). An entry from another
generation counts as absent; a fill read under a stale generation is refused.

The run check: is this Redis (for each slot group, the master holding it) the
one the group's entries were written to? If not, disown them, once, however
many replicas ask at the same moment.

Update leases (webhook mode): an update's lease and its user's lock taken in
one round trip, the user's form read with them, and both given back in one.

A form's compare-and-set, for the one process that keeps its users' forms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from cache.keys import CacheKeys, group_of
from cache.snapshots import TOMBSTONE_SCHEMA

# KEYS: snapshot, generation. ARGV: version, schema (0 = tombstone), the
# generation the caller read under ('' = whatever it is now: tombstones always
# apply), payload, ttl in ms. Returns {outcome, generation}; outcome 1: written,
# 0: this version (with this or a newer schema) is there, -1: a newer version is
# there (a stale fill, refused), -2 (STALE_GENERATION): read under another generation.
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
        keys = (self._keys.snapshot(telegram_id), self._keys.generations[group_of(telegram_id)])
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
            self._keys.generations[group_of(telegram_id)],
            version,
            TOMBSTONE_SCHEMA,
            "",
            b"",
            self._tombstone_ttl_ms,
        )

    async def load(self, client: Redis) -> None:
        """Load the script (on a cluster: on every master)."""
        await client.script_load(FILL_SCRIPT)


async def pipelined(
    redis: Redis, queue: Callable[[Any], None], script: str | None = None
) -> list[Any]:
    """Run what `queue` puts on a pipeline: one round trip (on a cluster, one
    per master it touches, in parallel). A lost script cache costs a SCRIPT
    LOAD of `script` and a second, complete round; any other error is raised."""
    results = await _execute(redis, queue)
    if script is not None and any(isinstance(r, NoScriptError) for r in results):
        await redis.script_load(script)
        results = await _execute(redis, queue)
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


async def bump_generations(redis: Redis, keys: CacheKeys) -> list[int]:
    """Every slot group's generation moved on (one INCR each, one pipeline)."""

    def queue(pipe: Any) -> None:
        for key in keys.generations:
            pipe.incr(key)

    return [int(generation) for generation in await pipelined(redis, queue)]


async def _execute(redis: Redis, queue: Callable[[Any], None]) -> list[Any]:
    pipe = redis.pipeline(transaction=False)
    queue(pipe)
    return list(await pipe.execute(raise_on_error=False))


# KEYS: redis_run, generation (of one slot group). ARGV: the highest generation
# the caller has used for the group. Returns {outcome, generation}; outcome 1:
# disowned just now, 0: this Redis is the one, -1 (RUN_UNKNOWN): it does not
# tell its run_id (INFO refused, as by some proxies).
# A Redis restored from saved data (or a replica promoted after it lagged)
# holds entries with the generation of their time, which the replicas may have
# used since, with newer data: the new generation is past both the one stored
# here and the caller's. The first replica to ask moves it and records the
# run_id; the ones after it find their run_id recorded and take the generation.
# The run_id is read inside the script, so it is the run_id of the node that
# holds the group at that moment, however the cluster changes meanwhile.
RUN_CHECK_SCRIPT = """
local generation = tonumber(redis.call('GET', KEYS[2]) or '0')
local info = redis.pcall('INFO', 'server')
local run_id = type(info) == 'string' and string.match(info, 'run_id:(%x+)')
if not run_id then
  return {-1, generation}
end
if redis.call('GET', KEYS[1]) == run_id then
  return {0, generation}
end
generation = math.max(generation, tonumber(ARGV[1])) + 1
redis.call('SET', KEYS[2], generation)
redis.call('SET', KEYS[1], run_id)
return {1, generation}
"""

RUN_UNKNOWN = -1


class RunCheck:
    """RUN_CHECK_SCRIPT for every slot group, in one pipeline."""

    def __init__(self, redis: Redis, keys: CacheKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._sha = redis.register_script(RUN_CHECK_SCRIPT).sha

    async def __call__(self, highest: Sequence[int]) -> list[tuple[int, int]]:
        """(outcome, generation) per group, `highest` the caller's per group."""
        keys = self._keys

        def queue(pipe: Any) -> None:
            for group, seen in enumerate(highest):
                pipe.evalsha(self._sha, 2, keys.redis_runs[group], keys.generations[group], seen)

        results = await pipelined(self._redis, queue, RUN_CHECK_SCRIPT)
        return [(int(outcome), int(generation)) for outcome, generation in results]


# Taking an update in webhook mode, in one round trip: its lease (a redelivery
# finding it is not handled twice) and, with a user, the user's lock (their
# updates one at a time across replicas), and if both are ours the user's form
# (its step and data), which the update reads next. A key already holding our
# token is ours (a request retried after its reply was lost).
# KEYS: the update's key [, the user's lock [, the form's step, its data]].
# ARGV: token, lease in ms. Returns {0, holder} (the update is someone else's),
# {1, 0} (ours, the user's lock not taken) or {1, 1 [, step, data]}.
TAKE_SCRIPT = """
local function take(key)
  if redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) then
    return true
  end
  return redis.call('GET', key) == ARGV[1]
end
if not take(KEYS[1]) then
  return {0, redis.call('GET', KEYS[1])}
end
if #KEYS == 1 or not take(KEYS[2]) then
  return {1, 0}
end
if #KEYS == 2 then
  return {1, 1}
end
return {1, 1, redis.call('GET', KEYS[3]), redis.call('GET', KEYS[4])}
"""

# Ending an update: marked done (ARGV[3] for ARGV[2] seconds) or, with
# ARGV[2] = 0 (it failed), its lease freed for a redelivery; then the user's
# lock freed. Only keys holding our token (ARGV[1]) are freed.
# KEYS: the update's key [, the user's lock].
RELEASE_SCRIPT = """
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[2])
elseif redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
if KEYS[2] and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
"""

# Renewing held leases: each key still holding our token (ARGV[1]) gets
# ARGV[2] ms more. Returns how many did.
RENEW_SCRIPT = """
local renewed = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    renewed = renewed + 1
  end
end
return renewed
"""


class UpdateLeaseScripts:
    """TAKE, RELEASE and RENEW registered on one client: one EVALSHA each (a
    SCRIPT LOAD and a retry only if Redis lost its scripts)."""

    def __init__(self, redis: Redis) -> None:
        self._take = redis.register_script(TAKE_SCRIPT)
        self._release = redis.register_script(RELEASE_SCRIPT)
        self._renew = redis.register_script(RENEW_SCRIPT)

    async def take(self, keys: list[str], token: bytes, lease_ms: int) -> list[Any]:
        return list(await self._take(keys=keys, args=(token, lease_ms)))

    async def release(self, keys: list[str], token: bytes, done: bytes, done_seconds: int) -> None:
        await self._release(keys=keys, args=(token, done_seconds, done))

    async def renew(self, keys: list[str], token: bytes, lease_ms: int) -> int:
        return int(await self._renew(keys=keys, args=(token, lease_ms)))


# A form written only over what its writer last saw (bot/telegram/owned_forms.py).
# KEYS: the form's step and data keys. ARGV: the step and data this process
# last saw ('' for none), the new ones ('' deletes, as aiogram's storage
# does), their TTLs in seconds (0: none). Returns 1 (written) or 0 (changed
# elsewhere).
FORM_CAS_SCRIPT = """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1]
    or (redis.call('GET', KEYS[2]) or '') ~= ARGV[2] then
  return 0
end
local function put(key, value, ttl)
  if value == '' then redis.call('DEL', key)
  elseif ttl == '0' then redis.call('SET', key, value)
  else redis.call('SET', key, value, 'EX', ttl) end
end
put(KEYS[1], ARGV[3], ARGV[5])
put(KEYS[2], ARGV[4], ARGV[6])
return 1
"""
