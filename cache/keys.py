"""Every Redis key and channel name the cache uses, under one prefix.

- `<prefix>:snapshot:<telegram_id>`: one user's snapshot entry or tombstone
  (see `cache.snapshots` for the layout), a plain string so an L2 hit is one GET.
- `<prefix>:generation`: the cache generation; bumping it disowns every entry
  written before (a reset, used when invalidations were lost).
- `<prefix>:invalidations`: the channel every replica's listener subscribes to.
- `<prefix>:database`: which database the entries were loaded from (another
  one, recreated or restored, disowns them at start-up).
- `<prefix>:redis_run`: the run_id of the Redis process the entries were
  written to (another one, restarted from saved data or failed over to,
  disowns them when a listener connects to it).
- `<prefix>:update:<update_id>`: an update some replica took (webhook mode
  drops a redelivered one), `<prefix>:job:<name>`: who runs a background job
  this tick, `<prefix>:webhook` (and `:lock`): the webhook configuration set.
- `<prefix>:{pace}:all` and `<prefix>:{pace}:chat:<id>`: the fleet's budget
  for what the bot sends on its own (bot/runtime/shared_pace.py), one hash
  tag so its script touches one slot.
- `<prefix>:fsm:<bot>:<chat>:<user>:state` and `:data`: a user's form, its
  step and its data (aiogram's layout and JSON, 24 h), read together (one
  MGET, or with the update's lease) and written together (one MULTI); `:lock`
  beside them: the user's lock in webhook mode.

The snapshot keys and the generation key live in different hash slots, which
is fine for one Redis (or Sentinel) but not for Redis Cluster.
"""

from __future__ import annotations


class CacheKeys:
    __slots__ = ("channel", "database", "generation", "prefix", "redis_run")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.generation = f"{prefix}:generation"
        self.channel = f"{prefix}:invalidations"
        self.database = f"{prefix}:database"
        self.redis_run = f"{prefix}:redis_run"

    def snapshot(self, telegram_id: int) -> str:
        return f"{self.prefix}:snapshot:{telegram_id}"

    def update(self, update_id: int) -> str:
        return f"{self.prefix}:update:{update_id}"

    @property
    def forms(self) -> str:
        """The prefix of the form keys (aiogram's key builder adds the rest)."""
        return f"{self.prefix}:fsm"

    def job(self, name: str) -> str:
        return f"{self.prefix}:job:{name}"

    def pace(self, chat_id: int | str | None) -> str:
        """The fleet's overall send budget (None) or one chat's."""
        tail = "all" if chat_id is None else f"chat:{chat_id}"
        return f"{self.prefix}:{{pace}}:{tail}"

    @property
    def webhook(self) -> str:
        return f"{self.prefix}:webhook"
