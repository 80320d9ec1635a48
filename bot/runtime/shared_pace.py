"""Telegram's rates kept by the whole fleet: the pace of what the bot sends on
its own, reserved in Redis so that every replica draws on one budget.

Telegram limits a bot, not a process: about 30 messages a second overall and
one a second in a chat (bursts tolerated). With one local budget per replica,
N replicas would send N times that. In webhook mode (several replicas) each
paced send reserves its turn with one script in Redis, which keeps, per
budget, the time the next send may go (a "theoretical arrival time", GCRA):
the send waits `max(0, next - burst / rate - now)` and moves `next` on by
`1 / rate`. Redis's own clock is the only clock, so the replicas' clocks
never disagree. The overall budget and every chat's live under one hash tag
(`cache.keys.CacheKeys.pace`): one slot, so the script can touch both on
Redis Cluster (a few dozen calls a second, one shard's trifle).

Redis failing (or skipped after a failure), a send is paced by the replica's
own budget as before; if the fleet then goes over, Telegram's 429 and its
retry_after are waited out (`RetryAfter`).
"""

from __future__ import annotations

import math

from redis.asyncio import Redis

from cache.keys import CacheKeys

# KEYS: the overall budget, the chat's (or the overall one again, for a send
# to no chat). ARGV: overall rate per second, its burst, the chat's rate, its
# burst, the longest wait the sender takes in microseconds (-1: any). Returns
# the wait in microseconds (an integer: Lua numbers reach Redis as integers),
# or -1 if longer than that, nothing reserved.
PACE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function look(key, rate, burst)
  local interval = 1000000 / rate
  local next_at = tonumber(redis.call('GET', key) or '0')
  if next_at < now then next_at = now end
  return next_at - (burst - 1) * interval - now, next_at + interval
end
local function keep(key, next_at)
  redis.call('SET', key, string.format('%.0f', next_at), 'PX',
             math.ceil((next_at - now) / 1000) + 1000)
end
local wait, overall_next = look(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
local chat_next = nil
if KEYS[2] ~= KEYS[1] then
  local chat_wait
  chat_wait, chat_next = look(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
  wait = math.max(wait, chat_wait)
end
local most = tonumber(ARGV[5])
if most >= 0 and wait > most then
  return -1
end
keep(KEYS[1], overall_next)
if chat_next then keep(KEYS[2], chat_next) end
if wait < 0 then return 0 end
return math.floor(wait)
"""


class SharedPace:
    """One Redis script call per paced send: how long it must wait for the
    fleet's overall budget and its chat's."""

    def __init__(
        self, redis: Redis, keys: CacheKeys, per_second: float, chat_per_second: float, burst: int
    ) -> None:
        self._script = redis.register_script(PACE_SCRIPT)
        self._keys = keys
        self._args = (per_second, max(per_second, 1), chat_per_second, burst)

    async def delay(self, chat_id: int | str | None, most: float = math.inf) -> float | None:
        """The wait (None: longer than `most` seconds, nothing reserved)."""
        overall = self._keys.pace(None)
        chat = overall if chat_id is None else self._keys.pace(chat_id)
        bound = -1 if math.isinf(most) else int(most * 1_000_000)
        waited = int(await self._script(keys=(overall, chat), args=(*self._args, bound)))
        return None if waited < 0 else waited / 1_000_000
